package server

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/prism-proxy/prism/backend"
	"github.com/prism-proxy/prism/codec"
)

// A proxy given another's registrations routes to their backends before
// they register with it.
func TestInheritRoutesBeforeSetup(t *testing.T) {
	a := startProxy(t, Config{})
	startBackend(t, a, 3, 7, backend.Upper, codec.Binary)
	b := startProxy(t, Config{}) // no backend registers with b
	fresh, err := New(Config{Listen: "127.0.0.1:0", Loops: 1, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	fresh.Inherit(a.Backends())
	if err := fresh.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fresh.Shutdown(context.Background()) })
	if got := roundTrip(t, dial(t, b, codec.Binary), 1, 7, "hi"); got.Code != codec.CodeNoBackend {
		t.Fatalf("proxy without registrations: %+v; want no_backend", got)
	}
	got := roundTrip(t, dial(t, fresh, codec.Binary), 1, 7, "hi")
	if got.Type != codec.TypeReply || got.SrcID != 3 || got.Payload != "HI" {
		t.Fatalf("proxy with inherited registrations: %+v; want backend 3's reply HI", got)
	}
}

// Handover answers every request a client sent before it, then ends the
// connection with a FIN, stops accepting, and returns once the client
// closed.
func TestHandoverAnswersThenEOF(t *testing.T) {
	p := startProxy(t, Config{})
	startBackend(t, p, 1, 7, backend.Echo, codec.Binary)
	c := dial(t, p, codec.Binary)
	const n = 200
	for i := 1; i <= n; i++ {
		if err := c.Send(int64(i), 7, "x"); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, c); got.DestID != 1 { // read: the rest are at the proxy
		t.Fatalf("first answer %+v", got)
	}
	res := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		res <- p.Handover(ctx)
	}()
	var m codec.Message
	i := 2
	for ; ; i++ {
		err := c.Recv(&m)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("after %d answers: %v; want answers, then EOF", i-1, err)
		}
		if m.Type != codec.TypeReply || m.DestID != int64(i) {
			t.Fatalf("answer %d: %+v", i, m)
		}
	}
	if i-1 != n {
		t.Errorf("%d answers before EOF; want %d", i-1, n)
	}
	select {
	case err := <-res:
		t.Fatalf("Handover returned %v before the client closed", err)
	case <-time.After(50 * time.Millisecond):
	}
	if nc, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		nc.Close()
		t.Error("the proxy still accepts after Handover began")
	}
	c.Close()
	select {
	case err := <-res:
		if err != nil {
			t.Fatalf("Handover: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Handover did not return after the client closed")
	}
}

// Static backends are not inherited: the new process's configuration gives
// them, and an id static there keeps its static backend.
func TestInheritSkipsStatic(t *testing.T) {
	p, err := New(Config{Listen: "127.0.0.1:0", Loops: 1, Logger: quiet,
		Backends: []StaticBackend{{ID: 5, Policy: 7, Addr: "127.0.0.1:1"}}})
	if err != nil {
		t.Fatal(err)
	}
	p.Inherit([]BackendInfo{
		{ID: 4, Policy: 7, Addr: "127.0.0.1:2", Framing: "binary", Static: true}, // static in the old process
		{ID: 5, Policy: 8, Addr: "127.0.0.1:3", Framing: "binary"},               // static here
		{ID: 6, Policy: 7, Addr: "127.0.0.1:4", Framing: "text"},
	})
	got := map[int64]BackendInfo{}
	for _, b := range p.Backends() {
		got[b.ID] = b
	}
	if len(got) != 2 || got[5].Addr != "127.0.0.1:1" || !got[5].Static || got[6].Framing != "text" || got[6].Static {
		t.Fatalf("backends %+v; want static 5 as configured and inherited 6", got)
	}
}

// A second proxy on the address of another is refused, unless it is told
// to share it (SharePort, as the new process of an upgrade).
func TestPortInUseRefusedUnlessShared(t *testing.T) {
	first := startProxy(t, Config{Loops: 1})
	second, err := New(Config{Listen: first.Addr(), Loops: 1, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := second.Start(); err == nil {
		second.Shutdown(context.Background())
		t.Fatalf("a second proxy started on %s, the address of another", first.Addr())
	}
	beside := startProxy(t, Config{Listen: first.Addr(), Loops: 1, SharePort: true})
	if beside.Addr() != first.Addr() {
		t.Fatalf("the sharing proxy listens on %s; want %s", beside.Addr(), first.Addr())
	}
}
