package server

import (
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prism-proxy/prism/codec"
)

// A client made "closing" (shed past shedCalls) that never reads its
// answers (7 MiB of them held in gnet's buffer): linger never gets to its
// FIN, and closes it when it read nothing for twice the timeout and a
// second (found by a cold review: it stayed open for good, with its slot
// and gnet's buffer).
func TestLingerClosesNonReader(t *testing.T) {
	if testing.Short() {
		t.Skip("short: 5 s")
	}
	const inflight = 8
	p := startProxy(t, Config{Loops: 1, MaxClientInflight: inflight, Timeout: 2 * time.Second, IdleTimeout: 500 * time.Millisecond})
	release := make(chan struct{})
	big := strings.Repeat("y", 900<<10)
	newFakeBackend(t, p, 1, 7, func(_ int, s string) (string, bool) { <-release; return big, true })
	nc := dialSmallWindow(t, p)
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

// A client whose stream breaks after valid requests, and that reads their
// large answers slowly, gets every one, then the error, then EOF: the
// proxy closes without a reset that would cut them (linger), and waits as
// long as the client reads (a hostile test found it cut 5 s after the
// answers were handed to gnet, losing the last of them).
func TestLingerSlowReaderGetsAll(t *testing.T) {
	if testing.Short() {
		t.Skip("short: 4 s")
	}
	const replies = 20
	p := startProxy(t, Config{Loops: 1, Timeout: time.Second})
	big := strings.Repeat("y", 100<<10)
	newFakeBackend(t, p, 1, 7, func(_ int, s string) (string, bool) { return big, true })
	nc := dialSmallWindow(t, p)
	out := append(requests(codec.Binary, replies), 0xff, 0xff, 0xff, 0xff) // then a length past -max-frame
	if _, err := nc.Write(out); err != nil {
		t.Fatal(err)
	}
	go func() { // and more, which the proxy can only drop: input unread at a close would mean a reset
		junk := make([]byte, 64<<10)
		for range 16 {
			if _, err := nc.Write(junk); err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	// 2 MiB of answers at 64 KiB every 100 ms: about 3 s. (On loopback the
	// sockets' buffers take most of it, so gnet's empties at once; the
	// case linger waits through, gnet still holding answers, needs
	// smaller buffers than a test can set on the proxy's side.)
	var got []byte
	buf := make([]byte, 64<<10)
	nc.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		n, err := io.ReadFull(nc, buf)
		got = append(got, buf[:n]...)
		if err != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := bytes.Count(got, []byte(`"type":2`)); n != replies || !bytes.Contains(got, []byte(codec.CodeTooLarge)) {
		t.Fatalf("%d replies of %d, error %v, in %d bytes", n, replies, bytes.Contains(got, []byte(codec.CodeTooLarge)), len(got))
	}
}

// dialSmallWindow connects to p with a 4 KiB receive buffer, so that what
// the client does not read stays with the proxy. Closed when the test ends.
func dialSmallWindow(t *testing.T, p *Proxy) net.Conn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return nil
	}}
	nc, err := d.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc
}
