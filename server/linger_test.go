package server

import (
	"context"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A client made "closing" (shed past shedCalls) that never reads its
// answers (4 MiB of them held in gnet's buffer): linger never gets to its
// FIN, and closes it lingerFor after it began (found by a cold review: it
// stayed open for good, with its slot and gnet's buffer).
func TestLingerClosesNonReader(t *testing.T) {
	if testing.Short() {
		t.Skip("short: lingerFor is 5 s")
	}
	const inflight = 8
	p := startProxy(t, Config{Loops: 1, MaxClientInflight: inflight, Timeout: 5 * time.Second, IdleTimeout: 500 * time.Millisecond})
	release := make(chan struct{})
	big := strings.Repeat("y", 900<<10)
	newFakeBackend(t, p, 1, 7, func(_ int, s string) (string, bool) { <-release; return big, true })
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return nil
	}}
	nc, err := d.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	go nc.Write(tinyFlood(inflight))
	conns := func() (n int, closing int, outbuf int, fin int) {
		r, _ := runOnLoops(context.Background(), p.p, func(l *loop) [4]int {
			var st [4]int
			for ic := range l.conns {
				if ic.backend != nil || ic.gc == nil {
					continue
				}
				st[0]++
				if ic.closing {
					st[1]++
				}
				st[2] += ic.gc.OutboundBuffered()
				if ic.finSent {
					st[3]++
				}
			}
			return st
		})
		return r[0][0], r[0][1], r[0][2], r[0][3]
	}
	waitFor(t, "closing", 5*time.Second, func() bool { _, c, _, _ := conns(); return c == 1 })
	close(release)
	waitFor(t, "the non-reading client closed", lingerFor+5*time.Second, func() bool { n, _, _, _ := conns(); return n == 0 })
}
