package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/prism-proxy/prism/client"
	"github.com/prism-proxy/prism/codec"
)

// A drain that expires while the backend stalls answers every request in
// flight "shutting_down", in its turn, and only then closes the client's
// connection: no client sees a bare EOF.
func TestShutdownExpiredAnswersInFlight(t *testing.T) {
	p := startProxy(t, Config{Loops: 2, Timeout: 30 * time.Second, StallTimeout: -1, EjectAfter: -1})
	stall := make(chan struct{})
	t.Cleanup(func() { close(stall) })
	newFakeBackend(t, p, 1, 7, func(_ int, s string) (string, bool) {
		<-stall
		return s, true
	})
	const clients, perClient = 4, 5
	conns := make([]*client.Conn, clients)
	sent := 0
	for i := range conns {
		c := dial(t, p, codec.Binary)
		conns[i] = c
		for j := range perClient {
			policy := int64(7)
			if j == 2 { // answered at once, but waits for its turn behind a stalled one
				policy = 9
			}
			c.Send(int64(100*i+j), policy, fmt.Sprint("req", j))
			sent++
		}
		c.Flush()
	}
	stalled := clients * (perClient - 1)
	waitFor(t, "requests in flight", 5*time.Second, func() bool {
		return p.Metrics().Snapshot().Inflight == int64(stalled)
	})

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := p.Shutdown(ctx)
	if !errors.Is(err, ErrDrainExpired) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v; want ErrDrainExpired and DeadlineExceeded", err)
	}

	answered := 0
	for i, c := range conns {
		for j := range perClient {
			a := recv(t, c)
			want := codec.CodeShuttingDown
			if j == 2 {
				want = codec.CodeNoBackend
			}
			if a.Type != codec.TypeError || a.Code != want || a.DestID != int64(100*i+j) {
				t.Fatalf("client %d request %d answered %+v; want %s", i, j, a, want)
			}
			answered++
		}
		if _, err := c.RecvRaw(); err != io.EOF && !isClosedErr(err) {
			t.Fatalf("client %d after its answers: %v; want EOF", i, err)
		}
	}
	if answered != sent {
		t.Errorf("answered %d of %d requests", answered, sent)
	}
	select {
	case <-p.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("proxy did not stop after an expired drain")
	}
	s := p.Metrics().Snapshot()
	if got := s.Errors[codec.CodeShuttingDown]; got != int64(stalled) {
		t.Errorf("shutting_down answers counted %d; want %d", got, stalled)
	}
	if s.Inflight != 0 {
		t.Errorf("in flight after the drain: %d; want 0", s.Inflight)
	}
}

// A drain whose requests are all answered before the deadline returns nil,
// even when the context ends later.
func TestShutdownDrainCompletes(t *testing.T) {
	p := startProxy(t, Config{Loops: 1})
	release := make(chan struct{})
	newFakeBackend(t, p, 1, 7, func(_ int, s string) (string, bool) {
		<-release
		return s, true
	})
	c := dial(t, p, codec.Binary)
	c.Send(1, 7, "held")
	c.Flush()
	waitFor(t, "request in flight", 5*time.Second, func() bool { return p.Metrics().Snapshot().Inflight == 1 })
	done := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() { done <- p.Shutdown(ctx) }()
	waitFor(t, "draining", 5*time.Second, func() bool { return p.p.draining.Load() })
	close(release)
	if a := recv(t, c); a.Type != codec.TypeReply || a.Payload != "held" {
		t.Fatalf("in-flight request answered %+v", a)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v; want nil", err)
	}
}
