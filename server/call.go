package server

import (
	"github.com/prism-proxy/prism/codec"
	"github.com/prism-proxy/prism/pool"
)

// call is one client request from its arrival to its answer. Two things
// hold it: its client's queue, where answers wait for their turn (replies
// on a connection go out in request order), and, while its request is on
// the way or being served, a link's fifo (replies on a data connection
// come back in request order). Each holds it independently, so a call can
// be answered (by its timeout) while a link still waits for its reply, and
// can leave its client (the client closed) while still on a link. It is
// recycled once neither holds it.
//
// Its answer moves through three states:
//
//	newCall ─► queued ── answer ──► answered ── deliver ──► done ──► free
//	           │  ▲     (a reply,    (the answer waits     (out of its     (released once
//	           │  │      an error,    in c.reply for        client's        no link holds
//	           │  │      a timeout)   its turn)             queue)          it either)
//	           │  └── retry: its link failed: unlink, send on another
//	           └───── its client left: done at once (abandoned)
//
// An answer at the head of the queue is delivered as it comes. A reply
// for a call no longer queued (timed out, abandoned) is late: dropped.
// Orthogonal to the state, onLink says whether a link holds the call:
// send puts a queued call on a link, unlink takes it off (its reply
// matched, or the link failed).
//
// Transitions, one method each, and every place that moves a call uses
// them:
//
//	newCall        → queued, held by its client
//	link.send      queued: onto a link (onLink), attempts counted
//	link.unlink    off the link (reply matched, or link failed)
//	loop.answer    queued → answered; false when it was answered already
//	                 (a late reply, a timeout that fired first)
//	loop.leaveClient  answered or queued → done: out of its client's queue
//	loop.release   done and off every link → free, recycled (only from
//	                 the two above, when the other holder is gone too)
//
// A call is owned by its loop; nothing else touches it.
type call struct {
	client   *inConn
	srcid    int64
	policy   int64
	deadline int64        // loop clock
	arrival  int64        // loop clock: the read that brought it
	sent     int64        // loop clock: handed to its link (or the link opened), for the backend's latency
	attempts int          // backends tried
	ps       *policyStats // its policy's counters: the loop's "none" until decoded
	last     *pool.Backend

	body  []byte // its request's JSON, a view into chunk, while on a link
	chunk *chunk
	end   int64 // the link's byte count at the end of this request

	reply []byte // the framed answer while it waits for its turn (answered)

	// Memory accounting (limits): bytes counted on the client (its request
	// and its held reply) and on the loop (its held reply).
	size, heldReply int

	state  callState
	onLink bool // in a link's fifo
}

type callState uint8

const (
	callFree     callState = iota // recycled: in the loop's free list
	callQueued                    // in its client's queue, unanswered
	callAnswered                  // in its client's queue, answer in reply, waiting its turn
	callDone                      // out of its client's queue: delivered, or the client left
)

// held reports whether a client or a link still refers to c.
func (c *call) held() bool { return c.state != callDone || c.onLink }

// unanswered reports whether c still waits for an answer.
func (c *call) unanswered() bool { return c.state == callQueued }

// newCall starts a call for a request of client read now, queued at the
// tail of the client's queue.
func (l *loop) newCall(client *inConn, srcid, policy int64) *call {
	var c *call
	if n := len(l.free); n > 0 {
		c = l.free[n-1]
		l.free = l.free[:n-1]
	} else {
		c = new(call)
	}
	c.client, c.srcid, c.policy = client, srcid, policy
	c.deadline = l.stamp + l.lim.timeout
	c.arrival = l.stamp
	c.ps = l.metrics.pols.none
	c.state = callQueued
	client.queue.Push(c)
	if !client.active {
		client.active = true
		l.active = append(l.active, client)
	}
	l.metrics.n[mUnanswered]++
	return c
}

// answer marks c answered: queued → answered. It reports false when c was
// answered already (its timeout fired, or its client left), and the
// answer must be dropped.
func (l *loop) answer(c *call) bool {
	if c.state != callQueued {
		return false
	}
	c.state = callAnswered
	l.metrics.n[mUnanswered]--
	return true
}

// leaveClient takes c, popped from its client's queue, to done: delivered,
// or its client left (then a queued call counts as abandoned).
func (l *loop) leaveClient(c *call) {
	if c.state == callQueued {
		l.metrics.n[mUnanswered]--
		l.metrics.n[mAbandoned]++
	}
	c.client.held -= c.size
	l.held -= int64(c.heldReply)
	c.state = callDone
	l.release(c)
}

// release recycles c once neither its client nor a link holds it.
func (l *loop) release(c *call) {
	if c.held() {
		return
	}
	// A recycled call keeps its buffers, unless a big message grew them.
	*c = call{reply: keep(c.reply)}
	l.free = append(l.free, c)
}

// answerError answers c with an error message, in its turn.
func (l *loop) answerError(c *call, code, text string) {
	if !l.answer(c) {
		return
	}
	l.metrics.countError(c.ps, code)
	c.ps.lat.observe(l.clock() - c.arrival) // errors are rare: a clock read of their own
	cl := c.client
	c.reply = codec.BeginFrame(c.reply[:0], cl.split.Framing)
	c.reply = codec.AppendError(c.reply, c.srcid, code, text)
	c.reply = codec.EndFrame(c.reply, cl.split.Framing, 0)
	cl.deliver()
}

// answerReply answers c, just answered, with its backend's reply,
// converted to the client's framing: at the head of the queue it goes to
// the output at once, otherwise into the call's buffer to wait its turn.
func (ic *inConn) answerReply(c *call, body []byte) {
	if front, _ := ic.queue.Front(); front != c {
		c.reply = codec.AppendFramed(c.reply[:0], ic.split.Framing, body)
		c.heldReply = len(c.reply)
		c.size += c.heldReply
		ic.held += c.heldReply
		ic.loop.held += int64(c.heldReply)
		return
	}
	ic.queue.Pop()
	ic.out = codec.AppendFramed(ic.output(), ic.split.Framing, body)
	ic.loop.leaveClient(c)
	ic.deliver()
	if ic.queue.Len() > 0 {
		ic.loop.moreDue = true
	}
}

// deliver moves the answered calls at the head of the queue to the output,
// in request order.
func (ic *inConn) deliver() {
	for {
		c, ok := ic.queue.Front()
		if !ok || c.state != callAnswered {
			break
		}
		ic.queue.Pop()
		ic.out = append(ic.output(), c.reply...)
		ic.loop.leaveClient(c)
	}
}

// send puts c, queued, on lk with its request body: framed into the
// link's chunks, to be written at the next flush.
func (lk *link) send(c *call, body []byte) {
	c.attempts++
	c.sent = lk.loop.stamp
	c.last = lk.backend
	c.onLink = true
	lk.fifo.Push(c)
	lk.push(c, body)
}

// unlink takes c, just popped from lk's fifo, off the link. It returns the
// view of c's request, valid until lk's chunks are trimmed or dropped, for
// a retry. c is recycled here if its client is done with it: decide what
// to do with c (answer it) before unlinking it.
func (lk *link) unlink(c *call) []byte {
	body := c.body
	c.onLink = false
	c.chunk.live--
	c.chunk, c.body = nil, nil
	lk.loop.release(c)
	return body
}
