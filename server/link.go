package server

import (
	"context"
	"net"
	"strconv"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/prism-proxy/prism/codec"
	"github.com/prism-proxy/prism/internal/fifo"
	"github.com/prism-proxy/prism/internal/gnetio"
	"github.com/prism-proxy/prism/pool"
)

// link is one loop's persistent data connection to one backend. Requests of
// every client of the loop are pipelined on it; the backend answers in order,
// so replies match the fifo's head. Owned by its loop.
type link struct {
	loop    *loop
	backend *pool.Backend
	gc      gnet.Conn // nil while dialing and once closed

	dialing   bool
	downUntil int64 // loop clock: a refused dial keeps the backend out until then

	fifo fifo.FIFO[*call] // calls sent or to send, oldest first

	// The requests of the fifo's calls, in order (chunks.go).
	chunks      fifo.FIFO[*chunk]
	sentChunk   int   // index in chunks of the first one not all written
	sentOff     int   // bytes of it written
	unsentBytes int   // bytes in chunks not yet written
	appended    int64 // bytes ever pushed
	sent        int64 // bytes ever written (handed to gnet)
	dirty       bool
	waiters     []*inConn // clients not read until the link drains
	split       codec.Splitter
}

// dispatch sends c to a backend of its policy, round robin, passing over
// backends this loop cannot use now (refused, under pressure) and the one
// that just failed c. When every usable backend is under pressure, c goes to
// the round-robin choice anyway and its client stops being read until that
// link drains: backpressure reaches the client instead of an error.
func (l *loop) dispatch(c *call, body []byte) {
	pol := l.p.registry.Policy(c.policy)
	if pol == nil {
		l.answerError(c, codec.CodeNoBackend, "no backend serves policy "+itoa(c.policy))
		return
	}
	var now int64 // read when needed
	clock := func() int64 {
		if now == 0 {
			now = l.clock()
		}
		return now
	}
	var pressed *pool.Backend // the first backend passed over for pressure
	b := pol.NextExcept(func(b *pool.Backend) bool {
		if b == c.last && len(pol.Backends) > 1 {
			return true
		}
		lk := l.links[b]
		switch {
		case lk == nil:
			return false
		case lk.gc == nil && !lk.dialing && clock() < lk.downUntil:
			return true
		case lk.pressured():
			if pressed == nil {
				pressed = b
			}
			return true
		}
		return false
	})
	if b == nil {
		b = pressed
	}
	if b == nil || b == c.last {
		l.answerError(c, codec.CodeBackendUnavailable, "no backend of policy "+itoa(c.policy)+" could be reached")
		return
	}
	lk := l.links[b]
	if lk == nil || (lk.gc == nil && !lk.dialing) {
		lk = l.dial(b)
	}
	if b == pressed {
		if lk.stalled(clock()) || lk.fifo.Len() >= 2*l.p.cfg.MaxBackendInflight {
			l.answerError(c, codec.CodeOverloaded, "every backend of policy "+itoa(c.policy)+" is at its in-flight limit")
			return
		}
		lk.block(c.client)
	}
	c.attempts++
	c.last = b
	lk.fifo.Push(c)
	c.inLink = true
	lk.push(c, body)
	if lk.gc != nil {
		l.markLinkDirty(lk)
	}
}

// pressured reports whether the link holds as many requests as it should:
// MaxBackendInflight in flight, or half of MaxConnBuffer not yet taken by
// the socket.
func (lk *link) pressured() bool {
	cfg := &lk.loop.p.cfg
	return lk.fifo.Len() >= cfg.MaxBackendInflight || lk.backlog() > cfg.MaxConnBuffer/2
}

// backlog is how many bytes of requests the socket has not taken yet.
func (lk *link) backlog() int {
	n := lk.unsentBytes
	if lk.gc != nil {
		n += lk.gc.OutboundBuffered()
	}
	return n
}

// relieved reports whether a pressured link has drained enough to let its
// waiting clients go: well below the limits, so that they do not all find
// it pressured again after one request each.
func (lk *link) relieved() bool {
	cfg := &lk.loop.p.cfg
	return lk.fifo.Len() < cfg.MaxBackendInflight/2 && lk.backlog() < cfg.MaxConnBuffer/4
}

// stalled reports whether the oldest request on the link is past its
// deadline: the backend does not keep up at all, and waiting for it would
// leave requests unanswered past the timeout.
func (lk *link) stalled(now int64) bool {
	c, ok := lk.fifo.Front()
	return ok && c.deadline <= now
}

// block stops reading ic until the link is no longer pressured.
func (lk *link) block(ic *inConn) {
	if ic.blocked == nil && ic.gc != nil {
		ic.blocked = lk
		lk.waiters = append(lk.waiters, ic)
	}
}

// unblock lets the clients that wait for the link read again.
func (lk *link) unblock() {
	for _, ic := range lk.waiters {
		if ic.blocked == lk {
			ic.blocked = nil
			if ic.paused {
				lk.loop.resume = append(lk.loop.resume, ic)
			}
		}
	}
	clear(lk.waiters)
	lk.waiters = lk.waiters[:0]
}

// dial starts this loop's data connection to b. The dial runs on its own
// goroutine; the connection joins this loop (OnOpen runs here) or the
// failure comes back as a task.
func (l *loop) dial(b *pool.Backend) *link {
	lk := l.links[b]
	if lk == nil {
		lk = &link{loop: l, backend: b}
		lk.split.Framing = b.Framing
		lk.split.Max = l.p.cfg.MaxFrame
		l.links[b] = lk
	}
	lk.dialing = true
	l.metrics.n[mDials]++
	go dialBackend(lk, b.Addr, l.p.cfg.DialTimeout)
	return lk
}

func dialBackend(lk *link, addr string, timeout time.Duration) {
	el := lk.loop.el
	fail := func(err error) {
		_ = el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			lk.dialFailed(err)
			return nil
		}))
	}
	d := net.Dialer{Timeout: timeout}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		fail(err)
		return
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	res, err := el.Enroll(gnet.NewContext(context.Background(), lk), nc)
	if err != nil {
		nc.Close()
		fail(err)
		return
	}
	if r := <-res; r.Err != nil {
		fail(r.Err)
	}
}

// opened runs in OnOpen: the queued calls can go.
func (lk *link) opened(gc gnet.Conn) {
	lk.gc = gc
	lk.dialing = false
	lk.downUntil = 0
	if lk.unsentBytes > 0 {
		lk.loop.markLinkDirty(lk)
	}
}

func (lk *link) dialFailed(err error) {
	l := lk.loop
	lk.dialing = false
	lk.downUntil = l.clock() + int64(l.p.cfg.DownFor)
	l.metrics.n[mDialErrors]++
	l.p.cfg.Logger.Warn("backend unreachable", "id", lk.backend.ID, "addr", lk.backend.Addr, "err", err)
	lk.unblock()
	lk.failAll()
	l.flush()
}

// flush writes the chunks' unwritten requests, a chunk's run per write, for
// as long as the socket takes them. Once it does not (gnet holds a rest),
// the rest stays in the chunks: handing it to gnet would only copy it once
// more into its buffer. The link's next reply (the backend has read) or the
// loop's tick writes it.
func (lk *link) flush() {
	for lk.gc != nil && lk.unsentBytes > 0 && lk.gc.OutboundBuffered() == 0 {
		ch := lk.chunks.At(lk.sentChunk)
		b := ch.buf[lk.sentOff:]
		if len(b) == 0 { // this chunk is written: the next one has the rest
			lk.sentChunk++
			lk.sentOff = 0
			continue
		}
		lk.sentOff += len(b)
		lk.unsentBytes -= len(b)
		lk.sent += int64(len(b))
		lk.gc.Write(b) // on error OnClose runs inside and retries the calls
	}
}

// traffic matches replies to the fifo's head and hands them to their clients.
func (lk *link) traffic() {
	l := lk.loop
	f := gnetio.NewFrames(lk.gc, &lk.split)
	for {
		body, err := f.Next()
		if gnetio.Incomplete(err) {
			break
		}
		if front, ok := lk.fifo.Front(); err != nil || !ok || front.end > lk.sent {
			// A reply nobody asked for, or a stream that cannot be cut:
			// the calls in flight are retried elsewhere.
			l.p.cfg.Logger.Warn("backend broke the protocol: closing its data connection",
				"id", lk.backend.ID, "addr", lk.backend.Addr, "err", err)
			lk.gc.Discard(-1)
			lk.gc.Close()
			return
		}
		c, _ := lk.fifo.Pop()
		c.inLink = false
		lk.left(c)
		if !l.markAnswered(c) {
			l.metrics.n[mLate]++
			l.release(c)
		} else {
			l.metrics.n[mReplies]++
			c.client.answerReply(c, body)
		}
		f.Consume()
	}
	f.Done()
	if lk.gc != nil && lk.backend.Removed() && lk.fifo.Len() == 0 {
		lk.gc.Close()
	}
	if lk.unsentBytes > 0 && lk.gc != nil {
		l.markLinkDirty(lk) // the backend reads: the socket may take more
	}
	if len(lk.waiters) > 0 && lk.relieved() {
		lk.unblock()
	}
	// Waiting for the end of the poll pays only when a client that got a
	// reply here still expects others, which may come on another link in
	// the same poll; otherwise its write would only be later.
	more := l.moreDue
	l.moreDue = false
	l.flushSoon(more)
}

// answerReply delivers a backend's reply, converted to the client's framing:
// at the head of the queue to the output at once, later ones into the
// call's buffer to wait their turn.
func (ic *inConn) answerReply(c *call, body []byte) {
	if front, _ := ic.queue.Front(); front != c {
		c.reply = codec.AppendFramed(c.reply[:0], ic.split.Framing, body)
		c.hasReply = true
		return
	}
	ic.queue.Pop()
	c.inClient = false
	ic.out = codec.AppendFramed(ic.output(), ic.split.Framing, body)
	ic.loop.release(c)
	ic.deliver()
	if ic.queue.Len() > 0 {
		ic.loop.moreDue = true
	}
}

// closed runs in OnClose: calls that were not answered are retried on
// another backend or answered backend_unavailable.
func (lk *link) closed(gc gnet.Conn, err error) {
	l := lk.loop
	lk.gc = nil
	lk.dialing = false
	if l.links[lk.backend] == lk {
		delete(l.links, lk.backend)
	}
	if lk.fifo.Len() > 0 {
		l.p.cfg.Logger.Debug("data connection closed with requests in flight",
			"id", lk.backend.ID, "inflight", lk.fifo.Len(), "err", err)
	}
	lk.unblock()
	lk.failAll()
}

// failAll empties the fifo: answered calls are dropped, the others retried
// or answered backend_unavailable.
func (lk *link) failAll() {
	l := lk.loop
	for {
		c, ok := lk.fifo.Pop()
		if !ok {
			break
		}
		c.inLink = false
		body := c.body // the chunks stay until every call is through
		c.chunk.live--
		c.chunk, c.body = nil, nil
		if c.answered {
			l.release(c)
			continue
		}
		if c.attempts <= l.p.cfg.Retries {
			l.metrics.n[mRetries]++
			l.dispatch(c, body)
			continue
		}
		l.answerError(c, codec.CodeBackendUnavailable,
			"backend "+itoa(lk.backend.ID)+" failed before replying")
	}
	lk.dropChunks()
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
