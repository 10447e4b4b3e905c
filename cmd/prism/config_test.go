package main

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prism-proxy/prism/client"
	"github.com/prism-proxy/prism/codec"
	"github.com/prism-proxy/prism/server"
)

// writeConfig writes a configuration file in the test's directory.
func writeConfig(t testing.TB, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "prism.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLayerProxyArgs(t *testing.T) {
	const file = `# a comment
timeout: 3s
max-conns: 100
retries: 2
admin: 127.0.0.1:9090
backends:
  - {id: 1, policy: 7, addr: "10.0.0.5:9101"}
  - id: 2
    policy: 7
    addr: 10.0.0.6:9101
    framing: text
`
	for _, tt := range []struct {
		name  string
		file  string // "" for none
		env   map[string]string
		args  []string
		check func(t *testing.T, pa proxyArgs)
		err   string // in the error; "" for none
	}{
		{name: "file", file: file, check: func(t *testing.T, pa proxyArgs) {
			if pa.cfg.Timeout != 3*time.Second || pa.cfg.MaxConns != 100 || pa.cfg.Retries != 2 || pa.admin != "127.0.0.1:9090" {
				t.Errorf("timeout, max-conns, retries, admin = %v, %d, %d, %q; want the file's", pa.cfg.Timeout, pa.cfg.MaxConns, pa.cfg.Retries, pa.admin)
			}
			want := []server.StaticBackend{{ID: 1, Policy: 7, Addr: "10.0.0.5:9101"}, {ID: 2, Policy: 7, Addr: "10.0.0.6:9101", Framing: "text"}}
			if len(pa.cfg.Backends) != 2 || pa.cfg.Backends[0] != want[0] || pa.cfg.Backends[1] != want[1] {
				t.Errorf("backends = %+v; want %+v", pa.cfg.Backends, want)
			}
		}},
		{name: "env over file", file: file, env: map[string]string{"PRISM_TIMEOUT": "4s", "PRISM_MAX_CONNS": "50"},
			check: func(t *testing.T, pa proxyArgs) {
				if pa.cfg.Timeout != 4*time.Second || pa.cfg.MaxConns != 50 || pa.cfg.Retries != 2 {
					t.Errorf("timeout, max-conns, retries = %v, %d, %d; want 4s, 50 (env), 2 (file)", pa.cfg.Timeout, pa.cfg.MaxConns, pa.cfg.Retries)
				}
			}},
		{name: "flag over env and file", file: file, env: map[string]string{"PRISM_TIMEOUT": "4s"}, args: []string{"-timeout", "5s", "-max-conns", "10"},
			check: func(t *testing.T, pa proxyArgs) {
				if pa.cfg.Timeout != 5*time.Second || pa.cfg.MaxConns != 10 {
					t.Errorf("timeout, max-conns = %v, %d; want the flags' 5s, 10", pa.cfg.Timeout, pa.cfg.MaxConns)
				}
			}},
		{name: "PRISM_CONFIG", env: map[string]string{"PRISM_CONFIG": "FILE"}, check: func(t *testing.T, pa proxyArgs) {
			if pa.cfg.Timeout != 3*time.Second {
				t.Errorf("timeout = %v; want the file's 3s", pa.cfg.Timeout)
			}
		}},
		{name: "fleet registry from file and env", file: "registry: etcd://10.0.0.1:2379\nregistry-ttl: 4s\n",
			env: map[string]string{"PRISM_PROXY_ID": "p2"},
			check: func(t *testing.T, pa proxyArgs) {
				if pa.cfg.Registry != "etcd://10.0.0.1:2379" || pa.cfg.RegistryTTL != 4*time.Second || pa.cfg.ProxyID != "p2" {
					t.Errorf("registry, ttl, proxy id = %q, %v, %q; want the file's and the env's", pa.cfg.Registry, pa.cfg.RegistryTTL, pa.cfg.ProxyID)
				}
			}},
		{name: "env alone", env: map[string]string{"PRISM_IDLE_TIMEOUT": "0", "PRISM_V": "true", "PRISM_REGISTER_TOKEN": "s3cret"},
			check: func(t *testing.T, pa proxyArgs) {
				if pa.cfg.IdleTimeout != -1 || !pa.verbose || pa.cfg.RegisterToken != "s3cret" {
					t.Errorf("idle timeout, v, token = %v, %v, %q; want off, true, s3cret", pa.cfg.IdleTimeout, pa.verbose, pa.cfg.RegisterToken)
				}
			}},
		{name: "empty file", file: "# nothing\n", check: func(t *testing.T, pa proxyArgs) {
			if pa.cfg.Timeout != 5*time.Second {
				t.Errorf("timeout = %v; want the default", pa.cfg.Timeout)
			}
		}},
		{name: "unknown key", file: "timeout: 3s\ntimout: 4s\n", err: `prism.yaml:2: unknown key "timout"`},
		{name: "not a setting", file: "check: true\n", err: `prism.yaml:1: unknown key "check"`},
		{name: "bad value", file: "timeout: 3s\n\nmax-frame: 0\n", err: `prism.yaml:3: max-frame: invalid value "0": must be more than 0`},
		{name: "negative timeout", file: "timeout: -1s\n", err: `prism.yaml:1: timeout: invalid value "-1s": must be more than 0`},
		{name: "negative retries", file: "retries: -1\n", err: `prism.yaml:1: retries: invalid value "-1": must not be negative`},
		{name: "negative drain", file: "drain: -1s\n", err: `prism.yaml:1: drain: invalid value "-1s": must not be negative`},
		{name: "not a duration", file: "idle-timeout: soon\n", err: `prism.yaml:1: idle-timeout: invalid value "soon": parse error`},
		{name: "no value", file: "timeout:\n", err: "prism.yaml:1: timeout: want a single value"},
		{name: "twice", file: "timeout: 1s\nloops: 2\ntimeout: 2s\n", err: "prism.yaml:3: timeout: given twice (first at line 1)"},
		{name: "not a mapping", file: "- timeout\n", err: "prism.yaml:1: want a mapping"},
		{name: "bad yaml", file: "timeout: [1s\n", err: "prism.yaml: yaml: line 1"},
		{name: "backend unknown key", file: "backends:\n  - id: 1\n    policy: 7\n    adr: h:1\n", err: `prism.yaml:4: backends: unknown key "adr"`},
		{name: "backend bad id", file: "backends:\n  - {id: one, policy: 7, addr: h:1}\n", err: `prism.yaml:2: backends: id: invalid value "one": want an integer`},
		{name: "backend bad framing", file: "backends:\n  - id: 1\n    policy: 7\n    addr: h:1\n    framing: json\n", err: `prism.yaml:5: backends: framing: invalid value "json": want binary or text`},
		{name: "backend missing addr", file: "backends:\n  - id: 1\n    policy: 7\n", err: "prism.yaml:2: backends: addr missing"},
		{name: "bad env", env: map[string]string{"PRISM_MAX_FRAME": "0"}, err: `environment PRISM_MAX_FRAME="0": invalid value for -max-frame: must be more than 0`},
		{name: "missing file", args: []string{"-config", "/nonexistent/prism.yaml"}, err: "/nonexistent/prism.yaml"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			env := map[string]string{}
			for k, v := range tt.env {
				env[k] = v
			}
			if tt.file != "" || env["PRISM_CONFIG"] != "" {
				path := writeConfig(t, cmpOr(tt.file, file))
				if env["PRISM_CONFIG"] != "" {
					env["PRISM_CONFIG"] = path
				} else {
					args = append([]string{"-config", path}, args...)
				}
			}
			pa, err := layerProxyArgs(args, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
			switch {
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Fatalf("error %v; want one with %q", err, tt.err)
			case tt.err == "" && err != nil:
				t.Fatal(err)
			case tt.check != nil:
				tt.check(t, pa)
			}
		})
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func TestCheckConfig(t *testing.T) {
	good := writeConfig(t, "timeout: 3s\nmax-conns: 100\nregister-token: s3cret\nbackends:\n  - {id: 1, policy: 7, addr: \"127.0.0.1:9101\"}\n")
	code, stdout, stderr := prism(t, "proxy", "-check", "-config", good, "-loops", "2")
	if code != 0 || stderr != "" {
		t.Fatalf("prism proxy -check: status %d, stderr %q; want 0 and nothing", code, stderr)
	}
	for _, want := range []string{"timeout: 3s\n", "max-conns: 100\n", "loops: 2\n", "max-frame: 1048576\n", "stall-timeout: 1s\n",
		"listen: \"127.0.0.1:9000\"\n", "drain: 10s\n", "log-level: info\n", "register-token: \"(hidden)\"\n",
		"backends:\n  - {id: 1, policy: 7, addr: \"127.0.0.1:9101\", framing: binary}\n"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("-check output lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, "s3cret") {
		t.Errorf("-check output shows the register token:\n%s", stdout)
	}
	// The output is a configuration file (but for the hidden token).
	again := writeConfig(t, strings.Replace(stdout, `"(hidden)"`, `"s3cret"`, 1))
	if code, stdout2, stderr := prism(t, "proxy", "-check", "-config", again); code != 0 || stdout2 != stdout {
		t.Errorf("-check of its own output: status %d, stderr %q, output\n%s\nwant 0 and\n%s", code, stderr, stdout2, stdout)
	}

	bad := writeConfig(t, "timeout: 3s\nmax-frame: 0\n")
	code, stdout, stderr = prism(t, "proxy", "-check", "-config", bad)
	if code != 2 || stdout != "" || !strings.Contains(stderr, "prism.yaml:2: max-frame") {
		t.Errorf("-check of a bad file: status %d, stdout %q, stderr %q; want 2 and the key's line", code, stdout, stderr)
	}
	code, _, stderr = prism(t, "proxy", "-check", "-eject-time", "1m", "-eject-max-time", "1s")
	if code != 2 || !strings.Contains(stderr, "EjectMaxTime (-eject-max-time) 1s: less than EjectTime") {
		t.Errorf("-check of inconsistent flags: status %d, stderr %q; want 2 and the setting", code, stderr)
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"-version"}} {
		code, stdout, stderr := prism(t, args...)
		if code != 0 || stderr != "" || !strings.HasPrefix(stdout, "prism ") || !strings.Contains(stdout, " commit ") ||
			!strings.HasSuffix(stdout, " "+runtime.Version()+"\n") {
			t.Errorf("prism %v: status %d, stdout %q, stderr %q; want 0 and \"prism <version> commit <commit> %s\"", args, code, stdout, stderr, runtime.Version())
		}
	}
}

// logWatch reads a process's log lines and waits for ones that contain a
// string.
type logWatch struct {
	lines chan string
}

func watchLog(r io.Reader) *logWatch {
	w := &logWatch{lines: make(chan string, 1024)}
	go scanLog(r, w.lines)
	return w
}

func scanLog(r io.Reader, lines chan<- string) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		lines <- sc.Text()
	}
	close(lines)
}

// wait returns the first line that contains s, within d.
func (w *logWatch) wait(t testing.TB, s string, d time.Duration) string {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case line, ok := <-w.lines:
			if !ok {
				t.Fatalf("the log ended without %q", s)
			}
			if strings.Contains(line, s) {
				return line
			}
		case <-timeout:
			t.Fatalf("no %q in the log within %v", s, d)
		}
	}
}

// TestSIGHUPReloads runs the proxy with a configuration file whose static
// backend never answers, changes the timeout in the file and sends SIGHUP:
// a client connected before gets its next timeout after the new one. A bad
// file then keeps the running configuration, and a listen address changed
// needs a restart.
func TestSIGHUPReloads(t *testing.T) {
	stalled, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	go acceptAndIgnore(stalled)

	conf := func(timeout string) string {
		return "listen: 127.0.0.1:0\nloops: 2\ntimeout: " + timeout + "\nstall-timeout: -1s\nretries: 0\n" +
			"backends:\n  - {id: 1, policy: 7, addr: \"" + stalled.Addr().String() + "\"}\n" +
			"  - {id: 2, policy: 9, addr: \"" + stalled.Addr().String() + "\"}\n"
	}
	path := writeConfig(t, conf("30s"))
	cmd := exec.CommandContext(t.Context(), os.Args[0], "proxy", "-config", path)
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
	log := watchLog(logs)
	line := log.wait(t, "proxy listening", 10*time.Second)
	_, addr, _ := strings.Cut(line, "addr=")
	addr = strings.Fields(addr)[0]
	if line := log.wait(t, "effective configuration", 5*time.Second); !strings.Contains(line, "timeout=30s") {
		t.Errorf("effective configuration logged as %q; want timeout=30s in it", line)
	}

	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	c := client.New(nc, client.Options{})
	call := func(policy int64) (code string, took time.Duration) {
		t.Helper()
		began := time.Now()
		c.Send(42, policy, "x")
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
		var m codec.Message
		if err := c.Recv(&m); err != nil {
			t.Fatalf("recv: %v", err)
		}
		return string([]byte(m.Code)), time.Since(began)
	}
	if code, _ := call(8); code != codec.CodeNoBackend {
		t.Fatalf("policy 8: %q; want no_backend", code)
	}

	if err := os.WriteFile(path, []byte(conf("300ms")), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGHUP)
	if line := log.wait(t, "configuration reloaded", 10*time.Second); !strings.Contains(line, "timeout=300ms") {
		t.Errorf("reload logged as %q; want timeout=300ms in it", line)
	}
	if code, took := call(7); code != codec.CodeTimeout || took < 300*time.Millisecond || took > 5*time.Second {
		t.Errorf("after the reload: %q after %v; want timeout after about 300ms", code, took)
	}

	// A bad file: the running configuration stays, the connection serves.
	// (Policy 9: policy 7's link closes a timeout after its first timeout.)
	if err := os.WriteFile(path, []byte(conf("300ms")+"timout: 1s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGHUP)
	if line := log.wait(t, "configuration not reloaded", 10*time.Second); !strings.Contains(line, `unknown key \"timout\"`) {
		t.Errorf("bad reload logged as %q; want the unknown key in it", line)
	}
	if code, took := call(9); code != codec.CodeTimeout || took < 300*time.Millisecond || took > 5*time.Second {
		t.Errorf("after the bad reload: %q after %v; want timeout after about 300ms", code, took)
	}

	// A new listen address needs a restart; the rest applies.
	if err := os.WriteFile(path, []byte(strings.Replace(conf("200ms"), "127.0.0.1:0", "127.0.0.1:1", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGHUP)
	if line := log.wait(t, "needs a restart", 10*time.Second); !strings.Contains(line, "setting=listen") {
		t.Errorf("restart logged as %q; want setting=listen", line)
	}
	log.wait(t, "configuration reloaded", 10*time.Second)
	if code, _ := call(8); code != codec.CodeNoBackend {
		t.Errorf("policy 8 after the reloads: %q; want no_backend on the same connection", code)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("proxy after SIGTERM: %v; want exit status 0", err)
	}
}

// acceptAndIgnore accepts connections and reads them, never answering.
func acceptAndIgnore(ln net.Listener) {
	for {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		go io.Copy(io.Discard, nc)
	}
}

// The proxy's Go soft memory limit is twice -max-memory, unless
// GOMEMLIMIT sets one.
func TestSetMemoryLimit(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	t.Setenv("GOMEMLIMIT", "")
	os.Unsetenv("GOMEMLIMIT")
	setMemoryLimit(64<<20, slog.New(slog.DiscardHandler))
	if got := debug.SetMemoryLimit(-1); got != 128<<20 {
		t.Fatalf("limit %d; want %d", got, 128<<20)
	}
	t.Setenv("GOMEMLIMIT", "1GiB")
	setMemoryLimit(32<<20, slog.New(slog.DiscardHandler))
	if got := debug.SetMemoryLimit(-1); got != 128<<20 {
		t.Fatalf("limit %d with GOMEMLIMIT set; want it left at %d", got, 128<<20)
	}
}
