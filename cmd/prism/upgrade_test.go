package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prism-proxy/prism/client"
	"github.com/prism-proxy/prism/codec"
)

// TestUpgradeUnderLoad upgrades the proxy (SIGUSR2, the same binary) three
// times in a row under pipelined load, with two backends, and requires
// every request to be answered by a backend's reply: no error answer, no
// reset, no request sent and left without an answer. A client sent away
// by the old process gets a FIN after the answers of every request it
// read; the requests it wrote after those were never read (the old
// process exits 0 only when every request it read was answered), and the
// client sends them again on a new connection, which only the new process
// accepts.
func TestUpgradeUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "prism")
	if out, err := exec.Command(goBin, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	migrateReq(t)

	addr := freeAddr(t)
	pidfile := filepath.Join(dir, "prism.pid")
	// A file, not a pipe: the processes of the upgrades inherit it, and
	// Wait would wait for a pipe's last writer.
	logs := &procLog{path: filepath.Join(dir, "proxy.log")}
	lf, err := os.Create(logs.path)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	// With an admin port: the new process of an upgrade opens it beside
	// the old one (it failed to, and every upgrade with -admin failed).
	proxy := exec.Command(bin, "proxy", "-listen", addr, "-admin", freeAddr(t), "-loops", "2", "-pidfile", pidfile, "-drain", "10s")
	proxy.Stderr = lf
	if err := proxy.Start(); err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	t.Cleanup(func() {
		// Every proxy process of the test, the old ones included when the
		// test failed before they exited.
		for pid := range seen {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		proxy.Process.Kill()
		proxy.Wait()
		if t.Failed() {
			t.Logf("proxy logs:\n%s", logs)
		}
	})
	pid := waitPid(t, pidfile, 0, logs)
	seen[pid] = true
	var backends []*exec.Cmd
	beLogs := &procLog{path: filepath.Join(dir, "backends.log")}
	bf, err := os.Create(beLogs.path)
	if err != nil {
		t.Fatal(err)
	}
	defer bf.Close()
	for id := 1; id <= 2; id++ {
		be := exec.Command(bin, "backend", "-proxy", addr, "-id", strconv.Itoa(id), "-policy", "7")
		be.Stderr = bf
		if err := be.Start(); err != nil {
			t.Fatal(err)
		}
		backends = append(backends, be)
		t.Cleanup(func() { be.Process.Kill(); be.Wait() })
	}
	waitFor(t, 10*time.Second, "two backends registered", func() bool {
		return strings.Count(logs.String(), "backend registered") >= 2
	})

	ld := newLoad(addr, 8, 8)
	go ld.run()
	waitFor(t, 10*time.Second, "load started", func() bool { return ld.answered.Load() > 500 })

	const upgrades = 3
	for i := 1; i <= upgrades; i++ {
		before := ld.answered.Load()
		if err := syscall.Kill(pid, syscall.SIGUSR2); err != nil {
			t.Fatal(err)
		}
		next := waitPid(t, pidfile, pid, logs)
		seen[next] = true
		waitFor(t, 15*time.Second, "the old process handed over", func() bool {
			return strings.Count(logs.String(), "upgrade: handed over") >= i
		})
		waitFor(t, 10*time.Second, "the old process exited", func() bool {
			return syscall.Kill(pid, 0) != nil || zombie(pid)
		})
		// Load goes on through the new process, for a while.
		since := time.Now()
		waitFor(t, 10*time.Second, "load through the new process", func() bool {
			return ld.answered.Load() > before+2000 && time.Since(since) > 300*time.Millisecond
		})
		t.Logf("upgrade %d: pid %d -> %d, %d answered so far", i, pid, next, ld.answered.Load())
		pid = next
	}
	ld.stop()
	if err := proxy.Wait(); err != nil {
		t.Errorf("first proxy process: %v; want exit status 0", err)
	}

	t.Logf("requests: %d sent, %d answered, %d sent again after a FIN (never read by the old process), "+
		"%d connections; longest pause between answers %v",
		ld.issued.Load(), ld.answered.Load(), ld.resent.Load(), ld.dials.Load(), ld.longestPause())
	for _, e := range ld.errs() {
		t.Error(e)
	}
	if got, want := ld.answered.Load(), ld.issued.Load(); got != want {
		t.Errorf("answered %d requests; want all %d sent", got, want)
	}
	// Each request reached a backend once: one sent again after a FIN had
	// not been forwarded by the old process.
	served := int64(0)
	for _, be := range backends {
		be.Process.Signal(syscall.SIGTERM)
		be.Wait()
	}
	for _, line := range strings.Split(beLogs.String(), "\n") {
		if _, n, ok := strings.Cut(line, "served="); ok {
			k, _ := strconv.ParseInt(strings.Fields(n)[0], 10, 64)
			served += k
		}
	}
	if want := ld.answered.Load(); served != want {
		t.Errorf("backends served %d requests; want %d (each answered request once)", served, want)
	}
	if p := ld.longestPause(); p > time.Second {
		t.Errorf("longest pause between answers %v; want under 1s", p)
	}
	for _, bad := range []string{"level=ERROR", "drain expired", "inherited registration expired", "clients still connected"} {
		if strings.Contains(logs.String(), bad) {
			t.Errorf("proxy logged %q", bad)
		}
	}
	if n := strings.Count(logs.String(), "upgrade: handed over"); n != upgrades {
		t.Errorf("%d handovers logged; want %d", n, upgrades)
	}
}

// migrateReq sets net.ipv4.tcp_migrate_req to 1 for the test when it can:
// connections waiting in a closing listener's queue then move to the new
// process instead of being reset.
func migrateReq(t *testing.T) {
	const path = "/proc/sys/net/ipv4/tcp_migrate_req"
	old, err := os.ReadFile(path)
	if err != nil {
		t.Logf("no tcp_migrate_req (%v): connections racing the handover may be reset", err)
		return
	}
	if strings.TrimSpace(string(old)) == "1" {
		return
	}
	if err := os.WriteFile(path, []byte("1"), 0o644); err != nil {
		t.Logf("cannot set tcp_migrate_req (%v): connections racing the handover may be reset", err)
		return
	}
	t.Cleanup(func() { os.WriteFile(path, old, 0o644) })
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// waitPid waits until the pid file names a process other than not.
func waitPid(t *testing.T, path string, not int, logs *procLog) int {
	t.Helper()
	var pid int
	waitFor(t, 15*time.Second, "a new pid in the pid file", func() bool {
		b, err := os.ReadFile(path)
		if err != nil {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil && pid != not
	})
	return pid
}

// zombie reports whether pid has exited but was not reaped (a process
// started by an upgrade is the child of the proxy that started it).
func zombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] == 'Z'
}

func waitFor(t *testing.T, within time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// procLog is the proxies' standard error (they share it), in a file.
type procLog struct{ path string }

func (l *procLog) String() string {
	b, _ := os.ReadFile(l.path)
	return string(b)
}

// load keeps conns connections busy, each with depth requests in flight,
// reconnecting when the proxy sends it away.
type load struct {
	addr         string
	conns, depth int

	next     atomic.Int64 // request ids (srcid), from 1
	issued   atomic.Int64 // distinct requests sent at least once
	answered atomic.Int64
	resent   atomic.Int64
	dials    atomic.Int64
	stopping atomic.Bool
	wg       sync.WaitGroup

	mu      sync.Mutex
	errList []string
	last    time.Time // of the last answer
	pause   time.Duration
}

func newLoad(addr string, conns, depth int) *load {
	return &load{addr: addr, conns: conns, depth: depth}
}

func (ld *load) run() {
	for i := 0; i < ld.conns; i++ {
		ld.wg.Add(1)
		go ld.worker()
	}
}

// stop stops sending new requests and waits for the answers of those sent.
func (ld *load) stop() {
	ld.stopping.Store(true)
	ld.wg.Wait()
}

func (ld *load) fail(format string, a ...any) {
	ld.mu.Lock()
	defer ld.mu.Unlock()
	if len(ld.errList) < 20 {
		ld.errList = append(ld.errList, fmt.Sprintf(format, a...))
	}
}

func (ld *load) errs() []string {
	ld.mu.Lock()
	defer ld.mu.Unlock()
	return ld.errList
}

func (ld *load) answer() {
	now := time.Now()
	ld.answered.Add(1)
	ld.mu.Lock()
	if !ld.last.IsZero() && now.Sub(ld.last) > ld.pause {
		ld.pause = now.Sub(ld.last)
	}
	ld.last = now
	ld.mu.Unlock()
}

func (ld *load) longestPause() time.Duration {
	ld.mu.Lock()
	defer ld.mu.Unlock()
	return ld.pause
}

// worker runs one connection after another. The requests in flight on a
// connection that ends with a clean EOF (the proxy's FIN after the answers
// of all it read) are sent again on the next one; any other end with
// requests in flight, a wrong answer, or an error answer is a failure.
func (ld *load) worker() {
	defer ld.wg.Done()
	var again []int64 // to send again, oldest first
	for {
		if ld.stopping.Load() && len(again) == 0 {
			return
		}
		ld.dials.Add(1)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := client.DialOptions(ctx, ld.addr, client.Options{Framing: codec.Binary})
		cancel()
		if err != nil {
			ld.fail("dial: %v", err)
			return
		}
		var ok bool
		again, ok = ld.session(c, again)
		c.Close()
		if !ok {
			return
		}
	}
}

// session sends again first, then new requests while not stopping, and
// returns the requests to send again on a new connection; ok is false
// after a failure.
func (ld *load) session(c *client.Conn, again []int64) (left []int64, ok bool) {
	var (
		mu       sync.Mutex
		inflight []int64 // written, unanswered, in order
		slots    = make(chan struct{}, ld.depth)
		done     = make(chan struct{}) // the reader ended
		readErr  error
	)
	for range ld.depth {
		slots <- struct{}{}
	}
	c.NetConn().SetReadDeadline(time.Now().Add(30 * time.Second))
	go func() { // the reader
		defer close(done)
		var m codec.Message
		for {
			if err := c.Recv(&m); err != nil {
				readErr = err
				return
			}
			mu.Lock()
			if len(inflight) == 0 {
				mu.Unlock()
				readErr = fmt.Errorf("an answer nobody asked for: %+v", m)
				return
			}
			id := inflight[0]
			inflight = inflight[1:]
			mu.Unlock()
			if m.Type != codec.TypeReply || m.DestID != id || m.Payload != "p"+strconv.FormatInt(id, 10) {
				readErr = fmt.Errorf("request %d: answer %+v; want its reply", id, m)
				return
			}
			ld.answer()
			slots <- struct{}{}
		}
	}()
	writeErr := error(nil)
write:
	for {
		select {
		case <-slots:
		case <-done:
			break write
		}
		var id int64
		switch {
		case len(again) > 0:
			id, again = again[0], again[1:]
		case ld.stopping.Load():
			// Let the reader finish: all of ours answered.
			for {
				mu.Lock()
				n := len(inflight)
				mu.Unlock()
				if n == 0 {
					c.NetConn().SetReadDeadline(time.Now()) // ends the reader
					<-done
					return nil, true
				}
				select {
				case <-done:
					break write
				case <-time.After(time.Millisecond):
				}
			}
		default:
			id = ld.next.Add(1)
			ld.issued.Add(1)
		}
		mu.Lock()
		inflight = append(inflight, id)
		mu.Unlock()
		if err := c.Send(id, 7, "p"+strconv.FormatInt(id, 10)); err == nil {
			err = c.Flush()
			writeErr = err
		} else {
			writeErr = err
		}
		if writeErr != nil {
			break
		}
	}
	if writeErr != nil {
		c.NetConn().SetReadDeadline(time.Now().Add(5 * time.Second))
	}
	<-done
	mu.Lock()
	defer mu.Unlock()
	if !errors.Is(readErr, io.EOF) {
		if len(inflight) > 0 || !ld.stopping.Load() {
			ld.fail("connection ended with %d requests unanswered: read: %v; write: %v", len(inflight), readErr, writeErr)
			return nil, false
		}
	}
	// A clean EOF: the proxy answered all it read. Send the rest again,
	// before what was waiting.
	ld.resent.Add(int64(len(inflight)))
	return append(inflight, again...), true
}
