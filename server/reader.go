package server

import (
	"encoding/binary"
	"errors"

	"github.com/panjf2000/gnet/v2"

	"github.com/prism-proxy/prism/codec"
)

// frames cuts the messages out of what a gnet connection has read.
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
// Use: for body, err := f.next(); err == nil; body, err = f.next() { ...;
// f.consume() }, then f.done(). body is valid until consume.
type frames struct {
	gc    gnet.Conn
	split *codec.Splitter
	buf   []byte // text: what was peeked
	off   int    // text: bytes of buf consumed
	n     int    // size of the frame next returned, header included
}

func newFrames(gc gnet.Conn, split *codec.Splitter) frames {
	f := frames{gc: gc, split: split}
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

// next returns the next message body, codec.ErrIncomplete when no whole
// message is left, or the error that makes the stream unusable.
func (f *frames) next() ([]byte, error) {
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
	max := f.split.Max
	if max <= 0 {
		max = codec.DefaultMaxFrame
	}
	size := binary.BigEndian.Uint32(hdr)
	if uint64(size) > uint64(max) {
		return nil, codec.ErrTooLarge
	}
	f.n = codec.HeaderLen + int(size)
	frame, err := f.gc.Peek(f.n)
	if err != nil {
		return nil, codec.ErrIncomplete
	}
	return frame[codec.HeaderLen:], nil
}

// consume drops the message next returned.
func (f *frames) consume() {
	if f.split.Framing == codec.Text {
		f.off += f.n
		return
	}
	f.gc.Discard(f.n)
}

// done drops what was consumed; the connection keeps the rest.
func (f *frames) done() {
	if f.split.Framing == codec.Text && f.off > 0 {
		f.gc.Discard(f.off)
		f.off = 0
	}
}

// incomplete reports whether err only means "read more".
func incomplete(err error) bool { return errors.Is(err, codec.ErrIncomplete) }
