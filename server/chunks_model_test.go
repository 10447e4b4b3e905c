package server

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/prism-proxy/prism/codec"
	"github.com/prism-proxy/prism/pool"
)

// fakeConn stands for gnet.Conn in a link: it records what is written and
// reports a scripted outbound backlog.
type fakeConn struct {
	gnet.Conn
	stream   []byte
	buffered int
}

func (f *fakeConn) Write(b []byte) (int, error) {
	f.stream = append(f.stream, b...)
	return len(b), nil
}
func (f *fakeConn) OutboundBuffered() int { return f.buffered }

// A model run of the link chunks: random pushes (some larger than a chunk),
// partial flushes, replies, timeouts and link failures with retries; every
// call's view and every frame on the wire must hold its request.
func TestChunksModel(t *testing.T) {
	for seed := uint64(0); seed < 40; seed++ {
		chunksModel(t, seed)
		if t.Failed() {
			return
		}
	}
}

func chunksModel(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 99))
	p := &proxy{registry: pool.NewRegistry()}
	p.cfg = Config{Retries: 3, RetryBudget: -1, Loops: 1, MaxMemory: 1 << 40, MaxBackendInflight: 1 << 30, MaxConnBuffer: 1 << 40, Timeout: time.Hour, Logger: quiet, MaxClientInflight: 1 << 30}
	set := &settings{cfg: p.cfg, lim: newLimits(&p.cfg)}
	p.live.Store(set)
	p.metrics = newMetrics(p)
	l := &loop{p: p, links: map[*pool.Backend]*link{}, epoch: time.Now(), lim: set.lim, set: set}
	l.metrics.pols.init()
	bs := []*pool.Backend{{ID: 1, Policy: 7, Framing: codec.Binary}, {ID: 2, Policy: 7, Framing: codec.Text}}
	for _, b := range bs {
		p.registry.Register(b)
	}
	conns := map[*link]*fakeConn{}
	open := func(b *pool.Backend) {
		lk := &link{loop: l, backend: b, linkState: linkState{state: linkUp}}
		fc := &fakeConn{}
		lk.gc = fc
		conns[lk] = fc
		l.links[b] = lk
	}
	for _, b := range bs {
		open(b)
	}
	ic := &inConn{loop: l}
	ic.split.Framing = codec.Binary
	want := map[int64][]byte{}
	var next int64
	check := func(lk *link, c *call, where string) {
		w := want[c.srcid]
		if !bytes.Equal(c.body, w) {
			t.Fatalf("seed %d: %s: call %d's view holds %q..., want %q...", seed, where, c.srcid, trunc(c.body), trunc(w))
		}
	}
	checkWire := func(lk *link, c *call) {
		fc := conns[lk]
		frame := codec.AppendFramed(nil, lk.backend.Framing, want[c.srcid])
		if c.end > int64(len(fc.stream)) || !bytes.Equal(fc.stream[c.end-int64(len(frame)):c.end], frame) {
			t.Fatalf("seed %d: call %d not on the wire where expected", seed, c.srcid)
		}
	}
	invariants := func(lk *link) {
		live, unsent, held := 0, 0, 0
		for i := 0; i < lk.chunks.Len(); i++ {
			ch := lk.chunks.At(i)
			live += ch.live
			held += cap(ch.buf)
			switch {
			case i > lk.sentChunk:
				unsent += len(ch.buf)
			case i == lk.sentChunk:
				unsent += len(ch.buf) - lk.sentOff
			}
		}
		if live != lk.fifo.Len() || unsent != lk.unsentBytes || lk.chunks.Len() > 0 && lk.sentChunk >= lk.chunks.Len() {
			t.Fatalf("seed %d: live %d fifo %d unsent %d counted %d sentChunk %d of %d", seed, live, lk.fifo.Len(), unsent, lk.unsentBytes, lk.sentChunk, lk.chunks.Len())
		}
		if held != lk.bytes {
			t.Fatalf("seed %d: link holds %d bytes of chunks, counts %d", seed, held, lk.bytes)
		}
		if int64(len(conns[lk].stream)) != lk.sent {
			t.Fatalf("seed %d: sent %d, wire %d", seed, lk.sent, len(conns[lk].stream))
		}
	}
	for step := 0; step < 3000; step++ {
		b := bs[rng.IntN(2)]
		lk := l.links[b]
		switch op := rng.IntN(100); {
		case op < 40: // a request
			size := 1 + rng.IntN(4000)
			if rng.IntN(40) == 0 {
				size = chunkSize + rng.IntN(chunkSize)
			}
			next++
			body := fmt.Appendf(nil, `{"n":%d,"p":"%s"}`, next, strings.Repeat(string(rune('a'+next%26)), size))
			want[next] = body
			c := l.newCall(ic, next, 7)
			l.dispatch(c, append([]byte(nil), body...))
		case op < 60: // the socket takes data, or holds some
			conns[lk].buffered = 0
			if rng.IntN(3) == 0 {
				conns[lk].buffered = 1
			}
			lk.flush()
			conns[lk].buffered = 0
		case op < 85: // replies
			for n := rng.IntN(20); n > 0; n-- {
				c, ok := lk.fifo.Front()
				if !ok || c.end > lk.sent {
					break
				}
				check(lk, c, "reply")
				checkWire(lk, c)
				lk.fifo.Pop()
				answered := l.answer(c)
				lk.unlink(c)
				lk.trimChunks()
				if answered {
					c.client.answerReply(c, []byte(`{}`))
				}
			}
		case op < 90: // a timeout at the front of the client's queue
			if c, ok := ic.queue.Front(); ok && c.unanswered() {
				l.answerError(c, codec.CodeTimeout, "t")
			}
		case op < 93: // the link fails: its calls go to the other backend
			for i := 0; i < lk.fifo.Len(); i++ {
				check(lk, lk.fifo.At(i), "before failAll")
			}
			lk.closed(conns[lk], nil)
			for _, olk := range l.links {
				for i := 0; i < olk.fifo.Len(); i++ {
					check(olk, olk.fifo.At(i), "after failAll")
				}
			}
			open(b)
		}
		checkCalls(t, seed, l, ic)
		for _, lk := range l.links {
			invariants(lk)
			for i := 0; i < lk.fifo.Len(); i++ {
				check(lk, lk.fifo.At(i), "in fifo")
			}
		}
		l.dirtyLinks, l.dirtyClients = l.dirtyLinks[:0], l.dirtyClients[:0]
		for _, lk := range l.links {
			lk.dirty = false
		}
		if ic.out != nil {
			l.putBuf(ic.out)
			ic.out = nil
			ic.dirty = false
		}
	}
	if seed < 3 {
		t.Logf("seed %d: retries %d errors %v late %d replies free chunks %d", seed, l.metrics.n[mRetries], l.metrics.n[mErrors:], l.metrics.n[mLate], len(l.chunks))
	}
}

// checkCalls checks the calls' invariants (call.go): every call held by the
// client or a link is in a state that says so and is not free; every free
// call is released exactly once (once in the free list) and held by no one.
func checkCalls(t *testing.T, seed uint64, l *loop, ic *inConn) {
	t.Helper()
	holders := map[*call]int{}
	for i := 0; i < ic.queue.Len(); i++ {
		c := ic.queue.At(i)
		holders[c]++
		if c.state != callQueued && c.state != callAnswered {
			t.Fatalf("seed %d: call in the client's queue in state %d", seed, c.state)
		}
		if c.state == callAnswered && i == 0 {
			t.Fatalf("seed %d: an answered call waits at the head of its queue", seed)
		}
	}
	for _, lk := range l.links {
		for i := 0; i < lk.fifo.Len(); i++ {
			c := lk.fifo.At(i)
			holders[c]++
			if !c.onLink || c.state == callFree {
				t.Fatalf("seed %d: call on a link with onLink %v state %d", seed, c.onLink, c.state)
			}
		}
	}
	unanswered, clientBytes, heldReplies := 0, 0, 0
	for i := 0; i < ic.queue.Len(); i++ {
		c := ic.queue.At(i)
		clientBytes += c.size
		heldReplies += c.heldReply
	}
	if clientBytes != ic.held {
		t.Fatalf("seed %d: client's calls hold %d bytes, it counts %d", seed, clientBytes, ic.held)
	}
	linkBytes := 0
	for _, lk := range l.links {
		linkBytes += lk.bytes
	}
	if int64(linkBytes+heldReplies) != l.held {
		t.Fatalf("seed %d: links %d + held replies %d bytes, the loop counts %d", seed, linkBytes, heldReplies, l.held)
	}
	for c, n := range holders {
		if c.state == callQueued {
			unanswered++
		}
		if n > 2 {
			t.Fatalf("seed %d: a call is held %d times", seed, n)
		}
	}
	if int64(unanswered) != l.metrics.n[mUnanswered] {
		t.Fatalf("seed %d: %d calls queued, the loop counts %d unanswered", seed, unanswered, l.metrics.n[mUnanswered])
	}
	free := map[*call]bool{}
	for _, c := range l.free {
		if free[c] {
			t.Fatalf("seed %d: a call was released twice", seed)
		}
		free[c] = true
		if holders[c] > 0 || c.state != callFree || c.onLink {
			t.Fatalf("seed %d: a released call is still held (%d holders, state %d)", seed, holders[c], c.state)
		}
	}
}

func trunc(b []byte) []byte {
	if len(b) > 40 {
		return b[:40]
	}
	return b
}
