package client

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/prism-proxy/prism/codec"
)

// serve answers each request on one accepted connection with replies written
// a few bytes at a time, so the client must reassemble frames.
func serve(t *testing.T, framing codec.Framing, answer func(m *codec.Message) []byte) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		c := New(nc, Options{Framing: framing})
		var m codec.Message
		for c.Recv(&m) == nil {
			out := codec.AppendFramed(nil, framing, answer(&m))
			for i := 0; i < len(out); i += 3 {
				nc.Write(out[i:min(i+3, len(out))])
			}
		}
	}()
	return ln.Addr().String()
}

func TestCallAndPipeline(t *testing.T) {
	for _, f := range []codec.Framing{codec.Binary, codec.Text} {
		t.Run(f.String(), func(t *testing.T) {
			addr := serve(t, f, func(m *codec.Message) []byte {
				if m.Payload == "fail" {
					return codec.AppendError(nil, m.SrcID, codec.CodeNoBackend, "none")
				}
				return codec.AppendReply(nil, 1, m.SrcID, m.Payload+"!")
			})
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := DialOptions(ctx, addr, Options{Framing: f})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			r, err := c.Call(ctx, 42, 7, "h\u00e9")
			if err != nil || r.Payload != "h\u00e9!" || r.DestID != 42 || r.SrcID != 1 || len(r.Raw) == 0 {
				t.Fatalf("Call = %+v, %v", r, err)
			}
			var er *ErrorReply
			if _, err := c.Call(ctx, 42, 7, "fail"); !errors.As(err, &er) || er.Code != codec.CodeNoBackend {
				t.Fatalf("Call of a failing request: %v; want *ErrorReply no_backend", err)
			}
			for i := range 50 {
				c.Send(int64(i), 7, "p")
			}
			c.Flush()
			var m codec.Message
			for i := range 50 {
				if err := c.Recv(&m); err != nil || m.DestID != int64(i) {
					t.Fatalf("reply %d: %+v %v", i, m, err)
				}
			}
		})
	}
}
