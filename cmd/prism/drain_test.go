package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prism-proxy/prism/client"
	"github.com/prism-proxy/prism/codec"
)

// proxyProc is `prism proxy` running in a child process.
type proxyProc struct {
	cmd  *exec.Cmd
	addr string

	mu   sync.Mutex
	logs []string
}

// startProxyProc runs `prism proxy` on 127.0.0.1:0 with args added and
// waits until it listens.
func startProxyProc(t *testing.T, args ...string) *proxyProc {
	t.Helper()
	args = append([]string{"proxy", "-listen", "127.0.0.1:0", "-loops", "2"}, args...)
	cmd := exec.CommandContext(t.Context(), os.Args[0], args...)
	cmd.Env = append(os.Environ(), "PRISM_TEST_MAIN=1")
	cmd.WaitDelay = 5 * time.Second
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pp := &proxyProc{cmd: cmd}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("proxy log:\n%s", strings.Join(pp.lines(), "\n"))
		}
	})
	addr := make(chan string, 1)
	go pp.scan(stderr, addr)
	select {
	case pp.addr = <-addr:
	case <-time.After(10 * time.Second):
		t.Fatal("the proxy logged no listening address")
	}
	return pp
}

func (pp *proxyProc) scan(r io.Reader, addr chan<- string) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		pp.mu.Lock()
		pp.logs = append(pp.logs, line)
		pp.mu.Unlock()
		if !strings.Contains(line, "proxy listening") {
			continue
		}
		var rec struct{ Addr string }
		if json.Unmarshal([]byte(line), &rec) == nil { // -log-format json
			addr <- rec.Addr
		} else if _, a, ok := strings.Cut(line, "addr="); ok {
			addr <- strings.Fields(a)[0]
		}
	}
}

func (pp *proxyProc) lines() []string {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	return append([]string(nil), pp.logs...)
}

// waitLog polls the proxy's log for a line containing s.
func (pp *proxyProc) waitLog(t *testing.T, s string) string {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		for _, l := range pp.lines() {
			if strings.Contains(l, s) {
				return l
			}
		}
	}
	t.Fatalf("the proxy never logged %q", s)
	return ""
}

// wait waits for the proxy to exit and returns its status.
func (pp *proxyProc) wait(t *testing.T, within time.Duration) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- pp.cmd.Wait() }()
	select {
	case err := <-done:
		var exit *exec.ExitError
		switch {
		case err == nil:
			return 0
		case errors.As(err, &exit):
			return exit.ExitCode()
		}
		t.Fatal(err)
	case <-time.After(within):
		t.Fatalf("the proxy did not exit within %v", within)
	}
	return -1
}

// heldBackend registers with a proxy and reads requests without answering
// them until release is closed; then it answers them all, and the rest at
// once.
type heldBackend struct {
	release chan struct{}
	mu      sync.Mutex
	got     int
}

func startHeldBackend(t *testing.T, proxy string, id, policy int64) *heldBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hb := &heldBackend{release: make(chan struct{})}
	go hb.accept(ln, id)
	lease, err := net.Dial("tcp", proxy)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close(); lease.Close() })
	c := client.New(lease, client.Options{})
	c.SendRaw(codec.AppendSetup(nil, id, policy, ln.Addr().(*net.TCPAddr).Port, ""))
	c.Flush()
	lease.SetDeadline(time.Now().Add(5 * time.Second))
	var m codec.Message
	if err := c.Recv(&m); err != nil || m.Type != codec.TypeAck {
		t.Fatalf("setup: %+v %v", m, err)
	}
	lease.SetDeadline(time.Time{})
	return hb
}

func (hb *heldBackend) accept(ln net.Listener, id int64) {
	for {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		go hb.serve(nc, id)
	}
}

func (hb *heldBackend) serve(nc net.Conn, id int64) {
	defer nc.Close()
	replies := make(chan []byte, 1024)
	go hb.answer(nc, replies)
	defer close(replies)
	c := client.New(nc, client.Options{})
	var m codec.Message
	for {
		if err := c.Recv(&m); err != nil {
			return
		}
		hb.mu.Lock()
		hb.got++
		hb.mu.Unlock()
		replies <- codec.AppendReply(nil, id, m.SrcID, string([]byte(m.Payload)))
	}
}

// answer writes the replies once released.
func (hb *heldBackend) answer(nc net.Conn, replies <-chan []byte) {
	<-hb.release
	c := client.New(nc, client.Options{})
	for r := range replies {
		c.SendRaw(r)
		if c.Flush() != nil {
			return
		}
	}
}

func (hb *heldBackend) received() int {
	hb.mu.Lock()
	defer hb.mu.Unlock()
	return hb.got
}

// sendHeld opens n clients on the proxy, each sending per requests of
// policy, and waits until the backend holds them all.
func sendHeld(t *testing.T, pp *proxyProc, hb *heldBackend, n, per int, policy int64) []*client.Conn {
	t.Helper()
	conns := make([]*client.Conn, n)
	for i := range conns {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := client.DialOptions(ctx, pp.addr, client.Options{})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		c.NetConn().SetDeadline(time.Now().Add(20 * time.Second))
		t.Cleanup(func() { c.Close() })
		for j := range per {
			c.Send(int64(100*i+j), policy, fmt.Sprint("req", j))
		}
		c.Flush()
		conns[i] = c
	}
	for deadline := time.Now().Add(10 * time.Second); hb.received() < n*per; time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("backend got %d of %d requests", hb.received(), n*per)
		}
	}
	return conns
}

// checkAnswers reads per answers on each client, checks them with ok, and
// then expects the connection to end.
func checkAnswers(t *testing.T, conns []*client.Conn, per int, ok func(m *codec.Message, srcid int64) bool) {
	t.Helper()
	for i, c := range conns {
		for j := range per {
			var m codec.Message
			if err := c.Recv(&m); err != nil {
				t.Fatalf("client %d request %d: %v; want an answer", i, j, err)
			}
			if !ok(&m, int64(100*i+j)) {
				t.Fatalf("client %d request %d answered %+v", i, j, m)
			}
		}
		if _, err := c.RecvRaw(); err == nil {
			t.Fatalf("client %d: more than its answers", i)
		}
	}
}

// SIGTERM with requests held by a stalled backend past -drain: every one is
// answered shutting_down before its connection closes, and the status is 1.
func TestProxyDrainExpires(t *testing.T) {
	pp := startProxyProc(t, "-drain", "300ms", "-timeout", "30s")
	hb := startHeldBackend(t, pp.addr, 1, 7)
	t.Cleanup(func() { close(hb.release) })
	conns := sendHeld(t, pp, hb, 3, 4, 7)
	if err := pp.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	checkAnswers(t, conns, 4, func(m *codec.Message, srcid int64) bool {
		return m.Type == codec.TypeError && m.Code == codec.CodeShuttingDown && m.DestID == srcid
	})
	if code := pp.wait(t, 10*time.Second); code != exitExpired {
		t.Errorf("exit status %d; want %d", code, exitExpired)
	}
	line := pp.waitLog(t, "drain expired")
	if !strings.Contains(line, "shutting_down=12") {
		t.Errorf("drain end logged %q; want shutting_down=12", line)
	}
}

// SIGTERM, and the backend answers within -drain: every reply arrives and
// the status is 0.
func TestProxyDrainCompletes(t *testing.T) {
	pp := startProxyProc(t, "-drain", "20s", "-timeout", "30s")
	hb := startHeldBackend(t, pp.addr, 1, 7)
	conns := sendHeld(t, pp, hb, 2, 3, 7)
	if err := pp.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	pp.waitLog(t, "drain started")
	close(hb.release)
	checkAnswers(t, conns, 3, func(m *codec.Message, srcid int64) bool {
		return m.Type == codec.TypeReply && m.DestID == srcid
	})
	if code := pp.wait(t, 10*time.Second); code != exitDrained {
		t.Errorf("exit status %d; want %d", code, exitDrained)
	}
	pp.waitLog(t, "drain complete")
}

// A second signal during the drain exits at once with 130.
func TestProxySecondSignal(t *testing.T) {
	pp := startProxyProc(t, "-drain", "60s", "-timeout", "60s")
	hb := startHeldBackend(t, pp.addr, 1, 7)
	t.Cleanup(func() { close(hb.release) })
	sendHeld(t, pp, hb, 1, 2, 7)
	if err := pp.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	pp.waitLog(t, "drain started")
	if err := pp.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := pp.wait(t, 5*time.Second); code != exitForced {
		t.Errorf("exit status %d; want %d", code, exitForced)
	}
}
