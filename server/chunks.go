package server

import "github.com/prism-proxy/prism/codec"

// A link's requests are written into chunks as they are dispatched, framed
// for the backend, and written to the socket from there: one copy of a
// request on its way (from the client's read buffer), and a flush that
// writes whole runs of requests without touching the calls. Each call keeps
// a view of its JSON in the chunk, to be sent elsewhere if the link fails
// before the answer; a chunk is recycled once it is written and none of its
// calls is still waiting on the link.

// chunkSize is the size of a link chunk; a larger request gets a chunk of
// its own.
const chunkSize = 256 << 10

// maxFreeChunks bounds the chunks a loop keeps for reuse (16 MiB).
const maxFreeChunks = 64

type chunk struct {
	buf  []byte
	live int // calls with bytes here still in the link's fifo
}

func (l *loop) getChunk(need int) *chunk {
	if need <= chunkSize {
		if n := len(l.chunks); n > 0 {
			ch := l.chunks[n-1]
			l.chunks = l.chunks[:n-1]
			return ch
		}
		need = chunkSize
	}
	return &chunk{buf: make([]byte, 0, need)}
}

func (l *loop) putChunk(ch *chunk) {
	if cap(ch.buf) != chunkSize || len(l.chunks) >= maxFreeChunks {
		return
	}
	ch.buf, ch.live = ch.buf[:0], 0
	l.chunks = append(l.chunks, ch)
}

// push appends c's request, body, framed for the backend, and points the
// call at it.
func (lk *link) push(c *call, body []byte) {
	f := lk.backend.Framing
	need := len(body) + codec.HeaderLen + 1
	ch, ok := lk.chunks.Back()
	if !ok || cap(ch.buf)-len(ch.buf) < need {
		ch = lk.loop.getChunk(need)
		lk.chunks.Push(ch)
		lk.hold(cap(ch.buf))
	}
	start := len(ch.buf)
	ch.buf = codec.BeginFrame(ch.buf, f)
	at := len(ch.buf)
	ch.buf = append(ch.buf, body...)
	c.body = ch.buf[at:len(ch.buf):len(ch.buf)]
	ch.buf = codec.EndFrame(ch.buf, f, start)
	ch.live++
	c.chunk = ch
	n := len(ch.buf) - start
	lk.appended += int64(n)
	c.end = lk.appended
	lk.unsentBytes += n
}

// trimChunks recycles the written chunks at the front that no call needs;
// views of calls unlinked before are invalid after it.
func (lk *link) trimChunks() {
	for {
		ch, ok := lk.chunks.Front()
		if !ok || ch.live > 0 || lk.sentChunk == 0 && lk.sentOff < len(ch.buf) {
			return // waited on, or not all written
		}
		if lk.chunks.Len() == 1 && cap(ch.buf) == chunkSize { // written and done: start it over
			ch.buf = ch.buf[:0]
			lk.sentOff = 0
			return
		}
		lk.chunks.Pop()
		lk.hold(-cap(ch.buf))
		lk.loop.putChunk(ch)
		if lk.sentChunk > 0 {
			lk.sentChunk--
		} else {
			lk.sentOff = 0
		}
	}
}

// dropChunks recycles every chunk: the link failed and its calls were
// sent elsewhere or answered.
func (lk *link) dropChunks() {
	for {
		ch, ok := lk.chunks.Pop()
		if !ok {
			break
		}
		lk.hold(-cap(ch.buf))
		lk.loop.putChunk(ch)
	}
	lk.sentChunk, lk.sentOff, lk.unsentBytes = 0, 0, 0
	lk.sent = lk.appended
}

// hold counts n more bytes (fewer when negative) of chunks held by the
// link, toward its cap and its loop's (limits).
func (lk *link) hold(n int) {
	lk.bytes += n
	lk.loop.held += int64(n)
}
