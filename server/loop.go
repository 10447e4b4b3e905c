package server

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/bytebufferpool"

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

	free []*call // recycled calls

	// Calls not yet answered, oldest first: every call has the same timeout,
	// so arrival order is deadline order.
	timers callList

	wbuf []byte // scratch for write

	dirtyLinks   []*link
	dirtyClients []*inConn
	resume       []*inConn
	paused       []*inConn
	flushing     bool

	linksLater bool  // links are flushed when the doorbell rings
	wake       *wake // nil when it could not be set up: no deferring

	tickTask gnet.Runnable

	unanswered atomic.Int64
	metrics    loopMetrics
}

func newLoop(p *Proxy, el gnet.EventLoop) *loop {
	l := &loop{p: p, el: el, links: map[*pool.Backend]*link{}}
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
	deadline int64 // unix nanoseconds
	attempts int   // backends tried
	last     *pool.Backend

	req   *bytebufferpool.ByteBuffer // [4-byte length][JSON]['\n']
	reply *bytebufferpool.ByteBuffer // a framed answer kept until its turn
	hdr   [codec.HeaderLen]byte      // binary header for a text backend's reply

	answered bool
	inClient bool // in client.queue
	inLink   bool // in a link's fifo

	prev, next *call // timers
}

// reqFor returns the request framed for a backend of framing f.
func (c *call) reqFor(f codec.Framing) []byte {
	if f == codec.Text {
		return c.req.B[codec.HeaderLen:]
	}
	return c.req.B[:len(c.req.B)-1]
}

func (l *loop) newCall(client *inConn, body []byte, srcid, policy int64) *call {
	var c *call
	if n := len(l.free); n > 0 {
		c = l.free[n-1]
		l.free = l.free[:n-1]
	} else {
		c = new(call)
	}
	c.client, c.srcid, c.policy = client, srcid, policy
	c.deadline = time.Now().Add(l.p.cfg.Timeout).UnixNano()
	c.req = bytebufferpool.Get()
	c.req.B = codec.BeginFrame(c.req.B[:0], codec.Binary)
	c.req.B = append(c.req.B, body...)
	c.req.B = codec.EndFrame(c.req.B, codec.Binary, 0)
	c.req.B = append(c.req.B, '\n')
	c.inClient = true
	l.timers.push(c)
	l.unanswered.Add(1)
	return c
}

// release recycles c once neither its client nor a link refers to it.
func (l *loop) release(c *call) {
	if c.inClient || c.inLink {
		return
	}
	if c.req != nil {
		bytebufferpool.Put(c.req)
	}
	if c.reply != nil {
		bytebufferpool.Put(c.reply)
	}
	*c = call{}
	l.free = append(l.free, c)
}

// markAnswered takes c off the timers. It reports false if c was answered
// already (its timeout fired, or its client left).
func (l *loop) markAnswered(c *call) bool {
	if c.answered {
		return false
	}
	c.answered = true
	l.timers.remove(c)
	l.unanswered.Add(-1)
	return true
}

// answerError answers c with an error message, in its turn.
func (l *loop) answerError(c *call, code, text string) {
	if !l.markAnswered(c) {
		return
	}
	l.metrics.countError(code)
	cl := c.client
	c.reply = bytebufferpool.Get()
	c.reply.B = codec.BeginFrame(c.reply.B[:0], cl.split.Framing)
	c.reply.B = codec.AppendError(c.reply.B, c.srcid, code, text)
	c.reply.B = codec.EndFrame(c.reply.B, cl.split.Framing, 0)
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

// flush writes what the current callback queued: requests to links in one
// writev per link, answers to clients in one writev per client. Writing can
// close a connection, which can retry calls and dirty more links, so it runs
// until nothing is left. Every callback ends with it.
func (l *loop) flush() {
	if l.flushing {
		return
	}
	l.flushing = true
	for len(l.dirtyClients) > 0 || len(l.resume) > 0 || (len(l.dirtyLinks) > 0 && !l.linksLater) {
		for i := 0; i < len(l.resume); i++ {
			l.resume[i].resumeParsing()
		}
		l.resume = l.resume[:0]
		if !l.linksLater {
			for i := 0; i < len(l.dirtyLinks); i++ {
				lk := l.dirtyLinks[i]
				lk.dirty = false
				lk.flush()
			}
			l.dirtyLinks = l.dirtyLinks[:0]
		}
		for i := 0; i < len(l.dirtyClients); i++ {
			ic := l.dirtyClients[i]
			ic.dirty = false
			ic.flush()
		}
		l.dirtyClients = l.dirtyClients[:0]
	}
	if l.linksLater && len(l.dirtyLinks) > 0 && !l.wake.ring() {
		l.linksLater = false
		l.flushing = false
		l.flush()
		return
	}
	l.flushing = false
}

// deferLinks makes the next flush leave the data connections' writes to a
// task that runs after the loop has handled every event of this poll: the
// requests of all clients that were readable together go to a backend in one
// write. It pays when other clients have requests in flight (more events are
// likely in the same poll); a lone client is flushed at once.
func (l *loop) deferLinks(ic *inConn) {
	if l.unanswered.Load() > int64(ic.queue.Len()) {
		l.linksLater = true
	}
}

func (l *loop) runLinkTask() {
	l.linksLater = false
	l.flush()
}

// tick expires overdue calls, resumes clients paused on a full outbound
// buffer, and closes idle links to backends that left rotation.
func (l *loop) tick() {
	now := time.Now().UnixNano()
	for c := l.timers.head; c != nil && c.deadline <= now; c = l.timers.head {
		l.answerError(c, codec.CodeTimeout, "no reply within the request timeout")
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
		switch {
		case lk.gc != nil && b.Removed() && lk.fifo.Len() == 0:
			lk.gc.Close()
		case lk.gc == nil && !lk.dialing && now >= lk.downUntil:
			delete(l.links, b)
		}
	}
	l.flush()
}

// write sends pieces in one write(2). They are gathered in the loop's
// scratch buffer first: writev would be one syscall too, but x/sys/unix
// allocates its iovec array for more than a few pieces, and copying a batch
// of small messages costs less than that.
func (l *loop) write(gc gnet.Conn, pieces [][]byte) {
	buf := l.wbuf[:0]
	for _, p := range pieces {
		buf = append(buf, p...)
	}
	gc.Write(buf)
	if cap(buf) <= maxScratch {
		l.wbuf = buf[:0]
	}
}

// maxScratch is the largest write buffer a loop keeps between writes.
const maxScratch = 4 << 20

// callList is an intrusive doubly linked list of calls.
type callList struct {
	head, tail *call
}

func (q *callList) push(c *call) {
	c.prev, c.next = q.tail, nil
	if q.tail != nil {
		q.tail.next = c
	} else {
		q.head = c
	}
	q.tail = c
}

func (q *callList) remove(c *call) {
	if c.prev != nil {
		c.prev.next = c.next
	} else {
		q.head = c.next
	}
	if c.next != nil {
		c.next.prev = c.prev
	} else {
		q.tail = c.prev
	}
	c.prev, c.next = nil, nil
}
