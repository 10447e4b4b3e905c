package codec

import (
	"bytes"
	"encoding/binary"
	"errors"
)

// Framing is how messages are delimited on one connection.
type Framing uint8

const (
	// Unknown means no byte has been seen yet.
	Unknown Framing = iota
	// Binary frames carry a 4-byte big-endian length before the JSON bytes.
	Binary
	// Text frames are JSON objects back to back, optionally separated by
	// whitespace; Prism writes each followed by '\n'.
	Text
)

func (f Framing) String() string {
	switch f {
	case Binary:
		return "binary"
	case Text:
		return "text"
	}
	return "unknown"
}

// DefaultMaxFrame is the default largest JSON message accepted, in bytes.
const DefaultMaxFrame = 1 << 20

// HeaderLen is the length of a binary frame's header.
const HeaderLen = 4

var (
	// ErrIncomplete means the buffer holds only part of a frame: read more.
	ErrIncomplete = errors.New("codec: incomplete frame")
	// ErrTooLarge means a frame announces or grows past the maximum size. The
	// stream cannot be resynchronised after it.
	ErrTooLarge = errors.New("codec: frame too large")
	// ErrFraming means a text stream holds something other than a JSON object
	// where one should start. The stream cannot be resynchronised after it.
	ErrFraming = errors.New("codec: text stream does not start a JSON object")
)

// Detect tells the framing of a connection from its first byte: '{' or JSON
// whitespace mean text, anything else binary (a binary frame under 16 MiB
// starts with a zero byte).
func Detect(first byte) Framing {
	switch first {
	case '{', ' ', '\t', '\r', '\n':
		return Text
	}
	return Binary
}

// ParseHeader returns the body size announced by the binary frame header at
// the start of hdr. It returns ErrIncomplete when hdr is shorter than
// HeaderLen, and ErrTooLarge, with the announced size, when that is more than
// max bytes (max <= 0 means DefaultMaxFrame). Every reader of binary frames
// parses headers here, so they all agree on the bound.
func ParseHeader(hdr []byte, max int) (size int, err error) {
	if len(hdr) < HeaderLen {
		return 0, ErrIncomplete
	}
	if max <= 0 {
		max = DefaultMaxFrame
	}
	n := binary.BigEndian.Uint32(hdr)
	if uint64(n) > uint64(max) {
		return int(n), ErrTooLarge
	}
	return int(n), nil
}

// SplitBinary returns the JSON body of the first binary frame in buf and the
// number of bytes the frame takes (header included). It returns ErrIncomplete
// when buf holds less than a whole frame and ErrTooLarge when the header
// announces more than max bytes (max <= 0 means DefaultMaxFrame).
func SplitBinary(buf []byte, max int) (body []byte, n int, err error) {
	size, err := ParseHeader(buf, max)
	if err != nil {
		return nil, 0, err
	}
	n = HeaderLen + size
	if len(buf) < n {
		return nil, 0, ErrIncomplete
	}
	return buf[HeaderLen:n], n, nil
}

// TextScanner finds where JSON objects end in a text stream. It keeps its
// position between calls, so bytes that arrive a few at a time are scanned
// once. It only balances braces and brackets outside strings; the decoder
// checks the object's syntax.
type TextScanner struct {
	pos   int // next byte to scan, relative to the buffer's start
	start int // offset of the object's '{', or -1 before it is seen
	depth int
	inStr bool
	// strict makes Scan reject raw control characters in strings, which
	// JSON forbids and sonic lets through.
	strict bool
}

// Reset forgets any partial object; call it when the buffer's bytes were consumed.
func (s *TextScanner) Reset() { *s = TextScanner{strict: s.strict} }

// hasControl reports whether b holds a byte below 0x20, eight bytes at a time.
func hasControl(b []byte) bool {
	const lo, hi = 0x2020202020202020, 0x8080808080808080
	for len(b) >= 8 {
		x := binary.LittleEndian.Uint64(b)
		if (x-lo)&^x&hi != 0 {
			return true
		}
		b = b[8:]
	}
	for _, c := range b {
		if c < 0x20 {
			return true
		}
	}
	return false
}

// Scan returns the first complete object in buf and the number of bytes it
// takes, leading whitespace included. buf must start where the previous
// complete object ended (the caller discards consumed bytes and calls Reset,
// or passes the same buffer again with more bytes appended). It returns
// ErrIncomplete when the object is not complete, ErrFraming when something
// other than whitespace precedes a '{', and ErrTooLarge when the object grows
// past max bytes (max <= 0 means DefaultMaxFrame).
func (s *TextScanner) Scan(buf []byte, max int) (obj []byte, n int, err error) {
	if max <= 0 {
		max = DefaultMaxFrame
	}
	if s.pos == 0 && s.depth == 0 {
		s.start = -1
	}
	i := s.pos
	for s.start < 0 {
		if i >= len(buf) {
			s.pos = i
			return nil, 0, ErrIncomplete
		}
		switch buf[i] {
		case ' ', '\t', '\r', '\n':
			i++
		case '{':
			s.start = i
			s.depth = 1
			i++
		default:
			return nil, 0, ErrFraming
		}
	}
	for i < len(buf) {
		if s.inStr {
			// Strings hold the bulk of a message: jump to the next quote and
			// count the backslashes before it to know whether it is escaped.
			q := bytes.IndexByte(buf[i:], '"')
			if q < 0 {
				i = len(buf)
				break
			}
			if s.strict && hasControl(buf[i:i+q]) {
				return nil, 0, ErrSyntax
			}
			i += q
			bs := 0
			for j := i - 1; buf[j] == '\\'; j-- {
				bs++
			}
			i++
			if bs%2 == 0 {
				s.inStr = false
			}
			continue
		}
		c := buf[i]
		i++
		switch c {
		case '"':
			s.inStr = true
		case '{', '[':
			s.depth++
		case '}', ']':
			s.depth--
			if s.depth == 0 {
				if i-s.start > max {
					return nil, 0, ErrTooLarge
				}
				obj = buf[s.start:i]
				s.Reset()
				return obj, i, nil
			}
		}
	}
	s.pos = i
	if i-s.start > max {
		return nil, 0, ErrTooLarge
	}
	return nil, 0, ErrIncomplete
}

// Splitter cuts one connection's byte stream into message bodies in the
// framing detected from its first byte. The zero value is ready; set Max to
// bound message size (zero means DefaultMaxFrame).
type Splitter struct {
	Framing Framing
	Max     int
	text    TextScanner
}

// Next returns the next message body in buf and how many bytes of buf it
// takes. buf must start where the last returned message ended. Errors are
// those of SplitBinary and TextScanner.Scan; after ErrTooLarge or ErrFraming
// the stream is unusable.
func (sp *Splitter) Next(buf []byte) (body []byte, n int, err error) {
	if sp.Framing == Unknown {
		if len(buf) == 0 {
			return nil, 0, ErrIncomplete
		}
		sp.Framing = Detect(buf[0])
	}
	if sp.Framing == Binary {
		return SplitBinary(buf, sp.Max)
	}
	return sp.text.Scan(buf, sp.Max)
}

// BeginFrame starts a frame at the end of dst: it reserves the binary header.
// Append the JSON object next, then call EndFrame with len(dst) from before
// BeginFrame.
func BeginFrame(dst []byte, f Framing) []byte {
	if f == Text {
		return dst
	}
	return append(dst, 0, 0, 0, 0)
}

// EndFrame completes the frame begun at start: it fills in the binary length
// or appends the text framing's '\n'.
func EndFrame(dst []byte, f Framing, start int) []byte {
	if f == Text {
		return append(dst, '\n')
	}
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-HeaderLen))
	return dst
}

// AppendFramed appends body as one frame of framing f.
func AppendFramed(dst []byte, f Framing, body []byte) []byte {
	start := len(dst)
	dst = BeginFrame(dst, f)
	dst = append(dst, body...)
	return EndFrame(dst, f, start)
}
