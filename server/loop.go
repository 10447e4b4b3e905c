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
	p  *proxy
	el gnet.EventLoop

	links map[*pool.Backend]*link

	dec     codec.Decoder
	msg     codec.Message
	replies codec.ReplyChecker

	free []*call  // recycled calls
	bufs [][]byte // recycled answer batches

	// Clients with calls in their queue. Every call has the same timeout,
	// so a queue in arrival order is in deadline order, and its front is
	// its oldest unanswered call: the tick looks at the fronts only. (A
	// loop-wide list of calls would touch two other calls, cold at 16k in
	// flight, on every answer.)
	active []*inConn

	paused []*inConn // clients not parsing, looked at by the tick

	conns    map[*inConn]struct{} // every open inbound connection: for the drain's end
	lastScan int64                // of the idle and slow connection scan (conns.go)

	batch            // write batching (batch.go)
	chunks []*chunk  // recycled link chunks
	lim    limits    // the proxy's thresholds, copied for locality
	set    *settings // the snapshot lim is from: the tick looks for a newer one

	held int64 // bytes of link chunks and of replies waiting their turn (limits.loopBytes)

	retryTokens int64 // the retry budget (limits), in hundredths of a retry
	lastTick    int64
	samplesFrom int64 // latency samples of calls sent before it are not the backend's (sampleOK)
	linkRoom    int64 // descriptors its links may still take (fdbudget.go)
	evicting    int   // links evicted whose close gnet has not run yet

	tickTask gnet.Runnable

	rng pool.Rand // for the p2c balancer: the loop's own, no lock

	epoch time.Time // the proxy's: the loops' clocks agree (the registry's ejections use them)
	stamp int64     // the clock when the current read began: its requests' arrival

	metrics loopMetrics
}

func newLoop(p *proxy, el gnet.EventLoop) *loop {
	l := &loop{p: p, el: el, links: map[*pool.Backend]*link{}, conns: map[*inConn]struct{}{}, linkRoom: p.linkShare,
		epoch: p.epoch, rng: pool.NewRand(uint64(time.Now().UnixNano()) ^ uint64(len(p.list))<<32)}
	l.set = p.live.Load()
	l.lim = l.set.lim
	l.retryTokens = l.lim.retryStart
	l.tickTask = gnet.RunnableFunc(func(context.Context) error {
		l.tick()
		return nil
	})
	if w, err := startWake(l); err == nil {
		l.wake = w
	} else {
		p.cfg.Logger.Warn("no doorbell for the event loop: backend writes are not batched across clients", "err", err)
	}
	l.metrics.pols.init()
	p.metrics.addLoop(&l.metrics)
	return l
}

// clock returns the loop's monotonic time in nanoseconds. It reads one
// clock where time.Now reads two; requests parsed from one read share one
// reading (stamp).
func (l *loop) clock() int64 { return int64(time.Since(l.epoch)) }

// reload makes s the loop's settings (Proxy.Reload): calls already started
// keep their deadline, connections take the new frame limit from their next
// message on.
func (l *loop) reload(s *settings) {
	l.set, l.lim = s, s.lim
	for ic := range l.conns {
		ic.split.Max = l.lim.maxFrame
	}
	for _, lk := range l.links {
		lk.split.Max = l.lim.maxFrame
	}
}

// tick expires overdue calls, resumes clients paused on a full outbound
// buffer, and closes idle links to backends that left rotation.
func (l *loop) tick() {
	if s := l.p.live.Load(); s != l.set {
		l.reload(s)
	}
	now := l.clock()
	if l.lastTick > 0 && now-l.lastTick > l.lim.tickLate {
		l.samplesFrom = now // the loop stalled: calls in flight waited for it
	}
	if dt := now - l.lastTick; l.lastTick > 0 && dt > 0 {
		l.retryTokens -= l.retryTokens * min(dt, int64(retryWindow)) / int64(retryWindow) // deposits fade
		l.earnRetries(l.lim.retryFloor * dt / int64(time.Second))
	}
	l.lastTick = now
	for i := 0; i < len(l.active); {
		ic := l.active[i]
		for {
			c, ok := ic.queue.Front()
			if !ok || !c.unanswered() || c.deadline > now {
				break
			}
			if c.onLink {
				l.backendFailed(c.last, "request timed out")
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
		if !ic.readable() || !ic.paused {
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
		lk.checkStall(now)
		if lk.unsentBytes > 0 && lk.gc != nil {
			l.markLinkDirty(lk)
		}
		if len(lk.waiters) > 0 && (lk.relieved() || lk.stalled(now)) {
			lk.unblock() // a stalled link answers "overloaded" at once instead
		}
		switch {
		case lk.gc != nil && b.Removed() && lk.fifo.Len() == 0:
			lk.gc.Close()
		case lk.state == linkDown && lk.usable(func() int64 { return now }):
			delete(l.links, b) // a later request dials afresh
		}
	}
	if now-l.lastScan >= l.lim.connScan {
		l.lastScan = now
		l.scanConns(now)
	}
	l.flush()
	l.metrics.n[mHeld] = l.held
	l.metrics.publish(now)
}

// abort ends the loop's share of an expired drain: every call still
// unanswered is answered shutting_down (in its turn, through answerError),
// the answers are written, and then every inbound connection (clients and
// leases) is closed, gnet writing what the socket had not taken yet before
// it closes the fd. It returns how many calls it answered. Calls on links
// stay there until the engine stops: a reply that comes first is late.
func (l *loop) abort() (answered int) {
	for _, ic := range l.active {
		// The front of a queue is its oldest unanswered call (answers
		// behind it wait in their calls): answering it delivers it and
		// every answered call after it, up to the next unanswered one.
		for {
			c, ok := ic.queue.Front()
			if !ok || !c.unanswered() {
				break
			}
			l.answerError(c, codec.CodeShuttingDown, "the proxy shut down before the reply came")
			answered++
		}
	}
	l.flush()
	for ic := range l.conns {
		ic.closing = true
		if ic.gc != nil {
			ic.gc.Close()
		}
	}
	l.metrics.publish(l.clock())
	return answered
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

// earnRetries adds n hundredths of a retry to the loop's budget.
func (l *loop) earnRetries(n int64) { l.retryTokens += n }

// spendRetry reports whether a failed call may be retried: within
// Config.Retries and within the loop's retry budget.
func (l *loop) spendRetry(c *call) bool {
	if c.attempts > l.lim.retries {
		return false
	}
	if l.lim.retryEarn < 0 { // no budget
		return true
	}
	if l.retryTokens < retryCost {
		l.metrics.n[mRetriesRefused]++
		return false
	}
	l.retryTokens -= retryCost
	return true
}
