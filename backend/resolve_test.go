package backend_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prism-proxy/prism/backend"
	"github.com/prism-proxy/prism/client"
	"github.com/prism-proxy/prism/internal/backendtest"
	"github.com/prism-proxy/prism/server"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// fakeDNS answers lookups of one name with addresses a test changes, and
// with err when set.
type fakeDNS struct {
	mu      sync.Mutex
	name    string
	addrs   []string
	err     error
	lookups int
}

func (d *fakeDNS) set(err error, addrs ...string) {
	d.mu.Lock()
	d.addrs, d.err = addrs, err
	d.mu.Unlock()
}

func (d *fakeDNS) LookupHost(_ context.Context, host string) ([]string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.lookups++
	if host != d.name {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	if d.err != nil {
		return nil, d.err
	}
	return slices.Clone(d.addrs), nil
}

func (d *fakeDNS) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lookups
}

// startFleet runs one proxy on each of the loopback addresses ips, all on
// the same port, as the hosts of a DNS round robin would be.
func startFleet(t *testing.T, ips ...string) (port string, proxies map[string]*server.Proxy) {
	t.Helper()
	proxies = map[string]*server.Proxy{}
	for _, ip := range ips {
		listen := ip + ":0"
		if port != "" {
			listen = net.JoinHostPort(ip, port)
		}
		p, err := server.New(server.Config{Listen: listen, Loops: 1, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Start(); err != nil {
			t.Skipf("proxy on %s: %v (no 127.0.0.0/8 loopback here?)", listen, err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			p.Shutdown(ctx)
		})
		if port == "" {
			_, port, _ = net.SplitHostPort(p.Addr())
		}
		proxies[ip] = p
	}
	return port, proxies
}

func registered(p *server.Proxy, id int64) bool {
	for _, b := range p.Backends() {
		if b.ID == id {
			return true
		}
	}
	return false
}

// waitFleet waits until the backend id is registered with the proxies of
// want and with no other.
func waitFleet(t *testing.T, proxies map[string]*server.Proxy, id int64, want ...string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var got []string
		for ip, p := range proxies {
			if registered(p, id) {
				got = append(got, ip)
			}
		}
		slices.Sort(got)
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("backend %d registered with %v; want %v", id, got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// served checks that a request through the proxy reaches backend id.
func served(t *testing.T, p *server.Proxy, id, policy int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r, err := c.Call(ctx, 42, policy, "hi")
	if err != nil {
		t.Fatalf("through %s: %v", p.Addr(), err)
	}
	if r.SrcID != id || r.Payload != "hi" {
		t.Fatalf("through %s: reply %+v; want hi from %d", p.Addr(), r, id)
	}
}

// A backend given a name keeps a lease with every address the name
// resolves to, and follows the answer as it changes: a new address is
// registered with, a vanished one has its lease closed (the proxy takes
// the backend out of rotation), a failed lookup keeps the addresses,
// "no such host" drops them all.
func TestProxyNameResolved(t *testing.T) {
	port, proxies := startFleet(t, "127.0.0.1", "127.0.0.2", "127.0.0.3")
	dns := &fakeDNS{name: "prism.test"}
	dns.set(nil, "127.0.0.1", "127.0.0.2")
	b := backendtest.Start(t, backend.Config{ID: 5, Policy: 7, Proxies: []string{"prism.test:" + port},
		LookupHost: dns.LookupHost, ResolveEvery: 10 * time.Millisecond, Retry: 50 * time.Millisecond, Logger: quiet})
	want := []string{"127.0.0.1:" + port, "127.0.0.2:" + port}
	if got := b.Proxies(); !slices.Equal(got, want) {
		t.Fatalf("Proxies() = %v; want %v", got, want)
	}
	waitFleet(t, proxies, 5, "127.0.0.1", "127.0.0.2")
	served(t, proxies["127.0.0.1"], 5, 7)
	served(t, proxies["127.0.0.2"], 5, 7)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	t.Log("the answer changes: one address vanishes, one appears")
	dns.set(nil, "127.0.0.3", "127.0.0.2")
	waitFleet(t, proxies, 5, "127.0.0.2", "127.0.0.3")
	served(t, proxies["127.0.0.3"], 5, 7)
	if err := b.WaitRegistered(ctx); err != nil {
		t.Fatal(err)
	}

	t.Log("a failed lookup keeps the addresses")
	dns.set(errors.New("i/o timeout"))
	for n := dns.count() + 5; dns.count() < n; time.Sleep(5 * time.Millisecond) {
	}
	waitFleet(t, proxies, 5, "127.0.0.2", "127.0.0.3")

	t.Log("no such host: every lease closed")
	dns.set(&net.DNSError{Err: "no such host", Name: "prism.test", IsNotFound: true})
	waitFleet(t, proxies, 5)
	if got := b.Proxies(); len(got) != 0 {
		t.Fatalf("Proxies() = %v; want none", got)
	}

	t.Log("the name comes back")
	dns.set(nil, "127.0.0.1")
	waitFleet(t, proxies, 5, "127.0.0.1")
	served(t, proxies["127.0.0.1"], 5, 7)
}

// Literal addresses are not looked up; an address both listed and
// resolved gets one lease; of a name with IPv4 and IPv6 addresses only
// the IPv4 ones are used (a dual-stack proxy would be registered with
// twice); a name with only IPv6 addresses gets those.
func TestProxyAddresses(t *testing.T) {
	port, proxies := startFleet(t, "127.0.0.1", "127.0.0.2")
	dns := &fakeDNS{name: "prism.test"}
	dns.set(nil, "::1", "127.0.0.2", "127.0.0.1", "::ffff:127.0.0.2")
	var lookedUp []string
	var mu sync.Mutex
	lookup := func(ctx context.Context, host string) ([]string, error) {
		mu.Lock()
		lookedUp = append(lookedUp, host)
		mu.Unlock()
		return dns.LookupHost(ctx, host)
	}
	b := backendtest.Start(t, backend.Config{ID: 6, Policy: 7, Logger: quiet, LookupHost: lookup, ResolveEvery: -1,
		Proxies: []string{"127.0.0.1:" + port, "prism.test:" + port}})
	want := []string{"127.0.0.1:" + port, "127.0.0.2:" + port}
	if got := b.Proxies(); !slices.Equal(got, want) {
		t.Fatalf("Proxies() = %v; want %v", got, want)
	}
	mu.Lock()
	if !slices.Equal(lookedUp, []string{"prism.test"}) {
		t.Errorf("looked up %v; want only prism.test, once (ResolveEvery < 0)", lookedUp)
	}
	mu.Unlock()
	waitFleet(t, proxies, 6, "127.0.0.1", "127.0.0.2")
	for _, p := range proxies {
		if n := len(p.Backends()); n != 1 {
			t.Errorf("%s has %d backends; want 1 (one lease per address)", p.Addr(), n)
		}
	}

	// Only IPv6: those are used. Nothing listens on [::1]:port, so the
	// lease is only being opened; Proxies shows it.
	dns6 := &fakeDNS{name: "prism6.test"}
	dns6.set(nil, "::1")
	b6, err := backend.New(backend.Config{ID: 7, Logger: quiet, LookupHost: dns6.LookupHost,
		Proxies: []string{"prism6.test:1"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := b6.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b6.Close() })
	for deadline := time.Now().Add(5 * time.Second); !slices.Equal(b6.Proxies(), []string{"[::1]:1"}); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("Proxies() = %v; want [[::1]:1]", b6.Proxies())
		}
	}
}
