// Package client is Prism's Go client: one connection to a proxy (or straight
// to a backend) on which requests are pipelined and replies read back in
// order, as the proxy guarantees per connection.
//
// It owns the client side of the wire protocol and nothing else: no retries,
// no pooling of connections. A Conn is not safe for concurrent use, except
// that one goroutine may Send and Flush while another Recvs; pipeline from one
// goroutine (Send several, Flush, Recv as many), or give each goroutine its
// own Conn.
//
//	c, err := client.Dial(ctx, "127.0.0.1:9000")
//	reply, err := c.Call(ctx, 42, 7, "hello") // one round trip
//
//	for i := range 16 { c.Send(42, 7, "x") }  // pipelined
//	c.Flush()
//	var m codec.Message
//	for range 16 { c.Recv(&m) }
package client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/prism-proxy/prism/codec"
)

// ErrorReply is returned by Call when the proxy answered with an error message.
type ErrorReply struct {
	DestID int64
	Code   string
	Text   string
}

func (e *ErrorReply) Error() string { return "prism: " + e.Code + ": " + e.Text }

// Reply is a reply that outlives the connection's buffers.
type Reply struct {
	SrcID   int64  // the backend's server id
	DestID  int64  // the client id the request carried
	Payload string // decoded payload
	Raw     []byte // the JSON as received
}

// Options tune a Conn. The zero value is ready.
type Options struct {
	// Framing of the connection: codec.Binary (zero value and default) or codec.Text.
	Framing codec.Framing
	// MaxFrame bounds the size of a reply; zero means codec.DefaultMaxFrame.
	MaxFrame int
	// BufferSize of the reader and writer; zero means 64 KiB.
	BufferSize int
}

// Conn is one client connection. Not safe for concurrent use.
type Conn struct {
	nc      net.Conn
	br      *bufio.Reader
	bw      *bufio.Writer
	framing codec.Framing
	max     int
	dec     codec.Decoder
	scratch []byte // encoding buffer
	frame   []byte // the current reply's bytes when it spans reads
	text    codec.TextScanner
}

// Dial connects to addr with the default Options.
func Dial(ctx context.Context, addr string) (*Conn, error) {
	return DialOptions(ctx, addr, Options{})
}

// DialOptions connects to addr.
func DialOptions(ctx context.Context, addr string, o Options) (*Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return New(nc, o), nil
}

// New wraps an established connection.
func New(nc net.Conn, o Options) *Conn {
	if o.Framing == codec.Unknown {
		o.Framing = codec.Binary
	}
	if o.MaxFrame <= 0 {
		o.MaxFrame = codec.DefaultMaxFrame
	}
	if o.BufferSize <= 0 {
		o.BufferSize = 64 << 10
	}
	return &Conn{
		nc:      nc,
		br:      bufio.NewReaderSize(nc, o.BufferSize),
		bw:      bufio.NewWriterSize(nc, o.BufferSize),
		framing: o.Framing,
		max:     o.MaxFrame,
		scratch: make([]byte, 0, 512),
	}
}

// NetConn returns the underlying connection (to set deadlines, say).
func (c *Conn) NetConn() net.Conn { return c.nc }

// Close closes the connection.
func (c *Conn) Close() error { return c.nc.Close() }

// Send buffers one request; Flush sends what is buffered.
func (c *Conn) Send(srcid, policy int64, payload string) error {
	c.scratch = codec.BeginFrame(c.scratch[:0], c.framing)
	c.scratch = codec.AppendRequest(c.scratch, srcid, policy, payload)
	c.scratch = codec.EndFrame(c.scratch, c.framing, 0)
	_, err := c.bw.Write(c.scratch)
	return err
}

// SendRaw buffers one message whose JSON is body, framed for this connection.
func (c *Conn) SendRaw(body []byte) error {
	c.scratch = codec.AppendFramed(c.scratch[:0], c.framing, body)
	_, err := c.bw.Write(c.scratch)
	return err
}

// Flush writes the buffered requests to the connection.
func (c *Conn) Flush() error { return c.bw.Flush() }

// Buffered is the number of received bytes not yet consumed by Recv: when it
// is zero the next Recv will block on the network.
func (c *Conn) Buffered() int { return c.br.Buffered() }

// RecvRaw reads the next message and returns its JSON bytes, valid until the
// next call on c.
func (c *Conn) RecvRaw() ([]byte, error) {
	if c.framing == codec.Binary {
		hdr, err := c.br.Peek(codec.HeaderLen)
		if err != nil {
			return nil, err
		}
		n, err := codec.ParseHeader(hdr, c.max)
		if err != nil {
			return nil, fmt.Errorf("client: reply of %d bytes: %w", n, err)
		}
		c.br.Discard(codec.HeaderLen)
		if n <= c.br.Size() {
			body, err := c.br.Peek(n)
			if err != nil {
				return nil, noEOF(err)
			}
			c.br.Discard(n)
			return body, nil
		}
		c.frame = append(c.frame[:0], make([]byte, n)...)
		if _, err := io.ReadFull(c.br, c.frame); err != nil {
			return nil, noEOF(err)
		}
		return c.frame, nil
	}
	c.frame = c.frame[:0]
	c.text.Reset()
	for {
		b, err := c.br.ReadByte()
		if err != nil {
			if len(c.frame) > 0 {
				err = noEOF(err)
			}
			return nil, err
		}
		c.frame = append(c.frame, b)
		if b != '}' && b != ']' {
			continue
		}
		obj, _, err := c.text.Scan(c.frame, c.max)
		if err == nil {
			return obj, nil
		}
		if !errors.Is(err, codec.ErrIncomplete) {
			return nil, err
		}
	}
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Recv reads and decodes the next message into m. m's strings alias the
// connection's buffer until the next call on c.
func (c *Conn) Recv(m *codec.Message) error {
	body, err := c.RecvRaw()
	if err != nil {
		return err
	}
	if err := c.dec.Decode(body, m); err != nil {
		return fmt.Errorf("client: reply %q: %w", body, err)
	}
	return nil
}

// Call sends one request and waits for its answer. An error message from the
// proxy comes back as *ErrorReply. The context's deadline bounds the call.
func (c *Conn) Call(ctx context.Context, srcid, policy int64, payload string) (Reply, error) {
	if dl, ok := ctx.Deadline(); ok {
		c.nc.SetDeadline(dl)
		defer c.nc.SetDeadline(time.Time{})
	}
	if err := c.Send(srcid, policy, payload); err != nil {
		return Reply{}, err
	}
	if err := c.Flush(); err != nil {
		return Reply{}, err
	}
	body, err := c.RecvRaw()
	if err != nil {
		return Reply{}, err
	}
	var m codec.Message
	if err := c.dec.Decode(body, &m); err != nil {
		return Reply{}, fmt.Errorf("client: reply %q: %w", body, err)
	}
	return ToReply(&m, body)
}

// ToReply turns a received message into a Reply, or an *ErrorReply for an
// error message. raw, when given, is copied into Reply.Raw.
func ToReply(m *codec.Message, raw []byte) (Reply, error) {
	switch {
	case m.Type == codec.TypeError:
		return Reply{}, &ErrorReply{DestID: m.DestID, Code: m.Code, Text: m.Error}
	case m.Type != codec.TypeReply:
		return Reply{}, fmt.Errorf("client: unexpected message type %d", m.Type)
	}
	r := Reply{SrcID: m.SrcID, DestID: m.DestID, Payload: string([]byte(m.Payload))}
	if raw != nil {
		r.Raw = append([]byte(nil), raw...)
	}
	return r, nil
}
