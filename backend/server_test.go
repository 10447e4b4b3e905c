package backend

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/prism-proxy/prism/client"
	"github.com/prism-proxy/prism/codec"
	"github.com/prism-proxy/prism/internal/gnetio"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// start runs a backend registered nowhere until the test ends.
func start(t testing.TB, cfg Config) *Server {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// dialData connects to s's data port with a deadline.
func dialData(t testing.TB, s *Server) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(s.Port()))
	if err != nil {
		t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	t.Cleanup(func() { nc.Close() })
	return nc
}

func TestAnswers(t *testing.T) {
	for _, tt := range []struct {
		name    string
		mode    Mode
		framing codec.Framing
		payload string
		want    string
	}{
		{"echo binary", Echo, codec.Binary, "hello", "hello"},
		{"upper binary", Upper, codec.Binary, "hello", "HELLO"},
		{"upper text", Upper, codec.Text, "héllo", "HÉLLO"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := start(t, Config{ID: 3, Mode: tt.mode})
			c := client.New(dialData(t, s), client.Options{Framing: tt.framing})
			r, err := c.Call(context.Background(), 9, 7, tt.payload)
			if err != nil {
				t.Fatal(err)
			}
			if r.Payload != tt.want || r.SrcID != 3 {
				t.Errorf("got %q from %d; want %q from 3", r.Payload, r.SrcID, tt.want)
			}
			// Served counts after the write: poll.
			for deadline := time.Now().Add(5 * time.Second); s.Served() != 1; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("Served() = %d; want 1", s.Served())
				}
			}
		})
	}
}

// A stream that cannot be cut into frames is answered with the right code,
// then closed.
func TestStreamErrors(t *testing.T) {
	oversized := binary.BigEndian.AppendUint32(nil, 101)
	for _, tt := range []struct {
		name    string
		send    []byte
		framing codec.Framing
		code    string
		text    string
	}{
		{"text garbage", []byte(" garbage\n"), codec.Text, codec.CodeBadRequest,
			"text stream is not a sequence of JSON objects"},
		{"oversized binary frame", oversized, codec.Binary, codec.CodeTooLarge,
			"message larger than 100 bytes"},
		{"oversized text object", []byte(`{"payload":"` + string(make([]byte, 120)) + `"}`), codec.Text,
			codec.CodeTooLarge, "message larger than 100 bytes"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := start(t, Config{MaxFrame: 100})
			nc := dialData(t, s)
			if _, err := nc.Write(tt.send); err != nil {
				t.Fatal(err)
			}
			c := client.New(nc, client.Options{Framing: tt.framing})
			var m codec.Message
			if err := c.Recv(&m); err != nil {
				t.Fatal(err)
			}
			if m.Type != codec.TypeError || m.Code != tt.code || m.Error != tt.text {
				t.Errorf("got type %d %q %q; want type 3 %q %q", m.Type, m.Code, m.Error, tt.code, tt.text)
			}
			if err := c.Recv(&m); err == nil {
				t.Errorf("connection still open after a stream error")
			}
		})
	}
}

// An invalid request is answered bad_request, and the connection goes on.
func TestBadRequest(t *testing.T) {
	s := start(t, Config{})
	c := client.New(dialData(t, s), client.Options{})
	if err := c.SendRaw([]byte(`{"type":0,"srcid":5}`)); err != nil {
		t.Fatal(err)
	}
	if err := c.Send(6, 7, "ok"); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	var m codec.Message
	if err := c.Recv(&m); err != nil {
		t.Fatal(err)
	}
	_, want := codec.ErrorAnswer(codec.ErrMissingField, 0)
	if m.Code != codec.CodeBadRequest || m.Error != want || m.DestID != 5 {
		t.Errorf("got %q %q to %d; want %q %q to 5", m.Code, m.Error, m.DestID, codec.CodeBadRequest, want)
	}
	if err := c.Recv(&m); err != nil || m.Type != codec.TypeReply || m.Payload != "ok" {
		t.Errorf("after a bad request: got %+v, %v; want the reply", m, err)
	}
}

func TestStartTwice(t *testing.T) {
	s := start(t, Config{})
	if err := s.Start(); !errors.Is(err, ErrStarted) {
		t.Errorf("second Start: got %v; want ErrStarted", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); !errors.Is(err, ErrClosed) {
		t.Errorf("Start after Close: got %v; want ErrClosed", err)
	}
}

func TestCloseBeforeStart(t *testing.T) {
	s, err := New(Config{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close before Start did not return")
	}
	if err := s.Start(); !errors.Is(err, ErrClosed) {
		t.Errorf("Start after Close: got %v; want ErrClosed", err)
	}
}

// blockingHandler holds every warning until release is closed: a lease that
// drops logs one, so its goroutine is stuck until then.
type blockingHandler struct {
	slog.Handler
	release chan struct{}
	blocked chan struct{}
}

func (h *blockingHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level == slog.LevelWarn {
		select {
		case h.blocked <- struct{}{}:
		default:
		}
		<-h.release
	}
	return nil
}

func TestShutdownHonoursContext(t *testing.T) {
	// A "proxy" that closes every lease at once.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			nc.Close()
		}
	}()
	h := &blockingHandler{Handler: quiet.Handler(), release: make(chan struct{}), blocked: make(chan struct{}, 1)}
	s := start(t, Config{Proxies: []string{ln.Addr().String()}, Logger: slog.New(h)})
	select {
	case <-h.blocked:
	case <-time.After(5 * time.Second):
		t.Fatal("the lease did not drop")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown with a lease stuck: got %v; want DeadlineExceeded", err)
	}
	close(h.release)
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown once the lease let go: %v", err)
	}
	if nc, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(s.Port())); err == nil {
		nc.Close()
		t.Errorf("data port still accepts after Shutdown")
	}
}

func TestRegisterFlags(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		want Config
	}{
		{"defaults", nil, Config{ID: 1, Proxies: []string{"127.0.0.1:9000"}, Listen: "127.0.0.1:0",
			Framing: codec.Binary, Loops: 1, ReplacedRetry: time.Minute, ResolveEvery: 30 * time.Second}},
		{"all set", []string{"-proxy", "a:1, b:2,", "-id", "3", "-policy", "7", "-port", "9101",
			"-host", "0.0.0.0", "-mode", "upper", "-token", "t", "-text", "-loops", "4", "-resolve-every", "5s"},
			Config{ID: 3, Policy: 7, Proxies: []string{"a:1", "b:2"}, Listen: "0.0.0.0:9101",
				Mode: Upper, Token: "t", Framing: codec.Text, Loops: 4, ReplacedRetry: time.Minute, ResolveEvery: 5 * time.Second}},
		{"serve only, host after port", []string{"-proxy", "", "-port", "5", "-host", "::1"},
			Config{ID: 1, Listen: "[::1]:5", Framing: codec.Binary, Loops: 1, ReplacedRetry: time.Minute, ResolveEvery: 30 * time.Second}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var c Config
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			c.RegisterFlags(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			c.Logger, c.MaxFrame, c.Retry = nil, 0, 0 // resolved defaults, not flags
			if !reflect.DeepEqual(c, tt.want) {
				t.Errorf("got %+v; want %+v", c, tt.want)
			}
		})
	}
	for _, bad := range [][]string{{"-mode", "loud"}, {"-port", "70000"}, {"-port", "x"}} {
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		var c Config
		c.RegisterFlags(fs)
		if err := fs.Parse(bad); err == nil {
			t.Errorf("%v: parsed; want an error", bad)
		}
	}
}

// A port in use is refused, whether another backend server holds it (its
// listeners are SO_REUSEPORT, which would let a second one share them: a
// proxy's connections for one policy reaching a server of another) or any
// other listener does.
func TestPortInUseRefused(t *testing.T) {
	a := start(t, Config{Loops: 2})
	addr := "127.0.0.1:" + strconv.Itoa(a.Port())
	b, err := New(Config{Listen: addr, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err == nil {
		b.Close()
		t.Fatalf("a second server started on %s, the port of another", addr)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := New(Config{Listen: ln.Addr().String(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err == nil {
		c.Close()
		t.Fatalf("a server started on %s, the port of a plain listener", ln.Addr())
	}
}

// Data connections past MaxConns are closed as they open, and counted:
// gnet stops a loop, and the server, when accept meets EMFILE, so the
// cap (by default from the open-files limit) keeps descriptors under it.
// The server goes on serving, and a connection freed makes room.
func TestMaxConns(t *testing.T) {
	const most = 4
	s := start(t, Config{ID: 3, Policy: 7, Loops: 2, MaxConns: most})
	var conns []net.Conn
	for range 3 * most {
		conns = append(conns, dialData(t, s))
	}
	served := 0
	for _, nc := range conns {
		c := client.New(nc, client.Options{})
		nc.SetDeadline(time.Now().Add(2 * time.Second))
		if r, err := c.Call(context.Background(), 9, 7, "x"); err == nil && r.Payload == "x" {
			served++
		}
	}
	if served != most || s.Refused() != 2*most {
		t.Fatalf("%d of %d connections served, %d refused; want %d and %d", served, len(conns), s.Refused(), most, 2*most)
	}
	for _, nc := range conns {
		nc.Close()
	}
	for deadline := time.Now().Add(5 * time.Second); s.open.Load() != 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections still counted open", s.open.Load())
		}
	}
	c := client.New(dialData(t, s), client.Options{})
	if r, err := c.Call(context.Background(), 9, 7, "again"); err != nil || r.Payload != "again" {
		t.Fatalf("after the flood: %+v %v", r, err)
	}
	select {
	case <-s.Done():
		t.Fatalf("the server stopped: %v", s.Err())
	default:
	}
}

func TestDefaultMaxConns(t *testing.T) {
	for _, tt := range []struct{ limit, want int }{{1024, 896}, {256, 176}, {20000, 18686}, {0, 1 << 20}, {40, 1}} {
		if got := defaultMaxConns(tt.limit); got != tt.want {
			t.Errorf("defaultMaxConns(%d) = %d; want %d", tt.limit, got, tt.want)
		}
	}
}

func TestMaxConnsOverLimitRefused(t *testing.T) {
	if _, err := New(Config{MaxConns: -1}); err == nil {
		t.Error("MaxConns -1 accepted")
	}
	if limit := gnetio.OpenFilesLimit(); limit > 0 {
		if _, err := New(Config{MaxConns: defaultMaxConns(limit) + 1}); err == nil {
			t.Errorf("MaxConns past the open-files limit %d accepted", limit)
		}
	}
}
