package server

import (
	"sync/atomic"

	"github.com/panjf2000/gnet/v2"
)

// Write batching. Callbacks do not write: they mark the links and clients
// that have something to send (dirty) and end with flushSoon, which either
// flushes at once or leaves it to the doorbell, rung once the loop has
// handled every event of the current poll. Then the requests of all the
// clients readable together go to a backend in one write, and the replies a
// client gets from several backends in one write.
//
// Ringing costs two system calls, so it pays only when polls bring several
// events: the loop counts the events of each deferred poll and stops
// deferring while they come one at a time, trying again every probeEvery
// busy polls.
type batch struct {
	wake *wake // nil when it could not be set up: no deferring

	dirtyLinks   []*link
	dirtyClients []*inConn
	resume       []*inConn // paused clients that may read again
	flushing     bool

	moreDue    bool // a client answered in this link event awaits more replies
	pollEvents int  // events deferred to the doorbell in this poll
	lastPoll   int  // pollEvents of the last deferred poll
	probes     uint // busy polls not deferred
}

// probeEvery is how often a busy poll defers while polls bring one event.
const probeEvery = 8

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
		l.metrics.n[mHeld] = l.held
		l.metrics.publish(now)
	}
}

// flushSoon ends a callback. When busy (other requests are in flight, so
// more events are likely in the same poll) it leaves the writes to the
// doorbell; a lone request is written at once.
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
	return l.probes%probeEvery == 0
}

// doorbell runs when the doorbell rings: the poll is over.
func (l *loop) doorbell() {
	l.lastPoll, l.pollEvents = l.pollEvents, 0
	l.flush()
}

// wake is a loop's doorbell: a connected pair of Unix sockets whose reading
// end belongs to the loop. Ringing it from the loop itself makes the loop run
// wake.traffic after it has handled every event of the current poll. gnet's
// Execute does the same but allocates a closure per call; the doorbell
// allocates nothing. Platform code: wake_linux.go, wake_other.go.
type wake struct {
	loop  *loop
	fd    int  // writing end, non-blocking
	ready bool // the reading end joined the loop
	rung  bool // a byte is on its way

	closed atomic.Bool
}

var doorbell = []byte{1}

func (w *wake) traffic(c gnet.Conn) {
	c.Discard(-1)
	w.rung = false
	w.loop.doorbell()
}
