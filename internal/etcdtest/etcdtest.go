// Package etcdtest runs a real etcd server (the etcd binary, Debian's
// etcd-server package) for tests: one member on 127.0.0.1 ports picked at
// random, its data in a t.TempDir(). Tests that need it are skipped, with
// the reason, where the binary is absent. It does not mock etcd.
//
//	e := etcdtest.Start(t)
//	cfg.Endpoints = []string{e.Endpoint}
//	e.Kill()    // SIGKILL, as a crash
//	e.Restart() // the same data directory and ports
package etcdtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Etcd is one running etcd member.
type Etcd struct {
	Endpoint string // host:port of its client listener

	t    testing.TB
	bin  string
	dir  string
	args []string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Binary returns the etcd binary's path, or "" when there is none.
func Binary() string {
	if p := os.Getenv("PRISM_ETCD"); p != "" {
		return p
	}
	p, err := exec.LookPath("etcd")
	if err != nil {
		return ""
	}
	return p
}

// Start runs an etcd member until the test ends, or skips the test when
// the binary is absent. Its watch progress notifications come every
// 500ms.
func Start(t testing.TB) *Etcd {
	t.Helper()
	bin := Binary()
	if bin == "" {
		t.Skip("etcd binary not found (install Debian's etcd-server package, or set PRISM_ETCD): skipping the fleet registry test")
	}
	dir := t.TempDir()
	client, peer := freePort(t), freePort(t)
	cu := "http://127.0.0.1:" + client
	pu := "http://127.0.0.1:" + peer
	e := &Etcd{
		Endpoint: "127.0.0.1:" + client,
		t:        t, bin: bin, dir: dir,
		args: []string{
			"--name", "test", "--data-dir", filepath.Join(dir, "data"),
			"--listen-client-urls", cu, "--advertise-client-urls", cu,
			"--listen-peer-urls", pu, "--initial-advertise-peer-urls", pu,
			"--initial-cluster", "test=" + pu,
			"--experimental-watch-progress-notify-interval", "500ms",
			"--log-level", "warn",
		},
	}
	e.run()
	t.Cleanup(e.Kill)
	return e
}

func freePort(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// run starts the process and waits until it answers.
func (e *Etcd) run() {
	e.t.Helper()
	logf, err := os.OpenFile(filepath.Join(e.dir, "etcd.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		e.t.Fatal(err)
	}
	cmd := exec.Command(e.bin, e.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		e.t.Fatalf("etcd: %v", err)
	}
	done := make(chan struct{})
	go waitEtcd(cmd, logf, done)
	e.mu.Lock()
	e.cmd, e.done = cmd, done
	e.mu.Unlock()
	cli := e.Client()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cli.Get(ctx, "health")
		cancel()
		if err == nil {
			return
		}
		select {
		case <-done:
			log, _ := os.ReadFile(filepath.Join(e.dir, "etcd.log"))
			e.t.Fatalf("etcd exited at start: %s", log)
		default:
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("etcd did not answer within 15s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func waitEtcd(cmd *exec.Cmd, logf *os.File, done chan struct{}) {
	cmd.Wait()
	logf.Close()
	close(done)
}

// Kill stops the member with SIGKILL, as a crash, and waits for it to exit.
func (e *Etcd) Kill() {
	e.mu.Lock()
	cmd, done := e.cmd, e.done
	e.cmd = nil
	e.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	<-done
}

// Restart starts the member again on its data directory and ports.
func (e *Etcd) Restart() {
	e.t.Helper()
	e.Kill()
	e.run()
}

// Client returns a client of the member, closed when the test ends.
func (e *Etcd) Client() *clientv3.Client {
	e.t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: []string{e.Endpoint}, DialTimeout: 2 * time.Second, Logger: zap.NewNop(),
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { cli.Close() })
	return cli
}

// Compact compacts the member's history up to rev (physically: the
// revisions before it are gone).
func (e *Etcd) Compact(rev int64) error {
	cli := e.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cli.Compact(ctx, rev, clientv3.WithCompactPhysical()); err != nil {
		return fmt.Errorf("etcdtest: compact %d: %w", rev, err)
	}
	return nil
}
