package server

import (
	"context"
	"errors"
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
	gc      gnet.Conn // set while up: nil while dialing and once closed
	linkState

	fifo fifo.FIFO[*call] // calls sent or to send, oldest first

	// The requests of the fifo's calls, in order (chunks.go).
	chunks      fifo.FIFO[*chunk]
	sentChunk   int   // index in chunks of the first one not all written
	sentOff     int   // bytes of it written
	unsentBytes int   // bytes in chunks not yet written
	bytes       int   // bytes of the chunks held: the link's share of memory
	appended    int64 // bytes ever pushed
	sent        int64 // bytes ever written (handed to gnet)
	dirty       bool
	waiters     []*inConn // clients not read until the link drains

	// Stall detection (health.go): replies matched, as the last tick saw
	// them and when they last moved; when the fifo last became non-empty.
	replies, tickReplies int64
	progress, busySince  int64
	fds                  int  // descriptors held in the budget (fdbudget.go)
	evicted              bool // closed for its descriptor (evictIdleLink)
	failed               bool // its failure was reported: closing it is not another
	split                codec.Splitter
}

// linkState is where a link's connection is.
//
//	down ── dial ──► dialing ── OnOpen ──► up ── OnClose ──► down
//	                    └── dial failed: down until now+DownFor
type linkState struct {
	state     linkPhase
	downUntil int64 // loop clock: a refused dial keeps the backend out until then
}

type linkPhase uint8

const (
	linkDown    linkPhase = iota // no connection: the next request dials
	linkDialing                  // requests wait in the chunks for OnOpen
	linkUp                       // connected: gc is set
)

// usable reports whether requests may go to the link now: it is up or
// dialing, or down past the wait after a refused dial. clock is read only
// when needed.
func (s *linkState) usable(clock func() int64) bool {
	return s.state != linkDown || clock() >= s.downUntil
}

// dispatch sends c to a backend of its policy, chosen by the policy's
// balancer (round robin, or p2c: balance.go), passing over backends this
// loop cannot use now (refused, under pressure) and the one that just
// failed c. When every usable backend is under pressure, c goes to the
// least loaded of them anyway and its client stops being read until that
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
	reg := l.p.registry
	var pressed *pool.Backend // the least loaded backend passed over for pressure
	pressedLen := 0
	out := 0           // backends passed over for being ejected
	panicking := false // every backend left is ejected: use them anyway
	noRoom := false    // a backend passed over for want of a descriptor for its link
	skip := func(b *pool.Backend) bool {
		if b == c.last { // alone in its policy it gets backend_unavailable below: no probe for it
			return true
		}
		if !panicking && reg.Out(b, clock) {
			out++
			return true
		}
		lk := l.links[b]
		if lk != nil && !lk.usable(clock) {
			return true // before the room: a link down for a while needs none now
		}
		if (lk == nil || lk.state == linkDown) && l.linkRoom < 2 {
			noRoom = true // no descriptor for its link (fdbudget.go): another may have one
			return true
		}
		if lk != nil {
			switch {
			case !lk.usable(clock):
				return true
			case lk.pressured():
				if !panicking && b.State() != pool.Healthy {
					out++ // its ejection is over, but only a probe readmits it
					return true
				}
				if pressed == nil || lk.fifo.Len() < pressedLen { // the least loaded: not a stalled one
					pressed, pressedLen = b, lk.fifo.Len()
				}
				return true
			}
		}
		if !panicking && !reg.TryProbe(b, clock) { // another request probes it
			out++
			return true
		}
		return false
	}
	p2c := l.lim.bal.of(c.policy) == balanceP2C
	next := func() *pool.Backend {
		if p2c {
			return pol.NextP2C(&l.rng, l.stamp, l.inflight, skip)
		}
		return pol.NextExcept(skip)
	}
	b := next()
	if b == nil && pressed == nil && out > 0 {
		panicking = true
		l.metrics.n[mPanics]++
		b = next()
	}
	if b == nil {
		b = pressed
	}
	if b == nil && noRoom && l.evictIdleLink() {
		noRoom, out = false, 0
		b = next() // with the room of a link nothing used
	}
	if b == nil && noRoom {
		l.p.linksRefused.Add(1)
		l.metrics.n[mLinksRefused]++
		l.answerError(c, codec.CodeOverloaded, "the proxy has no file descriptor left for a connection to a backend of policy "+itoa(c.policy))
		return
	}
	if b == nil || b == c.last {
		l.answerError(c, codec.CodeBackendUnavailable, "no backend of policy "+itoa(c.policy)+" could be reached")
		return
	}
	lk := l.links[b]
	if lk == nil || lk.state == linkDown {
		if lk = l.dial(b); lk == nil {
			l.answerError(c, codec.CodeOverloaded, "the proxy has no file descriptor left for a connection to a backend of policy "+itoa(c.policy))
			return
		}
	}
	if b == pressed {
		if lk.stalled(clock()) || lk.full() {
			l.answerError(c, codec.CodeOverloaded, "every backend of policy "+itoa(c.policy)+" is at its in-flight limit")
			return
		}
		lk.block(c.client)
	}
	if lk.fifo.Len() == 0 {
		lk.busySince = l.stamp
	}
	lk.send(c, body)
	if lk.state == linkUp {
		l.markLinkDirty(lk)
	}
}

// inflight is how many of this loop's requests b has not answered: p2c's
// load, the loop's own (no shared counter to write).
func (l *loop) inflight(b *pool.Backend) int {
	if lk := l.links[b]; lk != nil {
		return lk.fifo.Len()
	}
	return 0
}

// pressured reports whether the link holds as many requests as it should
// (limits.linkPressured, limits.backlogPressured).
func (lk *link) pressured() bool {
	lim := &lk.loop.lim
	return lk.fifo.Len() >= lim.linkPressured || lk.backlog() > lim.backlogPressured ||
		lk.bytes > lim.linkBytes
}

// full reports whether the link cannot take another request at all: its
// requests are answered "overloaded" (limits.linkRefuse, 2*linkBytes).
func (lk *link) full() bool {
	lim := &lk.loop.lim
	return lk.fifo.Len() >= lim.linkRefuse || lk.bytes > 2*lim.linkBytes
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
// waiting clients go (limits.linkRelieved, limits.backlogRelieved).
func (lk *link) relieved() bool {
	lim := &lk.loop.lim
	return lk.fifo.Len() < lim.linkRelieved && lk.backlog() < lim.backlogRelieved &&
		lk.bytes <= lim.linkBytes/2
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

// dial starts this loop's data connection to b, or returns nil when the
// descriptor budget has no room for it (fdbudget.go). The dial runs on its
// own goroutine; the connection joins this loop (OnOpen runs here) or the
// failure comes back as a task.
func (l *loop) dial(b *pool.Backend) *link {
	if l.linkRoom < 2 && !l.evictIdleLink() || l.linkRoom < 2 {
		l.p.linksRefused.Add(1)
		l.metrics.n[mLinksRefused]++
		return nil
	}
	l.linkRoom -= 2 // the dialed socket, and gnet's duplicate of it
	lk := l.links[b]
	if lk == nil {
		lk = &link{loop: l, backend: b}
		lk.split.Framing = b.Framing
		lk.split.Max = l.lim.maxFrame
		l.links[b] = lk
	}
	lk.state = linkDialing
	lk.fds = 2
	l.metrics.n[mDials]++
	go dialBackend(lk, b.Addr, l.lim.dialTimeout)
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
	lk.releaseFDs(1) // the dialed socket is closed: gnet holds its duplicate
	lk.linkState = linkState{state: linkUp}
	if n := lk.fifo.Len(); n > 0 { // their wait for the dial is not the backend's latency
		now := lk.loop.clock()
		for i := range n {
			lk.fifo.At(i).sent = now
		}
		lk.busySince = now // nor the backend's stall (health.go)
	}
	if lk.unsentBytes > 0 {
		lk.loop.markLinkDirty(lk)
	}
}

// releaseFDs gives back n of the descriptors the link holds in the budget.
func (lk *link) releaseFDs(n int) {
	n = min(n, lk.fds)
	lk.fds -= n
	lk.loop.linkRoom += int64(n)
}

func (lk *link) dialFailed(err error) {
	l := lk.loop
	lk.releaseFDs(lk.fds)
	lk.linkState = linkState{state: linkDown, downUntil: l.clock() + l.lim.downFor}
	l.metrics.n[mDialErrors]++
	l.p.cfg.Logger.Warn("backend unreachable: check that it listens on addr, reachable from the proxy",
		"id", lk.backend.ID, "policy", lk.backend.Policy, "addr", lk.backend.Addr, "err", err)
	l.backendFailed(lk.backend, "dial: "+err.Error())
	l.stamp = l.clock() // the retries' sending time
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
		lk.loop.metrics.n[mBackendOut] += int64(len(b))
		lk.gc.Write(b) // on error OnClose runs inside and retries the calls
	}
}

// traffic checks replies, matches them to the fifo's head and hands them
// to their clients. A backend that breaks the protocol (a stream that
// cannot be cut, a reply nobody asked for, or one that is not a reply to
// the request at the head) has its data connection closed at once
// (gnet.Close: OnClose runs before traffic returns), and the calls in
// flight on it are retried elsewhere as for any failed connection: a
// client never sees the bad bytes.
func (lk *link) traffic() gnet.Action {
	l := lk.loop
	// The replies of one read share one clock read: their answer time,
	// for the latency histograms.
	l.stamp = l.clock()
	f := gnetio.NewFrames(lk.gc, &lk.split)
	for {
		body, err := f.Next()
		if gnetio.Incomplete(err) {
			break
		}
		front, ok := lk.fifo.Front()
		switch {
		case err != nil:
		case !ok || front.end > lk.sent:
			err = errUnasked
		default:
			err = l.replies.Check(body, front.srcid)
		}
		if err != nil {
			l.metrics.n[mBadReplies]++
			l.p.cfg.Logger.Warn("backend broke the protocol: closing its data connection",
				"id", lk.backend.ID, "addr", lk.backend.Addr, "inflight", lk.fifo.Len(), "err", err)
			lk.gc.Discard(-1)
			lk.failed = true
			l.backendFailed(lk.backend, "protocol: "+err.Error())
			return gnet.Close
		}
		lk.replies++
		c, _ := lk.fifo.Pop()
		if l.lim.bal.p2c && l.sampleOK(c) {
			lk.backend.ObserveLatency(l.stamp-c.sent, l.stamp)
		}
		answered := l.answer(c) // before unlink, which recycles a call done with
		lk.unlink(c)
		lk.trimChunks()
		l.metrics.n[mBackendIn] += int64(f.Size())
		if answered { // c is held by its client: not recycled by unlink
			l.metrics.n[mReplies]++
			ps := c.ps
			ps.n[pReplies]++
			ps.lat.observe(l.stamp - c.arrival)
			ps.backend.observe(l.stamp - c.sent)
			c.client.answerReply(c, body)
		} else {
			l.metrics.n[mLate]++
		}
		f.Consume()
	}
	f.Done()
	if lk.replies != lk.tickReplies { // replies came: the backend is well
		l.healthChanged(lk.backend, l.p.registry.Succeeded(lk.backend, l.clock), "")
	}
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
	return gnet.None
}

var errUnasked = errors.New("server: a reply with no request in flight")

// closed runs in OnClose: calls that were not answered are retried on
// another backend or answered backend_unavailable.
func (lk *link) closed(gc gnet.Conn, err error) {
	l := lk.loop
	lk.releaseFDs(lk.fds)
	if lk.evicted {
		l.evicting--
	}
	lk.gc = nil
	lk.linkState = linkState{state: linkDown}
	if l.links[lk.backend] == lk {
		delete(l.links, lk.backend)
	}
	if lk.fifo.Len() > 0 {
		l.p.cfg.Logger.Debug("data connection closed with requests in flight",
			"id", lk.backend.ID, "inflight", lk.fifo.Len(), "err", err)
		if !lk.failed {
			l.backendFailed(lk.backend, "data connection closed with requests in flight")
		}
	}
	l.stamp = l.clock() // the retries' sending time
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
		retry := c.unanswered()
		body := lk.unlink(c) // valid: the chunks stay until every call is through
		if !retry {
			continue
		}
		if l.spendRetry(c) {
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
