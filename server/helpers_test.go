package server

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prism-proxy/prism/backend"
	"github.com/prism-proxy/prism/client"
	"github.com/prism-proxy/prism/codec"
	"github.com/prism-proxy/prism/internal/backendtest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// startProxy runs a proxy on 127.0.0.1:0 until the test ends.
func startProxy(t testing.TB, cfg Config) *Proxy {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.Loops == 0 {
		cfg.Loops = 2
	}
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p.Shutdown(ctx)
	})
	return p
}

// startBackend runs a gnet backend server registered with p.
func startBackend(t testing.TB, p *Proxy, id, policy int64, mode backend.Mode, framing codec.Framing) *backend.Server {
	t.Helper()
	return backendtest.Start(t, backend.Config{ID: id, Policy: policy, Proxies: []string{p.Addr()},
		Mode: mode, Framing: framing, Logger: quiet})
}

// dial connects a client to p and closes it at the end of the test.
func dial(t testing.TB, p *Proxy, framing codec.Framing) *client.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.DialOptions(ctx, p.Addr(), client.Options{Framing: framing})
	if err != nil {
		t.Fatal(err)
	}
	c.NetConn().SetDeadline(time.Now().Add(20 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

// call sends one request and returns the decoded answer (strings copied).
func roundTrip(t testing.TB, c *client.Conn, srcid, policy int64, payload string) answer {
	t.Helper()
	if err := c.Send(srcid, policy, payload); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	return recv(t, c)
}

type answer struct {
	Type, SrcID, DestID int64
	Payload, Code       string
}

func recv(t testing.TB, c *client.Conn) answer {
	t.Helper()
	var m codec.Message
	if err := c.Recv(&m); err != nil {
		t.Fatalf("recv: %v", err)
	}
	return answer{m.Type, m.SrcID, m.DestID, string([]byte(m.Payload)), string([]byte(m.Code))}
}

// fakeBackend is a backend in plain net code whose behaviour a test scripts:
// handle returns the reply payload, or ok=false to close the data connection
// without answering. It records requests as received.
type fakeBackend struct {
	t      testing.TB
	ln     net.Listener
	id     int64
	lease  net.Conn
	handle func(n int, payload string) (reply string, ok bool)
	// raw, when set, replaces handle: the frame bodies to answer the n-th
	// request with (none, one, several, or bad ones); nil closes.
	raw func(n int, srcid int64, payload string) [][]byte

	mu   sync.Mutex
	got  []string
	cond chan struct{}
}

func newFakeBackend(t testing.TB, p *Proxy, id, policy int64, handle func(int, string) (string, bool)) *fakeBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fb := &fakeBackend{t: t, ln: ln, id: id, handle: handle, cond: make(chan struct{}, 1)}
	go fb.accept()
	t.Cleanup(func() { ln.Close(); fb.unregister() })
	fb.register(p, policy, ln.Addr().(*net.TCPAddr).Port)
	return fb
}

func (fb *fakeBackend) register(p *Proxy, policy int64, port int) {
	fb.t.Helper()
	nc, err := net.Dial("tcp", p.Addr())
	if err != nil {
		fb.t.Fatal(err)
	}
	c := client.New(nc, client.Options{})
	c.SendRaw(codec.AppendSetup(nil, fb.id, policy, port, ""))
	c.Flush()
	var m codec.Message
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := c.Recv(&m); err != nil || m.Type != codec.TypeAck {
		fb.t.Fatalf("setup of fake backend %d: %+v %v", fb.id, m, err)
	}
	nc.SetDeadline(time.Time{})
	fb.lease = nc
}

func (fb *fakeBackend) unregister() {
	if fb.lease != nil {
		fb.lease.Close()
	}
}

func (fb *fakeBackend) accept() {
	for {
		nc, err := fb.ln.Accept()
		if err != nil {
			return
		}
		go fb.serve(nc)
	}
}

func (fb *fakeBackend) serve(nc net.Conn) {
	defer nc.Close()
	c := client.New(nc, client.Options{})
	var m codec.Message
	for {
		if err := c.Recv(&m); err != nil {
			return
		}
		payload := string([]byte(m.Payload))
		fb.mu.Lock()
		fb.got = append(fb.got, payload)
		n := len(fb.got)
		fb.mu.Unlock()
		select {
		case fb.cond <- struct{}{}:
		default:
		}
		if fb.raw != nil {
			frames := fb.raw(n, m.SrcID, payload)
			if frames == nil {
				return
			}
			for _, f := range frames {
				c.SendRaw(f)
			}
		} else {
			reply, ok := fb.handle(n, payload)
			if !ok {
				return
			}
			c.SendRaw(codec.AppendReply(nil, fb.id, m.SrcID, reply))
		}
		if c.Flush() != nil {
			return
		}
	}
}

func (fb *fakeBackend) received() []string {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	return append([]string(nil), fb.got...)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func echo(_ int, p string) (string, bool) { return p, true }

// policyBackends lists the backends of policy in rotation.
func policyBackends(p *Proxy, policy int64) []BackendInfo {
	var out []BackendInfo
	for _, b := range p.Backends() {
		if b.Policy == policy {
			out = append(out, b)
		}
	}
	return out
}
