package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prism-proxy/prism/client"
	"github.com/prism-proxy/prism/codec"
)

// TestConnectionFloodUnderLowFileLimit runs the real binary under an
// open-files limit of 256 and opens far more connections than that: gnet's
// acceptor must never meet EMFILE (which stops its engine and the
// process), the excess must be refused and counted, and once the flood is
// gone a fresh client must be served.
func TestConnectionFloodUnderLowFileLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build the binary")
	}
	bin := filepath.Join(t.TempDir(), "prism")
	if out, err := exec.Command(goBin, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	const limit = 256
	args := []string{"proxy", "-listen", "127.0.0.1:0", "-admin", "127.0.0.1:0", "-loops", "2", "-idle-timeout", "0"}
	var cmd *exec.Cmd
	if prl, err := exec.LookPath("prlimit"); err == nil {
		cmd = exec.Command(prl, append([]string{"--nofile=" + strconv.Itoa(limit) + ":" + strconv.Itoa(limit), bin}, args...)...)
	} else {
		cmd = exec.Command("bash", "-c", "ulimit -n "+strconv.Itoa(limit)+" && exec \"$0\" \"$@\"", bin)
		cmd.Args = append(cmd.Args, args...)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{}) // closed once the proxy exited, with exitErr set
	var exitErr error
	var logMu sync.Mutex
	var logText strings.Builder
	logs := func() string {
		logMu.Lock()
		defer logMu.Unlock()
		return logText.String()
	}
	addrs := make(chan string, 2)
	go func() {
		sc := bufio.NewScanner(stderr)
		re := regexp.MustCompile(`msg="(proxy|admin) listening" addr=(\S+)`)
		for sc.Scan() {
			logMu.Lock()
			logText.WriteString(sc.Text() + "\n")
			logMu.Unlock()
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addrs <- m[1] + " " + m[2]
			}
		}
		io.Copy(io.Discard, stderr)
		exitErr = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	var proxyAddr, adminAddr string
	for proxyAddr == "" || adminAddr == "" {
		select {
		case a := <-addrs:
			kind, addr, _ := strings.Cut(a, " ")
			if kind == "proxy" {
				proxyAddr = addr
			} else {
				adminAddr = addr
			}
		case <-exited:
			t.Fatalf("proxy exited at start: %v\n%s", exitErr, logs())
		case <-time.After(10 * time.Second):
			t.Fatal("proxy did not start")
		}
	}
	be := exec.Command(bin, "backend", "-proxy", proxyAddr, "-id", "1", "-policy", "7")
	if err := be.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { be.Process.Kill(); be.Wait() })

	served := func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		c, err := client.DialOptions(ctx, proxyAddr, client.Options{Framing: codec.Binary})
		if err != nil {
			return false
		}
		defer c.Close()
		c.NetConn().SetDeadline(time.Now().Add(3 * time.Second))
		var m codec.Message
		return c.Send(42, 7, "hi") == nil && c.Flush() == nil && c.Recv(&m) == nil && m.Type == codec.TypeReply
	}
	deadline := time.Now().Add(10 * time.Second)
	for !served() {
		if time.Now().After(deadline) {
			t.Fatal("backend never served")
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Admin connections past the limit, held open through the flood: the
	// admin endpoint takes at most server.AdminMaxConns of them at once
	// (the others wait in its listen queue), or they would take the
	// descriptors the loops accept with.
	var adminConns []net.Conn
	for range limit + 44 {
		nc, err := net.DialTimeout("tcp", adminAddr, 3*time.Second)
		if err != nil {
			break
		}
		adminConns = append(adminConns, nc)
	}
	defer func() {
		for _, nc := range adminConns {
			nc.Close()
		}
	}()
	if !served() {
		t.Fatalf("no reply with %d admin connections open\n%s", len(adminConns), logs())
	}

	// The flood: 4x the limit, from several goroutines at once.
	const flood = 4 * limit
	var (
		mu       sync.Mutex
		conns    []net.Conn
		closedBy atomic.Int64 // seen closed by the proxy
		wg       sync.WaitGroup
	)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < flood; i += 8 {
				nc, err := net.DialTimeout("tcp", proxyAddr, 3*time.Second)
				if err != nil {
					continue
				}
				mu.Lock()
				conns = append(conns, nc)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, nc := range conns {
		nc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := nc.Read(make([]byte, 1)); err != nil {
			if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
				closedBy.Add(1)
			}
		}
	}
	select {
	case <-exited:
		t.Fatalf("proxy exited during the flood: %v\n%s", exitErr, logs())
	default:
	}
	for _, nc := range adminConns { // the metric below needs an admin connection
		nc.Close()
	}
	adminConns = nil
	refused := metric(t, adminAddr, "prism_connections_refused_total")
	maxConns := regexp.MustCompile(`max_conns=(\d+)`).FindStringSubmatch(logs())
	t.Logf("flood: %d connections opened, %d closed by the proxy, %d refused (metric), max_conns %v",
		len(conns), closedBy.Load(), refused, maxConns)
	if refused == 0 || closedBy.Load() == 0 {
		t.Fatalf("no connection refused out of %d under a limit of %d", len(conns), limit)
	}
	for _, nc := range conns {
		nc.Close()
	}
	deadline = time.Now().Add(10 * time.Second)
	for !served() {
		if time.Now().After(deadline) {
			t.Fatalf("no reply after the flood\n%s", logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case <-exited:
		t.Fatalf("proxy exited: %v\n%s", exitErr, logs())
	default:
	}
	lines := strings.Count(logs(), "connections refused")
	if lines > 10 {
		t.Fatalf("%d refusal log lines: not rate-limited", lines)
	}
}

// metric reads one counter from the admin endpoint.
func metric(t *testing.T, admin, name string) int64 {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return int64(f)
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
