package server

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"github.com/prism-proxy/prism/internal/gnetio"
)

// Half-close. gnet has no half-closed state: a client's FIN (it shut down
// its write side, as `nc -N` does after its input) closes the whole
// connection. But gnet calls OnClose before it closes the socket, so the
// proxy duplicates the descriptor there and keeps the socket for writing:
// the answers still due go out on the duplicate, from a goroutine over the
// Go netpoller, and the socket closes once the last one is written. The
// calls stay queued on the client as before, so they keep their order
// and their timeouts.
//
// Only a read EOF takes this path (a reset, or a close by the proxy, do
// not), and only when gnet holds no unwritten answers of the connection:
// gnet writes those after OnClose without waiting for the socket, and
// answers written by the tail could overtake them.
//
// Requests the client sent before its FIN but the proxy had not parsed yet
// (it was over its in-flight or bytes cap) are still in gnet's buffer
// during OnClose: finalParse keeps a copy, parsed as the client's caps
// allow, as if it were still paused. An incomplete message at the end is
// dropped: the client ended the stream inside it.

// tail writes the answers due to a half-closed client.
type tail struct {
	nc     net.Conn
	unsent atomic.Int64 // bytes pushed and not written yet
	dead   atomic.Bool  // run returned: the client is gone, or the proxy stopped
	mu     sync.Mutex
	bufs   [][]byte
	done   bool          // no more answers: close after the last
	kick   chan struct{} // one pending wake-up
}

// startTail takes over gc's socket for writing, or returns nil.
func startTail(p *proxy, gc gnet.Conn, err error) *tail {
	if !errors.Is(err, io.EOF) || gc.OutboundBuffered() > 0 {
		return nil
	}
	fd, derr := unix.Dup(gc.Fd())
	if derr != nil {
		return nil
	}
	f := os.NewFile(uintptr(fd), "prism-tail")
	nc, derr := net.FileConn(f) // dups again, into the Go netpoller
	f.Close()
	if derr != nil {
		return nil
	}
	// A client that does not read gets no more than the request timeout
	// (twice, with the answers' own wait) to take them.
	nc.SetWriteDeadline(time.Now().Add(2*p.live.Load().cfg.Timeout + time.Second))
	t := &tail{nc: nc, kick: make(chan struct{}, 1)}
	p.tails.Add(1)
	go t.run(p, p.done)
	return t
}

// push hands b to the tail, which owns it from now on.
func (t *tail) push(b []byte) {
	t.unsent.Add(int64(len(b)))
	t.mu.Lock()
	t.bufs = append(t.bufs, b)
	t.mu.Unlock()
	t.wakeUp()
}

// finish closes the socket after what was pushed.
func (t *tail) finish() {
	t.mu.Lock()
	t.done = true
	t.mu.Unlock()
	t.wakeUp()
}

func (t *tail) wakeUp() {
	select {
	case t.kick <- struct{}{}:
	default:
	}
}

// run writes what is pushed until finish, or until the proxy stopped
// (stopped: its loops will push nothing more).
func (t *tail) run(p *proxy, stopped <-chan struct{}) {
	defer p.tails.Done()
	defer p.open.Add(-1) // the connection's slot (Config.MaxConns), kept until now
	defer t.nc.Close()
	defer t.dead.Store(true) // the loop drops what it still has for it (gone)
	for {
		var last bool
		select {
		case <-t.kick:
		case <-stopped:
			last = true
		}
		t.mu.Lock()
		bufs, done := t.bufs, t.done || last
		t.bufs = nil
		t.mu.Unlock()
		for _, b := range bufs {
			if _, err := t.nc.Write(b); err != nil {
				return // the client is gone, or did not read in time
			}
			t.unsent.Add(-int64(len(b)))
		}
		if done {
			return
		}
	}
}

// finalParse keeps what a half-closed client sent before its FIN and the
// proxy had not parsed yet (gc's buffer, during OnClose: gnet frees it
// after), and parses it as a paused client's: as far as the client's caps
// allow now, the rest as its answers go out (flush, and the tick, resume
// it). The copy counts toward the loop's memory share until parsed; it is
// no larger than the client's buffer cap (traffic sheds past it).
func (ic *inConn) finalParse(gc gnet.Conn) {
	n := gc.InboundBuffered()
	if n == 0 || ic.closing || !ic.awaySince.IsZero() {
		return
	}
	b, _ := gc.Peek(-1)
	ic.rest = &gnetio.Bytes{B: append([]byte(nil), b...)}
	ic.paused, ic.blocked = true, nil // blocked: a link's waiter no more; its requests go anyway
	ic.countInbound()
	ic.loop.paused = append(ic.loop.paused, ic) // the tick resumes it (a duplicate entry does no harm)
	ic.resumeParsing()
}

// pending is how many bytes of answers the tail has not written yet; 0 for
// no tail. Safe from any goroutine.
func (t *tail) pending() int {
	if t == nil {
		return 0
	}
	return int(t.unsent.Load())
}

// gone reports whether the tail writes no more: its client is gone (a
// write failed: it reset, or did not read in time) or the proxy stopped.
// Safe from any goroutine.
func (t *tail) gone() bool { return t != nil && t.dead.Load() }
