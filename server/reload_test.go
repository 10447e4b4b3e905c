package server

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prism-proxy/prism/backend"
	"github.com/prism-proxy/prism/codec"
	"github.com/prism-proxy/prism/internal/buildinfo"
)

// startDataOnly runs a gnet backend server that serves its data port only:
// it does not register, as a static backend.
func startDataOnly(t testing.TB, id, policy int64, mode backend.Mode) string {
	t.Helper()
	b, err := backend.New(backend.Config{ID: id, Policy: policy, Proxies: []string{}, Mode: mode, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return fmt.Sprintf("127.0.0.1:%d", b.Port())
}

// stalledBackend accepts data connections, reads them and never answers.
func stalledBackend(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go acceptStalled(ln)
	return ln.Addr().String()
}

func acceptStalled(ln net.Listener) {
	for {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		go readStalled(nc)
	}
}

func readStalled(nc net.Conn) {
	defer nc.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := nc.Read(buf); err != nil {
			return
		}
	}
}

func TestStaticBackendServedWithoutLease(t *testing.T) {
	addr := startDataOnly(t, 1, 7, backend.Upper)
	cfg := Config{Backends: []StaticBackend{{ID: 1, Policy: 7, Addr: addr}}}
	p := startProxy(t, cfg)
	c := dial(t, p, codec.Binary)
	if a := roundTrip(t, c, 42, 7, "hello"); a.Type != codec.TypeReply || a.Payload != "HELLO" || a.SrcID != 1 {
		t.Fatalf("answer %+v; want the reply HELLO from backend 1", a)
	}
	bs := policyBackends(p, 7)
	if len(bs) != 1 || !bs[0].Static || bs[0].Addr != addr || bs[0].Framing != "binary" {
		t.Errorf("backends of policy 7: %+v; want the static one at %s", bs, addr)
	}
	// Its id is the configuration's: a setup of it is refused.
	m, closed := setupOn(t, p.Addr(), 1, "")
	if m.Type != codec.TypeError || m.Code != codec.CodeUnauthorized || !strings.Contains(m.Error, "static") || !closed {
		t.Errorf("setup of a static id: %+v (closed %v); want unauthorized, closed", m, closed)
	}

	// Reload without it: it leaves rotation; with it again: it is back.
	cfg.Backends = nil
	cfg.Listen, cfg.Loops, cfg.Logger = p.Config().Listen, p.Config().Loops, quiet
	if _, err := p.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if a := roundTrip(t, c, 42, 7, "hello"); a.Code != codec.CodeNoBackend {
		t.Errorf("after the reload without it: %+v; want no_backend", a)
	}
	cfg.Backends = []StaticBackend{{ID: 1, Policy: 7, Addr: addr}}
	if _, err := p.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if a := roundTrip(t, c, 42, 7, "again"); a.Payload != "AGAIN" {
		t.Errorf("after the reload with it: %+v; want the reply AGAIN", a)
	}
}

// TestStaticBackendEjected checks that a static backend leaves rotation on
// failures like a registered one: with a second one that answers, requests
// stop going to the stalled one.
func TestStaticBackendEjected(t *testing.T) {
	good := startDataOnly(t, 2, 7, backend.Echo)
	p := startProxy(t, Config{Timeout: 100 * time.Millisecond, StallTimeout: -1, EjectAfter: 1, EjectTime: time.Minute,
		Retries: NoRetries, Backends: []StaticBackend{{ID: 1, Policy: 7, Addr: stalledBackend(t)}, {ID: 2, Policy: 7, Addr: good}}})
	c := dial(t, p, codec.Binary)
	waitFor(t, "the stalled static backend's ejection", 10*time.Second, func() bool {
		roundTrip(t, c, 42, 7, "x")
		for _, b := range p.Backends() {
			if b.ID == 1 {
				return b.State == "ejected"
			}
		}
		return false
	})
}

// TestReloadTimeout changes the timeout of a running proxy: a request to a
// backend that never answers gets its timeout answer after the new timeout,
// on a client connection opened before the reload.
func TestReloadTimeout(t *testing.T) {
	cfg := Config{Timeout: 30 * time.Second, StallTimeout: -1, Retries: NoRetries,
		Backends: []StaticBackend{{ID: 1, Policy: 7, Addr: stalledBackend(t)}}}
	p := startProxy(t, cfg)
	c := dial(t, p, codec.Binary)
	if a := roundTrip(t, c, 42, 8, "x"); a.Code != codec.CodeNoBackend {
		t.Fatalf("answer %+v; want no_backend", a)
	}
	cfg.Timeout = 200 * time.Millisecond
	cfg.Listen, cfg.Loops, cfg.Logger = p.Config().Listen, p.Config().Loops, quiet
	restart, err := p.Reload(cfg)
	if err != nil || len(restart) != 0 {
		t.Fatalf("Reload: %v, restart needed %v; want neither", err, restart)
	}
	if got := p.Config().Timeout; got != cfg.Timeout {
		t.Errorf("Config().Timeout = %v; want %v", got, cfg.Timeout)
	}
	// Reload returns once the loops have the new settings.
	began := time.Now()
	a := roundTrip(t, c, 42, 7, "x")
	took := time.Since(began)
	if a.Code != codec.CodeTimeout || took < cfg.Timeout || took > 5*time.Second {
		t.Fatalf("answer %+v after %v; want timeout after about %v", a, took, cfg.Timeout)
	}
}

func TestReloadRestartNeeded(t *testing.T) {
	p := startProxy(t, Config{Loops: 2, MaxConns: 100})
	run := p.Config()
	restart, err := p.Reload(Config{Listen: "127.0.0.1:1", Loops: 3, MaxConns: 50, RegisterListen: "127.0.0.1:0", MaxFrame: 4096})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"listen", "register-listen", "loops", "max-conns"}
	if !slices.Equal(restart, want) {
		t.Errorf("restart needed %v; want %v", restart, want)
	}
	got := p.Config()
	if got.Listen != run.Listen || got.Loops != run.Loops || got.MaxConns != run.MaxConns || got.RegisterListen != "" {
		t.Errorf("running %+v; want the listeners, loops and cap kept", got)
	}
	if got.MaxFrame != 4096 {
		t.Errorf("MaxFrame = %d; want the reloaded 4096", got.MaxFrame)
	}
	// A bad configuration changes nothing.
	if _, err := p.Reload(Config{Timeout: -time.Second}); !errors.Is(err, ErrConfig) {
		t.Errorf("Reload of a negative timeout: %v; want ErrConfig", err)
	}
	if got := p.Config(); got.MaxFrame != 4096 || got.Timeout != defaultTimeout {
		t.Errorf("after a bad reload: %+v; want the previous configuration", got)
	}
	// The new frame limit reaches connections open before the reload.
	c := dial(t, p, codec.Binary)
	c.Send(42, 7, strings.Repeat("x", 5000))
	c.Flush()
	if a := recv(t, c); a.Code != codec.CodeTooLarge {
		t.Errorf("a 5000-byte request after MaxFrame 4096: %+v; want too_large", a)
	}
}

func TestConfigRefusesNonsense(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  Config
		want string // in the error
	}{
		{"negative timeout", Config{Timeout: -time.Second}, "Timeout (-timeout) -1000000000: must not be negative"},
		{"negative loops", Config{Loops: -1}, "Loops (-loops)"},
		{"negative max frame", Config{MaxFrame: -1}, "MaxFrame (-max-frame)"},
		{"negative memory", Config{MaxMemory: -1}, "MaxMemory (-max-memory)"},
		{"negative dial timeout", Config{DialTimeout: -1}, "DialTimeout"},
		{"negative max conns", Config{MaxConns: -5}, "MaxConns (-max-conns)"},
		{"percent", Config{MaxEjectedPercent: 101}, "MaxEjectedPercent (-max-ejected-percent) 101: not a percentage"},
		{"buffer below frames", Config{MaxFrame: 1 << 20, MaxConnBuffer: 1 << 20}, "MaxConnBuffer 1048576: must be at least twice MaxFrame"},
		{"ejection below first", Config{EjectTime: time.Minute, EjectMaxTime: time.Second}, "EjectMaxTime (-eject-max-time) 1s: less than EjectTime"},
		{"cidr", Config{RegisterCIDR: "nope"}, `RegisterCIDR (-register-cidr): "nope"`},
		{"static twice", Config{Backends: []StaticBackend{{ID: 1, Policy: 7, Addr: "h:1"}, {ID: 1, Policy: 8, Addr: "h:2"}}}, "Backends[1] (id 1): the id is given twice"},
		{"static addr", Config{Backends: []StaticBackend{{ID: 1, Policy: 7, Addr: "nohost"}}}, `addr "nohost" is not host:port`},
		{"static port", Config{Backends: []StaticBackend{{ID: 1, Policy: 7, Addr: "h:0"}}}, "the port must be 1..65535"},
		{"static framing", Config{Backends: []StaticBackend{{ID: 1, Policy: 7, Addr: "h:1", Framing: "json"}}}, `framing "json"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.cfg.Check()
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Check: %v; want ErrConfig with %q", err, tt.want)
			}
		})
	}
}

func TestConfigZeroIsDefault(t *testing.T) {
	cfg, err := Config{MaxFrame: 4 << 20, EjectTime: time.Minute}.Check()
	if err != nil {
		t.Fatal(err)
	}
	if want := 2*(4<<20) + codec.HeaderLen; cfg.MaxConnBuffer != want {
		t.Errorf("MaxConnBuffer = %d; want %d (twice MaxFrame and a header)", cfg.MaxConnBuffer, want)
	}
	if cfg.EjectMaxTime != time.Minute {
		t.Errorf("EjectMaxTime = %v; want EjectTime, 1m", cfg.EjectMaxTime)
	}
	if cfg.Retries != 1 || cfg.Timeout != defaultTimeout {
		t.Errorf("Retries, Timeout = %d, %v; want the defaults", cfg.Retries, cfg.Timeout)
	}
}

func TestBuildInfoMetric(t *testing.T) {
	p := startProxy(t, Config{})
	srv := httptest.NewServer(p.AdminHandler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := fmt.Sprintf(`prism_build_info{commit="(devel)",goversion=%q,version="(devel)"} 1`, runtime.Version())
	if bi := buildinfo.Read(); bi.Commit != buildinfo.Unknown || bi.Version != buildinfo.Unknown {
		want = fmt.Sprintf(`prism_build_info{commit=%q,goversion=%q,version=%q} 1`, bi.Commit, bi.GoVersion, bi.Version)
	}
	if !strings.Contains(string(body), want) {
		t.Errorf("/metrics lacks %s", want)
	}
}
