package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/prism-proxy/prism/codec"
	"github.com/prism-proxy/prism/internal/etcdtest"
)

// startFleetProxy runs a proxy of the fleet registry e as id.
func startFleetProxy(t testing.TB, e *etcdtest.Etcd, id string) *Proxy {
	t.Helper()
	return startProxy(t, Config{Registry: "etcd://" + e.Endpoint, ProxyID: id, RegistryTTL: 2 * time.Second})
}

// fleetHas reports whether p routes backend id of policy 7 to addr, held
// by proxy via.
func fleetHas(p *Proxy, id int64, via string) bool {
	for _, b := range policyBackends(p, 7) {
		if b.ID == id && b.Fleet == via {
			return true
		}
	}
	return false
}

func readyz(t testing.TB, p *Proxy) string {
	t.Helper()
	w := httptest.NewRecorder()
	p.AdminHandler().ServeHTTP(w, httptest.NewRequest("GET", "/readyz", nil))
	b, _ := io.ReadAll(w.Body)
	return fmt.Sprintf("%d %s", w.Code, strings.TrimSpace(string(b)))
}

func metricsText(t testing.TB, p *Proxy) string {
	t.Helper()
	w := httptest.NewRecorder()
	p.AdminHandler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	return w.Body.String()
}

// A backend registered with proxy a is served through proxy b, and leaves
// b when its lease on a closes.
func TestFleetServesAcrossProxies(t *testing.T) {
	e := etcdtest.Start(t)
	a := startFleetProxy(t, e, "a")
	b := startFleetProxy(t, e, "b")
	fb := newFakeBackend(t, a, 1, 7, echo)
	waitFor(t, "b routes backend 1 held by a", 5*time.Second, func() bool { return fleetHas(b, 1, "a") })
	if got := policyBackends(a, 7); len(got) != 1 || got[0].Fleet != "" {
		t.Errorf("a's own registration: got %+v; want one, without fleet", got)
	}
	c := dial(t, b, codec.Binary)
	if got := roundTrip(t, c, 42, 7, "via b"); got.Type != codec.TypeReply || got.Payload != "via b" {
		t.Fatalf("request through b: got %+v; want the reply of backend 1", got)
	}
	if got := readyz(t, b); got != "200 ready" {
		t.Errorf("readyz: got %q; want 200 ready", got)
	}
	if m := metricsText(t, b); !strings.Contains(m, "prism_registry_up 1") || !strings.Contains(m, "prism_registry_backends 1") {
		t.Errorf("metrics lack prism_registry_up 1 and prism_registry_backends 1")
	}
	// A local lease of the same id on b wins over a's entry, and a's entry
	// comes back when it closes.
	fb2 := newFakeBackend(t, b, 1, 7, echo)
	waitFor(t, "b's own lease of 1 wins", 5*time.Second, func() bool { return fleetHas(b, 1, "") })
	fb2.unregister()
	waitFor(t, "a's entry of 1 back on b", 5*time.Second, func() bool { return fleetHas(b, 1, "a") })
	fb.unregister()
	waitFor(t, "backend 1 gone from b", 5*time.Second, func() bool { return len(policyBackends(b, 7)) == 0 })
}

// etcd dies: b keeps serving what it knew and says so; etcd comes back on
// the same data directory and ports: a's registrations, including one
// taken during the outage, are put again and reach b.
func TestFleetEtcdDownAndBack(t *testing.T) {
	e := etcdtest.Start(t)
	a := startFleetProxy(t, e, "a")
	b := startFleetProxy(t, e, "b")
	newFakeBackend(t, a, 1, 7, echo)
	waitFor(t, "b routes backend 1", 5*time.Second, func() bool { return fleetHas(b, 1, "a") })
	e.Kill()
	waitFor(t, "b degraded", 10*time.Second, func() bool { return b.Degraded() != "" })
	if got := readyz(t, b); !strings.HasPrefix(got, "200 ready; degraded: fleet registry unreachable") {
		t.Errorf("readyz while etcd is down: got %q", got)
	}
	if m := metricsText(t, b); !strings.Contains(m, "prism_registry_up 0") {
		t.Errorf("metrics lack prism_registry_up 0")
	}
	time.Sleep(2500 * time.Millisecond) // past the TTL
	newFakeBackend(t, a, 2, 7, echo)    // local on a while etcd is down
	c := dial(t, b, codec.Binary)
	if got := roundTrip(t, c, 42, 7, "down"); got.Type != codec.TypeReply {
		t.Fatalf("request through b with etcd down: got %+v; want a reply", got)
	}
	e.Restart()
	waitFor(t, "b routes 1 and 2 with etcd back", 15*time.Second, func() bool {
		return fleetHas(b, 1, "a") && fleetHas(b, 2, "a") && b.Degraded() == ""
	})
}

// Proxy a dies without revoking its lease: b drops its entries within the
// TTL.
func TestFleetProxyDeath(t *testing.T) {
	e := etcdtest.Start(t)
	a := startFleetProxy(t, e, "a")
	b := startFleetProxy(t, e, "b")
	newFakeBackend(t, a, 1, 7, echo)
	waitFor(t, "b routes backend 1", 5*time.Second, func() bool { return fleetHas(b, 1, "a") })
	a.p.mu.Lock()
	m := a.p.fleet.m
	a.p.mu.Unlock()
	m.Abandon() // a's process dies: nothing revokes
	waitFor(t, "b drops a's backend within the TTL", 2*time.Second+3*time.Second, func() bool { return len(policyBackends(b, 7)) == 0 })
}

// A flood of deletions (a lease storm) does not empty a policy at once.
func TestFleetDeletionsDamped(t *testing.T) {
	e := etcdtest.Start(t)
	b := startFleetProxy(t, e, "b")
	cli := e.Client()
	ctx := context.Background()
	l, err := cli.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	for i := 1; i <= n; i++ {
		v := fmt.Sprintf(`{"addr":"127.0.0.1:%d","framing":"binary","policy":7,"id":%d}`, 20000+i, i)
		if _, err := cli.Put(ctx, fmt.Sprintf("/prism/backends/7/%d/x", i), v, clientv3.WithLease(l.ID)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "b routes the 20", 5*time.Second, func() bool { return len(policyBackends(b, 7)) == n })
	if _, err := cli.Revoke(ctx, l.ID); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if got := len(policyBackends(b, 7)); got < n-4 {
		t.Errorf("half a second after the storm: %d backends left; want at least %d (10%%/s)", got, n-4)
	}
	waitFor(t, "b drops some", 5*time.Second, func() bool { return len(policyBackends(b, 7)) < n-2 })
}

func TestRegistryConfig(t *testing.T) {
	for _, tt := range []struct {
		name, registry, id string
		want               string // in the error; "" for none
	}{
		{"none", "", "", ""},
		{"one", "etcd://10.0.0.1:2379", "", ""},
		{"several", "etcd://10.0.0.1:2379,10.0.0.2:2379", "p1", ""},
		{"no scheme", "10.0.0.1:2379", "", "want etcd://host:port"},
		{"no port", "etcd://10.0.0.1", "", "is not host:port"},
		{"slash in id", "etcd://10.0.0.1:2379", "a/b", "must not contain '/'"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Config{Registry: tt.registry, ProxyID: tt.id}.Check()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("got %v; want no error", err)
			case tt.want != "" && (!errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("got %v; want ErrConfig with %q", err, tt.want)
			}
		})
	}
}

// A proxy whose etcd is not there starts, serves its own registrations,
// and says it is degraded.
func TestFleetEtcdAbsentAtStart(t *testing.T) {
	began := time.Now()
	p := startProxy(t, Config{Registry: "etcd://127.0.0.1:1", ProxyID: "a"})
	if d := time.Since(began); d > 3*time.Second {
		t.Errorf("Start took %v with etcd absent", d)
	}
	newFakeBackend(t, p, 1, 7, echo)
	c := dial(t, p, codec.Binary)
	if got := roundTrip(t, c, 42, 7, "alone"); got.Type != codec.TypeReply {
		t.Fatalf("got %+v; want a reply", got)
	}
	waitFor(t, "degraded", 10*time.Second, func() bool { return p.Degraded() != "" })
}
