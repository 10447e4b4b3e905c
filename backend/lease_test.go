package backend

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prism-proxy/prism/client"
	"github.com/prism-proxy/prism/codec"
)

// recordHandler keeps the messages logged at error level.
type recordHandler struct {
	slog.Handler
	mu     sync.Mutex
	errors []string
}

func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		var b strings.Builder
		b.WriteString(r.Message)
		r.Attrs(func(a slog.Attr) bool {
			b.WriteString(" " + a.String())
			return true
		})
		h.mu.Lock()
		h.errors = append(h.errors, b.String())
		h.mu.Unlock()
	}
	return nil
}

func (h *recordHandler) logged() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.errors...)
}

// A proxy that refuses the setup, or revokes the lease after acknowledging
// it, with a code that registering again cannot change, is given up on:
// the backend says why and does not dial it again. Other errors and a
// dropped lease are retried.
func TestLeaseGivesUp(t *testing.T) {
	for _, tt := range []struct {
		name    string
		ack     bool
		code    string
		want    error
		giveUp  bool
		logText string
	}{
		{"refused unauthorized", false, codec.CodeUnauthorized, ErrRefused, true, "setup refused: wrong or missing token"},
		{"refused bad_request", false, codec.CodeBadRequest, ErrRefused, true, "listenport must be 1..65535"},
		{"replaced, never again", true, codec.CodeUnauthorized, ErrRevoked, true, "replaced by a newer registration of id 1 from 10.0.0.2:4000"},
		{"shutting down", true, codec.CodeShuttingDown, nil, false, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			var dials atomic.Int32
			go fakeProxy(ln, &dials, tt.ack, tt.code, tt.logText)
			h := &recordHandler{Handler: quiet.Handler()}
			s := start(t, Config{ID: 1, Proxies: []string{ln.Addr().String()}, Logger: slog.New(h), Retry: 20 * time.Millisecond,
				ReplacedRetry: -1})
			if !tt.giveUp {
				waitDials(t, &dials, 3) // it keeps registering again
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			// An acknowledged lease is registered until the revocation is
			// read: WaitRegistered may see that moment and return nil.
			for err = s.WaitRegistered(ctx); err == nil && tt.ack; err = s.WaitRegistered(ctx) {
				time.Sleep(time.Millisecond)
			}
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.code+": "+tt.logText) {
				t.Fatalf("WaitRegistered: %v; want %v with %q", err, tt.want, tt.logText)
			}
			// The lease goroutine logs, then returns: once logged, no dial can follow.
			deadline := time.Now().Add(5 * time.Second)
			for len(h.logged()) == 0 {
				if time.Now().After(deadline) {
					t.Fatal("giving up was not logged")
				}
				time.Sleep(time.Millisecond)
			}
			if got := h.logged()[0]; !strings.Contains(got, "not registering with this proxy again") || !strings.Contains(got, tt.logText) {
				t.Errorf("logged %q; want the reason", got)
			}
			s.Close() // waits for the lease goroutines
			if n := dials.Load(); n != 1 {
				t.Errorf("dialed the proxy %d times; want 1", n)
			}
		})
	}
}

// fakeProxy answers each setup with an ack and then an error of code, or
// with only the error, and closes.
func fakeProxy(ln net.Listener, dials *atomic.Int32, ack bool, code, text string) {
	for {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		dials.Add(1)
		c := client.New(nc, client.Options{})
		var m codec.Message
		if err := c.Recv(&m); err == nil {
			if ack {
				c.SendRaw(codec.AppendAck(nil, m.ID, 0))
			}
			c.SendRaw(codec.AppendError(nil, m.ID, code, text))
			c.Flush()
		}
		nc.Close()
	}
}

func waitDials(t *testing.T, dials *atomic.Int32, n int32) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); dials.Load() < n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("dialed %d times; want at least %d", dials.Load(), n)
		}
	}
}

// A server whose registration was replaced registers again, but only after
// ReplacedRetry, and says why.
func TestReplacedRegistersAgainLater(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var dials atomic.Int32
	go fakeProxy(ln, &dials, true, codec.CodeUnauthorized, "replaced by a newer registration of id 1 from 10.0.0.2:4000")
	h := &recordHandler{Handler: quiet.Handler()}
	start(t, Config{ID: 1, Proxies: []string{ln.Addr().String()}, Logger: slog.New(h), Retry: 20 * time.Millisecond,
		ReplacedRetry: 300 * time.Millisecond})
	began := time.Now()
	waitDials(t, &dials, 2)
	if d := time.Since(began); d < 250*time.Millisecond {
		t.Fatalf("registered again after %v; want ReplacedRetry (300ms)", d)
	}
	if got := h.logged(); len(got) == 0 || !strings.Contains(got[0], "another server registered this id") {
		t.Fatalf("logged %q", got)
	}
}

// warnHandler keeps the messages logged at warn level.
type warnHandler struct {
	slog.Handler
	mu   sync.Mutex
	msgs []string
}

func (h *warnHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Level == slog.LevelWarn {
		h.mu.Lock()
		h.msgs = append(h.msgs, r.Message)
		h.mu.Unlock()
	}
	return nil
}

func (h *warnHandler) logged() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.msgs...)
}

// A lease that never got its acknowledgement is not "lost": the log says
// the registration failed, and why.
func TestRegisterFailureLog(t *testing.T) {
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()
	for _, tt := range []struct {
		name  string
		proxy func(t *testing.T) string
		want  string
	}{
		{"no proxy", func(*testing.T) string { return closedAddr }, "could not register: dial failed (is the proxy running at this address?); trying again"},
		{"refused", func(t *testing.T) string { return fakeProxyAddr(t, false) }, "could not register: the proxy answered the setup with an error; trying again"},
		{"acknowledged, then dropped", func(t *testing.T) string { return fakeProxyAddr(t, true) }, "lease lost; registering again"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := &warnHandler{Handler: quiet.Handler()}
			start(t, Config{ID: 1, Proxies: []string{tt.proxy(t)}, Logger: slog.New(h), Retry: 20 * time.Millisecond})
			for deadline := time.Now().Add(5 * time.Second); len(h.logged()) == 0; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("nothing logged")
				}
			}
			for _, got := range h.logged() {
				if got != tt.want {
					t.Errorf("logged %q; want %q", got, tt.want)
				}
			}
		})
	}
}

func fakeProxyAddr(t *testing.T, ack bool) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var dials atomic.Int32
	go fakeProxy(ln, &dials, ack, codec.CodeShuttingDown, "the proxy is shutting down")
	return ln.Addr().String()
}
