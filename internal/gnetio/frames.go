package gnetio

import (
	"errors"
	"io"

	"github.com/panjf2000/gnet/v2"

	"github.com/prism-proxy/prism/codec"
)

// Frames cuts the messages out of what a gnet connection has read. A Frames
// lives for one OnTraffic (or one pass over the connection on its loop) and
// is not safe from other goroutines, like the gnet.Conn it reads.
//
// Binary frames are peeked one at a time. gnet keeps the bytes a callback
// leaves unread in a ring buffer, and a Peek that spans that ring and the
// latest read is copied into a pooled slice: peeking everything at once
// would copy every held-over byte again on each read (with 4 KiB messages,
// nearly every read ends inside a frame, so nearly every read would copy
// the whole ring, and the pool's misses churn the heap). One frame at a
// time, at most the frame that spans the two is copied.
//
// Text frames are scanned over everything gnet holds, peeked once.
//
// Use: for body, err := f.Next(); err == nil; body, err = f.Next() { ...;
// f.Consume() }, then f.Done(). body is valid until Consume.
type Frames struct {
	gc    Source
	split *codec.Splitter
	buf   []byte // text: what was peeked
	off   int    // text: bytes of buf consumed
	n     int    // size of the frame Next returned, header included
}

// Source is what Frames reads: a gnet.Conn's buffered bytes, or Bytes.
type Source interface {
	Peek(n int) ([]byte, error)
	Discard(n int) (int, error)
	InboundBuffered() int
}

var _ Source = gnet.Conn(nil)

// Bytes is a Source over a byte slice: what a connection sent that is
// kept after gnet let the connection go.
type Bytes struct{ B []byte }

// Peek returns the first n bytes (all for n < 0), or an error when there
// are fewer.
func (s *Bytes) Peek(n int) ([]byte, error) {
	switch {
	case n < 0:
		return s.B, nil
	case n > len(s.B):
		return s.B, io.ErrShortBuffer
	}
	return s.B[:n], nil
}

// Discard drops the first n bytes (all for n < 0).
func (s *Bytes) Discard(n int) (int, error) {
	if n < 0 || n > len(s.B) {
		n = len(s.B)
	}
	s.B = s.B[n:]
	return n, nil
}

// InboundBuffered is how many bytes are left.
func (s *Bytes) InboundBuffered() int { return len(s.B) }

// NewFrames starts reading gc's buffered bytes with split, the connection's
// splitter (its framing is detected from the first byte when unknown).
func NewFrames(gc Source, split *codec.Splitter) Frames {
	f := Frames{gc: gc, split: split}
	if split.Framing == codec.Unknown {
		if b, err := gc.Peek(1); err == nil {
			split.Framing = codec.Detect(b[0])
		}
	}
	if split.Framing == codec.Text {
		f.buf, _ = gc.Peek(-1)
	}
	return f
}

// Next returns the next message body, codec.ErrIncomplete when no whole
// message is left, or the error that makes the stream unusable.
func (f *Frames) Next() ([]byte, error) {
	switch f.split.Framing {
	case codec.Unknown:
		return nil, codec.ErrIncomplete
	case codec.Text:
		body, n, err := f.split.Next(f.buf[f.off:])
		f.n = n
		return body, err
	}
	hdr, err := f.gc.Peek(codec.HeaderLen)
	if err != nil {
		return nil, codec.ErrIncomplete
	}
	size, err := codec.ParseHeader(hdr, f.split.Max)
	if err != nil {
		return nil, err
	}
	f.n = codec.HeaderLen + size
	frame, err := f.gc.Peek(f.n)
	if err != nil {
		return nil, codec.ErrIncomplete
	}
	return frame[codec.HeaderLen:], nil
}

// Size is the size of the message Next returned, framing included (for a
// text message, the whitespace before it too).
func (f *Frames) Size() int { return f.n }

// Consume drops the message Next returned.
func (f *Frames) Consume() {
	if f.split.Framing == codec.Text {
		f.off += f.n
		return
	}
	f.gc.Discard(f.n)
}

// Partial reports whether, after Next returned codec.ErrIncomplete, the
// connection holds part of a message: bytes other than the whitespace a
// text stream may leave between messages.
func (f *Frames) Partial() bool {
	switch f.split.Framing {
	case codec.Unknown:
		return false
	case codec.Text:
		for _, c := range f.buf[f.off:] { // whitespace, then '{': ends at once
			if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
				return true
			}
		}
		return false
	}
	return f.gc.InboundBuffered() > 0
}

// Done drops what was consumed; the connection keeps the rest.
func (f *Frames) Done() {
	if f.split.Framing == codec.Text && f.off > 0 {
		f.gc.Discard(f.off)
		f.off = 0
	}
}

// Incomplete reports whether err only means "read more".
func Incomplete(err error) bool { return errors.Is(err, codec.ErrIncomplete) }
