package server

import (
	"context"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/prism-proxy/prism/codec"
	"github.com/prism-proxy/prism/pool"
)

// loop is the state of one event loop. Everything in it, and in the
// connections, links and calls it owns, is touched only by that loop's
// goroutine, except the atomics (read by Shutdown and the metrics).
type loop struct {
	p  *Proxy
	el gnet.EventLoop

	links map[*pool.Backend]*link

	dec codec.Decoder
	msg codec.Message

	free []*call  // recycled calls
	bufs [][]byte // recycled answer batches

	// Clients with calls in their queue. Every call has the same timeout,
	// so a queue in arrival order is in deadline order, and its front is
	// its oldest unanswered call: the tick looks at the fronts only. (A
	// loop-wide list of calls would touch two other calls, cold at 16k in
	// flight, on every answer.)
	active []*inConn

	dirtyLinks   []*link
	dirtyClients []*inConn
	resume       []*inConn
	paused       []*inConn
	flushing     bool

	wake    *wake // nil when it could not be set up: no deferring
	moreDue bool  // a client answered in this link event awaits more replies

	pollEvents int      // events deferred to the doorbell in this poll
	lastPoll   int      // pollEvents of the last deferred poll
	probes     uint     // busy polls not deferred
	chunks     []*chunk // recycled link chunks

	tickTask gnet.Runnable

	epoch time.Time // the loop's clock counts from here (monotonic)
	stamp int64     // the clock when the current read began: its requests' arrival

	metrics loopMetrics
}

func newLoop(p *Proxy, el gnet.EventLoop) *loop {
	l := &loop{p: p, el: el, links: map[*pool.Backend]*link{}, epoch: time.Now()}
	l.tickTask = gnet.RunnableFunc(func(context.Context) error {
		l.tick()
		return nil
	})
	if w, err := startWake(l); err == nil {
		l.wake = w
	} else {
		p.cfg.Logger.Warn("no doorbell for the event loop: backend writes are not batched across clients", "err", err)
	}
	p.metrics.addLoop(&l.metrics)
	return l
}

// call is one client request from arrival to answer.
type call struct {
	client   *inConn
	srcid    int64
	policy   int64
	deadline int64 // loop clock
	attempts int   // backends tried
	last     *pool.Backend

	body  []byte // the JSON, in chunk, while in a link's fifo
	chunk *chunk
	end   int64 // the link's byte count at the end of this request

	reply    []byte // the framed answer, when it must wait for its turn
	hasReply bool

	answered bool
	inClient bool // in client.queue
	inLink   bool // in a link's fifo

}

func (l *loop) newCall(client *inConn, srcid, policy int64) *call {
	var c *call
	if n := len(l.free); n > 0 {
		c = l.free[n-1]
		l.free = l.free[:n-1]
	} else {
		c = new(call)
	}
	c.client, c.srcid, c.policy = client, srcid, policy
	c.deadline = l.stamp + int64(l.p.cfg.Timeout)
	c.inClient = true
	if !client.active {
		client.active = true
		l.active = append(l.active, client)
	}
	l.metrics.n[mUnanswered]++
	return c
}

// clock returns the loop's monotonic time in nanoseconds. It reads one
// clock where time.Now reads two; requests parsed from one read share one
// reading (stamp).
func (l *loop) clock() int64 { return int64(time.Since(l.epoch)) }

// release recycles c once neither its client nor a link refers to it.
func (l *loop) release(c *call) {
	if c.inClient || c.inLink {
		return
	}
	// A recycled call keeps its buffers, unless a big message grew them.
	*c = call{reply: keep(c.reply)}
	l.free = append(l.free, c)
}

// markAnswered marks c answered. It reports false if c was answered
// already (its timeout fired, or its client left).
func (l *loop) markAnswered(c *call) bool {
	if c.answered {
		return false
	}
	c.answered = true
	l.metrics.n[mUnanswered]--
	return true
}

// answerError answers c with an error message, in its turn.
func (l *loop) answerError(c *call, code, text string) {
	if !l.markAnswered(c) {
		return
	}
	l.metrics.countError(code)
	cl := c.client
	c.reply = codec.BeginFrame(c.reply[:0], cl.split.Framing)
	c.reply = codec.AppendError(c.reply, c.srcid, code, text)
	c.reply = codec.EndFrame(c.reply, cl.split.Framing, 0)
	c.hasReply = true
	cl.deliver()
}

func (l *loop) markLinkDirty(lk *link) {
	if !lk.dirty {
		lk.dirty = true
		l.dirtyLinks = append(l.dirtyLinks, lk)
	}
}

func (l *loop) markClientDirty(ic *inConn) {
	if !ic.dirty {
		ic.dirty = true
		l.dirtyClients = append(l.dirtyClients, ic)
	}
}

// flush writes what the callbacks queued: requests to each link and answers
// to each client in one write per connection. Writing can close a
// connection, which can retry calls and dirty more links, so it runs until
// nothing is left.
func (l *loop) flush() {
	if l.flushing {
		return
	}
	l.flushing = true
	for len(l.dirtyLinks) > 0 || len(l.dirtyClients) > 0 || len(l.resume) > 0 {
		for i := 0; i < len(l.resume); i++ {
			l.resume[i].resumeParsing()
		}
		l.resume = l.resume[:0]
		for i := 0; i < len(l.dirtyLinks); i++ {
			lk := l.dirtyLinks[i]
			lk.dirty = false
			lk.flush()
		}
		l.dirtyLinks = l.dirtyLinks[:0]
		for i := 0; i < len(l.dirtyClients); i++ {
			ic := l.dirtyClients[i]
			ic.dirty = false
			ic.flush()
		}
		l.dirtyClients = l.dirtyClients[:0]
	}
	l.flushing = false
	if now := l.clock(); now-l.metrics.last >= publishEvery {
		l.metrics.publish(now)
	}
}

// flushSoon ends a callback. When busy (other requests are in flight, so
// more events are likely in the same poll) it leaves the writes to the
// doorbell, which rings once the loop has handled every event of the poll:
// the requests of all clients readable together go to a backend in one write,
// and the replies a client gets from several backends in one write. A lone
// request is written at once.
//
// Ringing costs two system calls, so it is worth it only when polls bring
// several events: the loop counts the events of each deferred poll and stops
// deferring while they come one at a time, trying again every eighth time.
func (l *loop) flushSoon(busy bool) {
	if l.wake != nil && l.wake.rung {
		l.pollEvents++ // the doorbell will write for this event too
		return
	}
	if busy && (l.lastPoll > 1 || l.probe()) && l.wake.ring() {
		l.pollEvents = 1
		return
	}
	l.flush()
}

func (l *loop) probe() bool {
	l.probes++
	return l.probes%8 == 0
}

// doorbell runs when the doorbell rings: the poll is over.
func (l *loop) doorbell() {
	l.lastPoll, l.pollEvents = l.pollEvents, 0
	l.flush()
}

// tick expires overdue calls, resumes clients paused on a full outbound
// buffer, and closes idle links to backends that left rotation.
func (l *loop) tick() {
	now := l.clock()
	for i := 0; i < len(l.active); {
		ic := l.active[i]
		for {
			c, ok := ic.queue.Front()
			if !ok || c.answered || c.deadline > now {
				break
			}
			l.answerError(c, codec.CodeTimeout, "no reply within the request timeout") // delivers it
		}
		if ic.queue.Len() == 0 {
			ic.active = false
			l.active[i] = l.active[len(l.active)-1]
			l.active[len(l.active)-1] = nil
			l.active = l.active[:len(l.active)-1]
			continue
		}
		i++
	}
	for i := 0; i < len(l.paused); {
		ic := l.paused[i]
		if ic.gc == nil || !ic.paused {
			l.paused[i] = l.paused[len(l.paused)-1]
			l.paused = l.paused[:len(l.paused)-1]
			continue
		}
		if ic.canParse() {
			l.resume = append(l.resume, ic)
		}
		i++
	}
	for b, lk := range l.links {
		if lk.unsentBytes > 0 && lk.gc != nil {
			l.markLinkDirty(lk)
		}
		if len(lk.waiters) > 0 && (lk.relieved() || lk.stalled(now)) {
			lk.unblock() // a stalled link answers "overloaded" at once instead
		}
		switch {
		case lk.gc != nil && b.Removed() && lk.fifo.Len() == 0:
			lk.gc.Close()
		case lk.gc == nil && !lk.dialing && now >= lk.downUntil:
			delete(l.links, b)
		}
	}
	l.flush()
	l.metrics.publish(now)
}

// Buffers on the request path live in the loop, not in a sync.Pool
// (bytebufferpool's included): the loop needs no synchronisation, a GC does
// not empty its free lists, and nothing is dropped for being bigger than
// usual, so the steady state allocates nothing. Calls keep their own request
// and answer buffers across reuse; the batches of answers written to clients
// come from bufs.

// maxKeep is the largest buffer kept for reuse.
const maxKeep = 256 << 10

func keep(b []byte) []byte {
	if cap(b) > maxKeep {
		return nil
	}
	return b[:0]
}

func (l *loop) getBuf() []byte {
	if n := len(l.bufs); n > 0 {
		b := l.bufs[n-1]
		l.bufs = l.bufs[:n-1]
		return b
	}
	return make([]byte, 0, 4096)
}

func (l *loop) putBuf(b []byte) {
	if b = keep(b); b != nil {
		l.bufs = append(l.bufs, b)
	}
}
