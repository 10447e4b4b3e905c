package gnetio

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"
)

type bootHandler struct {
	gnet.BuiltinEventEngine
	eng    gnet.Engine
	addr   *net.TCPAddr
	booted chan struct{}
}

func (h *bootHandler) OnBoot(eng gnet.Engine) gnet.Action {
	h.eng, h.addr = eng, Addr(eng)
	close(h.booted)
	return gnet.None
}

// Addr learns the port of a listener on port 0, and Stop ends the engine.
func TestAddrAndStop(t *testing.T) {
	h := &bootHandler{booted: make(chan struct{})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		gnet.Run(h, "tcp://127.0.0.1:0")
	}()
	select {
	case <-h.booted:
	case <-done:
		t.Fatal("engine did not start")
	}
	if h.addr == nil || h.addr.Port == 0 || !h.addr.IP.Equal(net.IPv4(127, 0, 0, 1)) {
		t.Fatalf("Addr = %v; want 127.0.0.1 with a port", h.addr)
	}
	nc, err := net.Dial("tcp", h.addr.String())
	if err != nil {
		t.Fatalf("dial Addr: %v", err)
	}
	nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := Stop(ctx, h.eng, done); err != nil {
		t.Fatalf("Stop: %v", err)
	}
}

// Stop returns ctx's error when the engine is not done in time.
func TestStopHonoursContext(t *testing.T) {
	never := make(chan struct{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	// A zero Engine is invalid: Stop cannot end it, so done never closes.
	if err := Stop(ctx, gnet.Engine{}, never); err != context.DeadlineExceeded {
		t.Fatalf("Stop = %v; want DeadlineExceeded", err)
	}
}
