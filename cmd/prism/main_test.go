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
