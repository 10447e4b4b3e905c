package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"reflect"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prism-proxy/prism/bench/loadgen"
	"github.com/prism-proxy/prism/codec"
	"github.com/prism-proxy/prism/demo"
	"github.com/prism-proxy/prism/server"
)

// TestMain lets the tests run the command: with PRISM_TEST_MAIN=1 the test
// binary is prism.
func TestMain(m *testing.M) {
	if os.Getenv("PRISM_TEST_MAIN") == "1" {
		os.Exit(run(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// prism runs the command line args in a child process and returns its exit
// status, standard output and standard error.
func prism(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), os.Args[0], args...)
	cmd.Env = append(os.Environ(), "PRISM_TEST_MAIN=1")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return code, out.String(), errOut.String()
}

func TestExitCodesAndStreams(t *testing.T) {
	for _, tt := range []struct {
		name      string
		args      []string
		code      int
		stdout    string // a substring; "" means empty
		stderr    string // a substring; "" means empty
		nilStdout bool
		nilStderr bool
	}{
		{name: "help", args: []string{"help"}, code: 0, stdout: "usage: prism <command>", nilStderr: true},
		{name: "-h", args: []string{"-h"}, code: 0, stdout: "usage: prism <command>", nilStderr: true},
		{name: "--help", args: []string{"--help"}, code: 0, stdout: "usage: prism <command>", nilStderr: true},
		{name: "help proxy", args: []string{"help", "proxy"}, code: 0, stdout: "-log-format", nilStderr: true},
		{name: "help backend", args: []string{"help", "backend"}, code: 0, stdout: "-policy", nilStderr: true},
		{name: "help client", args: []string{"help", "client"}, code: 0, stdout: "usage: prism client", nilStderr: true},
		{name: "help bench", args: []string{"help", "bench"}, code: 0, stdout: "usage: prism bench", nilStderr: true},
		{name: "help unknown", args: []string{"help", "frobnicate"}, code: 2, stderr: `unknown command "frobnicate"`, nilStdout: true},
		{name: "no command", args: nil, code: 2, stderr: "usage: prism <command>", nilStdout: true},
		{name: "unknown command", args: []string{"frobnicate"}, code: 2, stderr: `unknown command "frobnicate"`, nilStdout: true},
		{name: "proxy -h", args: []string{"proxy", "-h"}, code: 0, stdout: "-register-token", nilStderr: true},
		{name: "proxy bad flag", args: []string{"proxy", "-nope"}, code: 2, stderr: "flag provided but not defined: -nope", nilStdout: true},
		{name: "proxy bad value", args: []string{"proxy", "-retries", "x"}, code: 2, stderr: `invalid value "x" for flag -retries`, nilStdout: true},
		{name: "proxy unexpected args", args: []string{"proxy", "extra"}, code: 2, stderr: "unexpected arguments", nilStdout: true},
		{name: "backend -h", args: []string{"backend", "-h"}, code: 0, stdout: "-policy", nilStderr: true},
		{name: "backend bad flag", args: []string{"backend", "-nope"}, code: 2, stderr: "-nope", nilStdout: true},
		{name: "client -h", args: []string{"client", "-h"}, code: 0, stdout: "usage: prism client", nilStderr: true},
		{name: "bench -h", args: []string{"bench", "-h"}, code: 0, stdout: "usage: prism bench", nilStderr: true},
		{name: "bench bad flag", args: []string{"bench", "-nope"}, code: 2, stderr: "usage: prism bench", nilStdout: true},
		{name: "bench unexpected args", args: []string{"bench", "extra"}, code: 2, stderr: `unexpected argument "extra"`, nilStdout: true},
		{name: "demo -h", args: []string{"demo", "-h"}, code: 0, stdout: "-clients", nilStderr: true},
		{name: "demo unexpected args", args: []string{"demo", "extra"}, code: 2, stderr: "unexpected arguments", nilStdout: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := prism(t, tt.args...)
			if code != tt.code {
				t.Errorf("exit status %d; want %d (stderr %q)", code, tt.code, stderr)
			}
			check := func(stream, got, want string, empty bool) {
				switch {
				case empty && got != "":
					t.Errorf("%s = %q; want it empty", stream, got)
				case !strings.Contains(got, want):
					t.Errorf("%s = %q; want it to contain %q", stream, got, want)
				}
			}
			check("stdout", stdout, tt.stdout, tt.nilStdout)
			check("stderr", stderr, tt.stderr, tt.nilStderr)
		})
	}
}

func TestParseProxyArgs(t *testing.T) {
	def := server.Config{
		Listen: "127.0.0.1:9000", Loops: runtime.NumCPU(), Timeout: 5 * time.Second, Retries: 1,
		MaxFrame: 1 << 20, MaxClientInflight: 1024,
		EjectAfter: 5, EjectTime: time.Second, EjectMaxTime: 30 * time.Second, MaxEjectedPercent: 50,
		MaxMemory: 1 << 30, RetryBudget: 20, IdleTimeout: 5 * time.Minute, FrameTimeout: 10 * time.Second,
		RegistryTTL: 10 * time.Second, Balance: "rr",
	}
	with := func(f func(*server.Config)) server.Config { c := def; f(&c); return c }
	for _, tt := range []struct {
		name  string
		args  []string
		want  server.Config
		admin string
		drain time.Duration
	}{
		{name: "defaults", want: def, drain: 10 * time.Second},
		{name: "listen", args: []string{"-listen", "0.0.0.0:7000"}, want: with(func(c *server.Config) { c.Listen = "0.0.0.0:7000" }), drain: 10 * time.Second},
		{name: "port overrides listen", args: []string{"-listen", "0.0.0.0:7000", "-port", "9001"},
			want: with(func(c *server.Config) { c.Listen = "localhost:9001" }), drain: 10 * time.Second},
		{name: "retries 0 is NoRetries", args: []string{"-retries", "0"}, want: with(func(c *server.Config) { c.Retries = server.NoRetries }), drain: 10 * time.Second},
		{name: "retries 3", args: []string{"-retries", "3"}, want: with(func(c *server.Config) { c.Retries = 3 }), drain: 10 * time.Second},
		{name: "connection limits", args: []string{"-max-conns", "100", "-idle-timeout", "30s", "-frame-timeout", "2s"},
			want: with(func(c *server.Config) { c.MaxConns, c.IdleTimeout, c.FrameTimeout = 100, 30*time.Second, 2*time.Second }), drain: 10 * time.Second},
		{name: "timeouts 0 are off", args: []string{"-idle-timeout", "0", "-frame-timeout", "0"},
			want: with(func(c *server.Config) { c.IdleTimeout, c.FrameTimeout = -1, -1 }), drain: 10 * time.Second},
		{name: "readiness", args: []string{"-ready-min-backends", "2", "-ready-policies", "7,8"},
			want: with(func(c *server.Config) { c.ReadyMinBackends, c.ReadyPolicies = 2, "7,8" }), drain: 10 * time.Second},
		{name: "balance", args: []string{"-balance", "p2c", "-balance-policy", "8=rr"},
			want: with(func(c *server.Config) { c.Balance, c.BalancePolicy = "p2c", "8=rr" }), drain: 10 * time.Second},
		{name: "fleet registry", args: []string{"-registry", "etcd://10.0.0.1:2379,10.0.0.2:2379", "-proxy-id", "p1", "-registry-ttl", "5s"},
			want: with(func(c *server.Config) {
				c.Registry, c.ProxyID, c.RegistryTTL = "etcd://10.0.0.1:2379,10.0.0.2:2379", "p1", 5*time.Second
			}), drain: 10 * time.Second},
		{name: "all", args: []string{"-loops", "3", "-timeout", "250ms", "-max-frame", "4096", "-register-token", "s3cret",
			"-max-inflight", "8", "-admin", "127.0.0.1:0", "-drain", "1s", "-v"},
			want: with(func(c *server.Config) {
				c.Loops, c.Timeout, c.MaxFrame, c.RegisterToken, c.MaxClientInflight = 3, 250*time.Millisecond, 4096, "s3cret", 8
			}),
			admin: "127.0.0.1:0", drain: time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pa, code, done := parseProxyArgs(tt.args)
			if done {
				t.Fatalf("parseProxyArgs(%q) stopped with status %d", tt.args, code)
			}
			if !reflect.DeepEqual(pa.cfg, tt.want) {
				t.Errorf("config = %+v; want %+v", pa.cfg, tt.want)
			}
			if pa.admin != tt.admin || pa.drain != tt.drain {
				t.Errorf("admin, drain = %q, %v; want %q, %v", pa.admin, pa.drain, tt.admin, tt.drain)
			}
		})
	}
}

func TestParseBenchArgs(t *testing.T) {
	def := loadgen.Config{
		Targets: []string{"127.0.0.1:9000"}, Conns: 32, Size: 64, Policies: []int64{0}, SrcID: 1,
		Timeout: 10 * time.Second, Framing: codec.Binary,
	}
	with := func(f func(*loadgen.Config)) loadgen.Config {
		c := def
		c.Targets = append([]string(nil), def.Targets...)
		c.Policies = append([]int64(nil), def.Policies...)
		f(&c)
		return c
	}
	for _, tt := range []struct {
		name   string
		args   []string
		want   loadgen.Config
		asJSON bool
		hgrm   string
	}{
		{name: "defaults", want: def},
		{name: "targets list", args: []string{"-proxy", " a:1, ,b:2,"}, want: with(func(c *loadgen.Config) { c.Targets = []string{"a:1", "b:2"} })},
		{name: "policies list", args: []string{"-policy", "3, 4,-5"}, want: with(func(c *loadgen.Config) { c.Policies = []int64{3, 4, -5} })},
		{name: "warmup 0 is none", args: []string{"-warmup", "0"}, want: with(func(c *loadgen.Config) { c.Warmup = -1 })},
		{name: "timeout 0 is never", args: []string{"-timeout", "0"}, want: with(func(c *loadgen.Config) { c.Timeout = -1 })},
		{name: "size 0 is empty", args: []string{"-size", "0"}, want: with(func(c *loadgen.Config) { c.Size = -1 })},
		{name: "rate 0 is closed loop", args: []string{"-rate", "0"}, want: def},
		{name: "open loop", args: []string{"-rate", "5000", "-pipeline", "7", "-warmup", "2s", "-duration", "3s"},
			want: with(func(c *loadgen.Config) {
				c.Rate, c.Pipeline, c.Warmup, c.Duration = 5000, 7, 2*time.Second, 3*time.Second
			})},
		{name: "all", args: []string{"-conns", "4", "-n", "1000", "-size", "10", "-id", "9", "-timeout", "1s", "-text",
			"-json", "-hgrm", "out.hgrm"},
			want: with(func(c *loadgen.Config) {
				c.Conns, c.Requests, c.Size, c.SrcID, c.Timeout, c.Framing = 4, 1000, 10, 9, time.Second, codec.Text
			}),
			asJSON: true, hgrm: "out.hgrm"},
		{name: "text=false", args: []string{"-text=false"}, want: def},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ba, code, done := parseBenchArgs(tt.args)
			if done {
				t.Fatalf("parseBenchArgs(%q) stopped with status %d", tt.args, code)
			}
			if !reflect.DeepEqual(ba.cfg, tt.want) {
				t.Errorf("config = %+v; want %+v", ba.cfg, tt.want)
			}
			if ba.asJSON != tt.asJSON || ba.hgrm != tt.hgrm {
				t.Errorf("json, hgrm = %v, %q; want %v, %q", ba.asJSON, ba.hgrm, tt.asJSON, tt.hgrm)
			}
		})
	}
}

func TestParseDemoArgs(t *testing.T) {
	def := demo.Config{Duration: 10 * time.Second, Clients: 8, Pipeline: 8, Policies: 3, Backends: 2, Size: 256}
	with := func(f func(*demo.Config)) demo.Config { c := def; f(&c); return c }
	for _, tt := range []struct {
		name    string
		args    []string
		want    demo.Config
		verbose bool
	}{
		{name: "defaults", want: def},
		{name: "loops 0 is one per CPU", args: []string{"-loops", "0"}, want: def},
		{name: "all", args: []string{"-duration", "2s", "-clients", "3", "-pipeline", "4", "-policies", "5", "-backends", "6",
			"-loops", "7", "-size", "100", "-v"},
			want: with(func(c *demo.Config) {
				c.Duration, c.Clients, c.Pipeline, c.Policies, c.Backends, c.Loops, c.Size = 2*time.Second, 3, 4, 5, 6, 7, 100
			}),
			verbose: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			da, code, done := parseDemoArgs(tt.args)
			if done {
				t.Fatalf("parseDemoArgs(%q) stopped with status %d", tt.args, code)
			}
			if !reflect.DeepEqual(da.cfg, tt.want) {
				t.Errorf("config = %+v; want %+v", da.cfg, tt.want)
			}
			if da.verbose != tt.verbose {
				t.Errorf("verbose = %v; want %v", da.verbose, tt.verbose)
			}
		})
	}
}

func TestParseClientArgs(t *testing.T) {
	def := clientArgs{addr: "127.0.0.1:9000", id: 1, count: 1, timeout: 10 * time.Second}
	with := func(f func(*clientArgs)) clientArgs { c := def; f(&c); return c }
	for _, tt := range []struct {
		name string
		args []string
		want clientArgs
	}{
		{name: "defaults", want: def},
		{name: "all", args: []string{"-proxy", "h:1", "-id", "2", "-policy", "3", "-n", "4", "-timeout", "1s", "-text", "hello", "world"},
			want: with(func(c *clientArgs) {
				c.addr, c.id, c.policy, c.count, c.timeout = "h:1", 2, 3, 4, time.Second
				c.opts.Framing, c.words = codec.Text, []string{"hello", "world"}
			})},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ca, code, done := parseClientArgs(tt.args)
			if done {
				t.Fatalf("parseClientArgs(%q) stopped with status %d", tt.args, code)
			}
			if !reflect.DeepEqual(ca, tt.want) {
				t.Errorf("args = %+v; want %+v", ca, tt.want)
			}
		})
	}
}

// TestBenchDemoUsageErrors checks the flag values the commands refuse, where
// the Config would take them for its defaults or reject them later.
func TestBenchDemoUsageErrors(t *testing.T) {
	for _, tt := range []struct {
		name   string
		args   []string
		stderr string
	}{
		{name: "bench conns 0", args: []string{"bench", "-conns", "0"}, stderr: "-conns: must be more than 0"},
		{name: "bench conns negative", args: []string{"bench", "-conns", "-1"}, stderr: "-conns: must be more than 0"},
		{name: "bench pipeline 0", args: []string{"bench", "-pipeline", "0"}, stderr: "-pipeline: must be more than 0"},
		{name: "bench size negative", args: []string{"bench", "-size", "-1"}, stderr: "-size: must not be negative"},
		{name: "bench bad policy", args: []string{"bench", "-policy", "1,x"}, stderr: `bad policy "x"`},
		{name: "bench no target", args: []string{"bench", "-proxy", ","}, stderr: "no target address"},
		{name: "bench negative rate", args: []string{"bench", "-rate", "-1"}, stderr: "rate -1"},
		{name: "demo clients 0", args: []string{"demo", "-clients", "0"}, stderr: "-clients: must be more than 0"},
		{name: "demo duration 0", args: []string{"demo", "-duration", "0"}, stderr: "-duration: must be more than 0"},
		{name: "demo size 0", args: []string{"demo", "-size", "0"}, stderr: "-size: must be more than 0"},
		{name: "demo negative loops", args: []string{"demo", "-loops", "-1"}, stderr: "negative loops"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := prism(t, tt.args...)
			if code != 2 {
				t.Errorf("exit status %d; want 2 (stderr %q)", code, stderr)
			}
			if stdout != "" {
				t.Errorf("stdout = %q; want it empty", stdout)
			}
			if !strings.Contains(stderr, tt.stderr) || !strings.Contains(stderr, "-pipeline") {
				t.Errorf("stderr = %q; want it to contain %q and the usage", stderr, tt.stderr)
			}
		})
	}
}

// TestProxyAdminShutsDown runs the proxy with its admin endpoint, asks it for
// /healthz, stops it with SIGTERM and checks that both are gone: status 0.
func TestProxyAdminShutsDown(t *testing.T) {
	cmd := exec.CommandContext(t.Context(), os.Args[0], "proxy", "-listen", "127.0.0.1:0", "-admin", "127.0.0.1:0", "-loops", "1")
	cmd.Env = append(os.Environ(), "PRISM_TEST_MAIN=1")
	cmd.WaitDelay = 5 * time.Second
	logs, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := make(chan string, 1)
	go scanAdminAddr(logs, addr)
	var admin string
	select {
	case admin = <-addr:
	case <-time.After(10 * time.Second):
		t.Fatal("the proxy logged no admin address")
	}
	resp, err := http.Get("http://" + admin + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /healthz: %s; want 200", resp.Status)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("proxy after SIGTERM: %v; want exit status 0", err)
	}
	if c, err := net.DialTimeout("tcp", admin, time.Second); err == nil {
		c.Close()
		t.Errorf("admin endpoint %s still accepts after the proxy exited", admin)
	}
}

// scanAdminAddr sends the address of the proxy's "admin listening" log line
// on addr, and drains r.
func scanAdminAddr(r io.Reader, addr chan<- string) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, "admin listening") {
			continue
		}
		if _, a, ok := strings.Cut(line, "addr="); ok {
			addr <- strings.Fields(a)[0]
		}
	}
}
