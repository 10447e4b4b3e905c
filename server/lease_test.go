package server

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prism-proxy/prism/backend"
	"github.com/prism-proxy/prism/client"
	"github.com/prism-proxy/prism/codec"
)

// A second setup of an id replaces the first registration, and the first
// lease is told so (unauthorized, naming the newer one's address) and
// closed, whichever loops the two leases are on.
func TestDuplicateIDReplacesAndTellsOlder(t *testing.T) {
	p := startProxy(t, Config{Loops: 3})
	older := newFakeBackend(t, p, 1, 7, func(_ int, s string) (string, bool) { return "older", true })
	for round := range 4 { // a new lease each round, on the next loop
		newer := newFakeBackend(t, p, 1, 7, func(_ int, s string) (string, bool) { return "newer", true })
		older.lease.SetDeadline(time.Now().Add(5 * time.Second))
		c := client.New(older.lease, client.Options{})
		var m codec.Message
		if err := c.Recv(&m); err != nil {
			t.Fatalf("round %d: older lease: %v; want an error message", round, err)
		}
		if m.Type != codec.TypeError || m.Code != codec.CodeUnauthorized || m.DestID != 1 ||
			!strings.HasPrefix(m.Error, "replaced by a newer registration of id 1 from 127.0.0.1:") {
			t.Fatalf("round %d: older lease got %+v", round, m)
		}
		if _, err := c.RecvRaw(); err == nil {
			t.Fatalf("round %d: older lease still open", round)
		}
		bs := policyBackends(p, 7)
		if len(bs) != 1 || bs[0].Addr != newer.ln.Addr().String() {
			t.Fatalf("round %d: backends %+v; want only the newer", round, bs)
		}
		cl := dial(t, p, codec.Binary)
		if a := roundTrip(t, cl, 5, 7, "x"); a.Payload != "newer" {
			t.Fatalf("round %d: answered %+v; want the newer backend's reply", round, a)
		}
		older = newer
	}
}

// Two backend servers with one id: the older is told it was replaced and
// gives up on the proxy, instead of registering again and taking the id
// back; the newer stays in rotation.
func TestDuplicateBackendGivesUp(t *testing.T) {
	p := startProxy(t, Config{Loops: 2})
	first := startBackend(t, p, 1, 7, backend.Upper, codec.Binary)
	second := startBackend(t, p, 1, 7, backend.Echo, codec.Binary)
	var err error // nil while the first is still acknowledged: poll
	waitFor(t, "the older backend to give up", 5*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		defer cancel()
		err = first.WaitRegistered(ctx)
		return err != nil && !errors.Is(err, context.DeadlineExceeded)
	})
	if !errors.Is(err, backend.ErrRevoked) || !strings.Contains(err.Error(), "replaced by a newer registration") {
		t.Fatalf("older backend: %v; want ErrRevoked, replaced", err)
	}
	bs := policyBackends(p, 7)
	if len(bs) != 1 || bs[0].Addr != "127.0.0.1:"+itoa(int64(second.Port())) {
		t.Fatalf("backends %+v; want only the second", bs)
	}
	c := dial(t, p, codec.Binary)
	if a := roundTrip(t, c, 5, 7, "x"); a.Payload != "x" {
		t.Fatalf("answered %+v; want the second (echo) backend's", a)
	}
}
