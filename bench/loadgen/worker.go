package loadgen

import (
	"bytes"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prism-proxy/prism/client"
	"github.com/prism-proxy/prism/codec"
)

var (
	errUnsolicited = errors.New("loadgen: answer with no request in flight")
	errReaderGone  = errors.New("loadgen: reader ended")
)

// aLongTimeAgo is a deadline in the past: setting it interrupts blocked I/O.
var aLongTimeAgo = time.Unix(1, 0)

// replyPrefix starts every reply that codec.AppendReply writes, as Prism's
// backends do; any other answer is decoded in full.
var replyPrefix = []byte(`{"type":2,`)

// slot is one request in flight: when it should have been sent (the
// schedule's time in open loop) and when it was, in run nanoseconds.
type slot struct{ intended, sent int64 }

// worker drives one connection slot for the whole run, redialing it after
// failures. In closed loop one goroutine owns all of it. In open loop a
// writer goroutine owns the "writer" fields and a reader goroutine the
// "reader" fields; they share the ring through head and tail, and each
// session's reader is joined before the writer touches reader state.
type worker struct {
	r      *run
	id     int
	target string
	ring   []slot // requests in flight, indexed by sequence number & mask
	mask   uint64

	// Shared with the watchdog and between writer and reader.
	head       atomic.Uint64 // requests answered or given up on; stored by the reader
	tail       atomic.Uint64 // requests sent; stored by the writer
	gen        atomic.Uint64 // session number, for the watchdog
	timedOut   atomic.Bool   // the watchdog ended the session
	closing    atomic.Bool   // the session ends normally: a read error is expected
	writerDone atomic.Bool   // open loop: no more sends in this session
	waiting    atomic.Bool   // open loop: the writer waits for ring space
	space      chan struct{} // open loop: the reader's wake-up for a waiting writer

	mu sync.Mutex
	nc net.Conn // the session's connection, for the watchdog; nil between sessions

	// Published counts of the measurement.
	pubSent    atomic.Int64
	pubReplies atomic.Int64
	codes      [numCodes]atomic.Int64
	otherMu    sync.Mutex
	other      map[string]int64 // error codes outside codeNames, under otherMu

	_ [64]byte // keep the writer's and the reader's fields on separate cache lines

	// Writer.
	sent     int64         // measured requests sent
	tickets  int64         // claimed from run.issued and not used yet
	claim    int64         // how many to claim at once
	lastSend int64         // intended time of the last measured request
	pol      int           // index of the next request's policy
	seq      int64         // open loop: this connection's requests due so far
	tick     chan struct{} // open loop: the pacer's wake-up

	_ [64]byte

	// Reader.
	h, t    uint64 // closed loop: head and tail, published at each block
	now     int64  // run time of the last answer
	replies int64
	readErr error
	dec     codec.Decoder
	msg     codec.Message
	batch   batch
}

// loop runs the worker's sessions until the run is over. nc is the
// connection dialed before the start, or nil.
func (w *worker) loop(nc net.Conn) {
	r := w.r
	var backoff time.Duration
	for {
		if nc == nil {
			if w.over() || (backoff > 0 && !r.sleep(backoff)) {
				break
			}
			var err error
			if nc, err = r.dial(w.target); err != nil {
				if !r.stopping.Load() && r.now() >= r.measureAt {
					w.codes[codeConnError].Add(1)
				}
				backoff = nextBackoff(backoff)
				continue
			}
		}
		w.begin(nc)
		before := w.head.Load()
		var err error
		if r.open {
			err = w.openSession(nc)
		} else {
			err = w.closedSession(nc)
		}
		answered := w.head.Load() != before
		w.end(nc)
		nc = nil
		if err == nil {
			break
		}
		// Redial at once after a session that got answers; back off when
		// sessions keep failing before any.
		if answered {
			backoff = 0
		} else {
			backoff = nextBackoff(backoff)
		}
	}
	w.batch.flush()
	w.pubSent.Store(w.sent)
	w.pubReplies.Store(w.replies)
}

func nextBackoff(d time.Duration) time.Duration {
	if d == 0 {
		return 10 * time.Millisecond
	}
	return min(2*d, time.Second)
}

// over reports that the worker will send nothing more.
func (w *worker) over() bool {
	r := w.r
	if r.stopping.Load() || r.now() >= r.stopAt {
		return true
	}
	return r.limit > 0 && w.tickets == 0 && r.issued.Load() >= r.limit
}

func (w *worker) begin(nc net.Conn) {
	w.closing.Store(false)
	w.writerDone.Store(false)
	w.waiting.Store(false)
	w.timedOut.Store(false)
	w.mu.Lock()
	w.nc = nc
	w.gen.Add(1)
	w.mu.Unlock()
}

// end closes the session's connection and gives up on its requests in
// flight, which count as "timeout" when the watchdog ended the session and as
// "conn_error" otherwise (not at all once the run is abandoned).
func (w *worker) end(nc net.Conn) {
	w.mu.Lock()
	w.nc = nil
	w.mu.Unlock()
	nc.Close()
	h, t := w.head.Load(), w.tail.Load()
	code := codeConnError
	if w.timedOut.Load() {
		code = codeTimeout
	}
	if !w.r.abandoned.Load() {
		for i := h; i < t; i++ {
			if w.ring[i&w.mask].intended >= w.r.measureAt {
				w.codes[code].Add(1)
			}
		}
	}
	w.head.Store(t)
}

// expire interrupts session gen's I/O: the watchdog found it stalled.
func (w *worker) expire(gen uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.nc == nil || w.gen.Load() != gen {
		return
	}
	w.timedOut.Store(true)
	w.nc.SetDeadline(aLongTimeAgo)
}

// interrupt ends the session's I/O at once; the run is being abandoned.
func (w *worker) interrupt() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.nc != nil {
		w.nc.SetDeadline(aLongTimeAgo)
	}
}

// mayIssue reports whether the request intended at run time intended may be
// sent, and counts it.
func (w *worker) mayIssue(intended int64) bool {
	r := w.r
	if intended >= r.stopAt || r.stopping.Load() {
		return false
	}
	if intended < r.measureAt {
		return true // warmup: not counted
	}
	if r.limit > 0 {
		if w.tickets == 0 {
			if w.tickets = r.claimTickets(w.claim); w.tickets == 0 {
				return false
			}
		}
		w.tickets--
	}
	w.sent++
	w.lastSend = intended
	return true
}

func (w *worker) nextBody() []byte {
	b := w.r.bodies[w.pol]
	if w.pol++; w.pol == len(w.r.bodies) {
		w.pol = 0
	}
	return b
}

// complete accounts for the answer body to the request in s, which arrived at
// run time now. This and batch.add are the per-request bookkeeping path.
func (w *worker) complete(body []byte, s *slot, now int64) {
	if s.intended < w.r.measureAt {
		return // sent during warmup
	}
	if bytes.HasPrefix(body, replyPrefix) {
		w.replies++
		w.batch.add(now-s.intended, now-s.sent, now)
		return
	}
	w.classify(body, s, now)
}

// classify decodes an answer that is not plainly a reply.
func (w *worker) classify(body []byte, s *slot, now int64) {
	m := &w.msg
	if w.dec.Decode(body, m) != nil || m.Has&codec.HasType == 0 {
		w.codes[codeBadReply].Add(1)
		return
	}
	switch m.Type {
	case codec.TypeReply:
		w.replies++
		w.batch.add(now-s.intended, now-s.sent, now)
	case codec.TypeError:
		if i := codeIndex(m.Code); i != codeOther {
			w.codes[i].Add(1)
			return
		}
		code := m.Code
		if code == "" {
			code = "unknown"
		}
		w.otherMu.Lock()
		if w.other == nil {
			w.other = make(map[string]int64)
		}
		w.other[code]++
		w.otherMu.Unlock()
	default:
		w.codes[codeBadReply].Add(1)
	}
}

// hookConn is the connection under a client.Conn that reads: before each read
// from the socket, when the client has used up what it received and may
// block, it runs hook. Flushing there, rather than when Buffered() is zero,
// also covers a partial frame and the newline after a text-framed answer,
// which leave bytes buffered that do not make an answer.
type hookConn struct {
	net.Conn
	hook func() error
}

func (h *hookConn) Read(p []byte) (int, error) {
	if err := h.hook(); err != nil {
		return 0, err
	}
	return h.Conn.Read(p)
}

// closedSession keeps Pipeline requests in flight on nc until the run is over
// and every answer is in. A nil error means it ended normally.
func (w *worker) closedSession(nc net.Conn) error {
	hc := &hookConn{Conn: nc}
	c := client.New(hc, w.r.copts)
	hc.hook = func() error { // about to block: publish, then send
		w.publish()
		return c.Flush()
	}
	w.h, w.t = w.head.Load(), w.tail.Load()
	err := w.closedLoop(c)
	w.head.Store(w.h)
	w.tail.Store(w.t)
	return err
}

func (w *worker) closedLoop(c *client.Conn) error {
	r := w.r
	depth := uint64(r.cfg.Pipeline)
	issuing := true
	w.now = r.now()
	for {
		// Top up the pipeline; a request that replaces an answer just
		// read takes that answer's timestamp as its own.
		for issuing && w.t-w.h < depth {
			if !w.mayIssue(w.now) {
				issuing = false
				break
			}
			s := &w.ring[w.t&w.mask]
			s.intended, s.sent = w.now, w.now
			w.t++
			if err := c.SendRaw(w.nextBody()); err != nil {
				return err
			}
		}
		if w.t == w.h {
			w.publish()
			return nil
		}
		body, err := c.RecvRaw() // flushes through hookConn before it blocks
		if err != nil {
			return err
		}
		w.now = r.now()
		w.complete(body, &w.ring[w.h&w.mask], w.now)
		w.h++
	}
}

// publish makes a closed-loop connection's progress visible.
func (w *worker) publish() {
	w.head.Store(w.h)
	w.tail.Store(w.t)
	w.pubSent.Store(w.sent)
	w.pubReplies.Store(w.replies)
	w.batch.flushStale(w.now)
}

// openSession sends on schedule from this goroutine and reads the answers
// from another until the run is over and every answer is in.
func (w *worker) openSession(nc net.Conn) error {
	// Two Conns on one socket: this one only writes, the reader's only reads.
	wc := client.New(nc, w.r.copts)
	rc := client.New(&hookConn{Conn: nc, hook: w.publishReader}, w.r.copts)
	done := make(chan struct{})
	go readReplies(w, rc, done)
	err := w.writeRequests(wc, done)
	if err != nil && err != errReaderGone {
		nc.Close() // the reader may be blocked
	}
	<-done
	if err != nil && err != errReaderGone {
		return err
	}
	return w.readErr
}

// intended is when the connection's request seq is due, in run nanoseconds:
// it is request id+seq*Conns of the run's schedule.
func (w *worker) intended(seq int64) int64 {
	return w.r.due(int64(w.id) + seq*int64(len(w.r.workers)))
}

// writeRequests is the open-loop writer: it sends every request that is due,
// up to the ring's capacity, then waits for the pacer to say the next one is.
func (w *worker) writeRequests(c *client.Conn, done <-chan struct{}) error {
	r := w.r
	capacity := uint64(r.cfg.Pipeline)
	tail := w.tail.Load()
	head := w.head.Load()
	for {
		now := r.now()
		n, finished := 0, false
		for {
			it := w.intended(w.seq)
			if it > now {
				break
			}
			if tail-head >= capacity {
				if head = w.head.Load(); tail-head >= capacity {
					break
				}
			}
			if !w.mayIssue(it) {
				finished = true
				break
			}
			s := &w.ring[tail&w.mask]
			s.intended, s.sent = it, now
			tail++
			w.seq++
			n++
			// Published before the write: a large request fills the
			// client's buffer, which then writes at once, and a quick
			// answer ("overloaded") may be read before the batch ends.
			w.tail.Store(tail)
			if err := c.SendRaw(w.nextBody()); err != nil {
				return err
			}
		}
		if n > 0 {
			w.tail.Store(tail) // before the flush: the reader may see answers at once
			w.pubSent.Store(w.sent)
			if err := c.Flush(); err != nil {
				return err
			}
		}
		if finished || w.over() || w.intended(w.seq) >= r.stopAt {
			w.writerDone.Store(true)
			if w.head.Load() == tail {
				w.closing.Store(true)
				c.NetConn().Close() // wakes the reader
			}
			return nil
		}
		if tail-head >= capacity {
			w.waiting.Store(true)
			if head = w.head.Load(); tail-head < capacity {
				w.waiting.Store(false)
				continue
			}
			select {
			case <-w.space:
			case <-done:
				return errReaderGone
			case <-r.stopCh:
			case <-r.limitCh:
			}
			w.waiting.Store(false)
			head = w.head.Load()
			continue
		}
		if w.intended(w.seq) <= r.now() {
			continue
		}
		select {
		case <-w.tick:
		case <-done:
			return errReaderGone
		case <-r.stopCh:
		case <-r.limitCh:
		}
	}
}

// readReplies is the open-loop reader goroutine of one session.
func readReplies(w *worker, c *client.Conn, done chan<- struct{}) {
	w.readErr = w.readLoop(c)
	if w.readErr != nil {
		c.NetConn().Close() // the writer may be blocked
	}
	close(done)
}

func (w *worker) readLoop(c *client.Conn) error {
	r := w.r
	head := w.head.Load()
	tail := head
	w.now = r.now()
	for {
		body, err := c.RecvRaw() // publishes through hookConn before it blocks
		if err != nil {
			if w.closing.Load() {
				return nil
			}
			return err
		}
		now := r.now()
		w.now = now
		if head == tail {
			if tail = w.tail.Load(); head == tail {
				if now >= r.measureAt {
					w.codes[codeBadReply].Add(1)
				}
				return errUnsolicited
			}
		}
		w.complete(body, &w.ring[head&w.mask], now)
		head++
		w.head.Store(head)
		if w.waiting.Load() {
			select {
			case w.space <- struct{}{}:
			default:
			}
		}
		if head == tail && w.writerDone.Load() && head == w.tail.Load() {
			w.pubReplies.Store(w.replies)
			return nil
		}
	}
}

// publishReader makes an open-loop reader's progress visible.
func (w *worker) publishReader() error {
	w.pubReplies.Store(w.replies)
	w.batch.flushStale(w.now)
	return nil
}
