//go:build !race

// Under -race the path allocates about 0.57 times per request (sync.Pool, for
// one, drops a quarter of what is put back on purpose), so the count below
// means nothing there; .ci/run runs this test once without -race.

package server

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/prism-proxy/prism/backend"
	"github.com/prism-proxy/prism/codec"
)

// TestForwardingAllocates guards the hot path (house style 7): forwarding a
// request through a real proxy to a real backend and its reply back must not
// allocate. The client side speaks the wire format itself on a raw net.Conn
// with preallocated buffers, so the process's malloc count over many round
// trips is the proxy's and the in-process backend's, plus runtime noise that
// the per-request threshold absorbs: one allocation per request anywhere on
// the path fails the test.
func TestForwardingAllocates(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	for _, bal := range []string{"rr", "p2c"} {
		t.Run("balance="+bal, func(t *testing.T) { testForwardingAllocates(t, bal) })
	}
}

func testForwardingAllocates(t *testing.T, balance string) {
	p := startProxy(t, Config{Loops: 1, Balance: balance})
	startBackend(t, p, 1, 7, backend.Echo, codec.Binary)
	if balance == "p2c" { // a choice to make
		startBackend(t, p, 2, 7, backend.Echo, codec.Binary)
	}
	nc, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	if err := nc.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}

	for _, depth := range []int{1, 16} {
		t.Run("pipeline="+strconv.Itoa(depth), func(t *testing.T) {
			rt := newRawTripper(nc, depth, 64)
			if err := rt.trips(1000); err != nil { // warm up buffers and pools
				t.Fatalf("warm-up: %v", err)
			}
			n := 4000 * depth
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			err := rt.trips(n)
			runtime.ReadMemStats(&after)
			if err != nil {
				t.Fatal(err)
			}
			per := float64(after.Mallocs-before.Mallocs) / float64(n)
			t.Logf("%.3f allocations per request (%d over %d requests)", per, after.Mallocs-before.Mallocs, n)
			if per >= 0.5 {
				t.Errorf("forwarding allocates: %.3f allocations per request; want < 0.5 (house style 7: see BenchmarkProxyForward -benchmem, or -memprofile)", per)
			}
		})
	}
}

// rawTripper sends batches of one preencoded binary request and reads their
// replies on a plain net.Conn, allocating nothing after newRawTripper.
type rawTripper struct {
	nc    net.Conn
	depth int
	batch []byte // depth framed requests
	buf   []byte // read buffer
	r, w  int    // unread bytes are buf[r:w]
}

func newRawTripper(nc net.Conn, depth, size int) *rawTripper {
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = 'x'
	}
	body := `{"type":0,"srcid":1,"privPoliId":7,"payloadsize":` + strconv.Itoa(size) + `,"payload":"` + string(payload) + `"}`
	rt := &rawTripper{nc: nc, depth: depth, buf: make([]byte, 64<<10)}
	for range depth {
		rt.batch = binary.BigEndian.AppendUint32(rt.batch, uint32(len(body)))
		rt.batch = append(rt.batch, body...)
	}
	return rt
}

// trips sends n requests, depth at a time, and reads a reply for each.
func (rt *rawTripper) trips(n int) error {
	for done := 0; done < n; done += rt.depth {
		if _, err := rt.nc.Write(rt.batch); err != nil {
			return err
		}
		for range rt.depth {
			body, err := rt.frame()
			if err != nil {
				return err
			}
			if !isReply(body) {
				return errNotReply
			}
		}
	}
	return nil
}

// frame returns the next frame's body, valid until the next call.
func (rt *rawTripper) frame() ([]byte, error) {
	for {
		if avail := rt.buf[rt.r:rt.w]; len(avail) >= codec.HeaderLen {
			n := int(binary.BigEndian.Uint32(avail))
			if n > len(rt.buf)-codec.HeaderLen {
				return nil, errNotReply
			}
			if len(avail) >= codec.HeaderLen+n {
				rt.r += codec.HeaderLen + n
				return avail[codec.HeaderLen : codec.HeaderLen+n], nil
			}
		}
		if rt.r > 0 { // keep the partial frame at the front
			rt.w = copy(rt.buf, rt.buf[rt.r:rt.w])
			rt.r = 0
		}
		m, err := rt.nc.Read(rt.buf[rt.w:])
		rt.w += m
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
}

var errNotReply = errors.New("answer is not a reply")

// isReply reports whether body is a reply (type 2), without decoding it.
func isReply(body []byte) bool {
	const key = `"type":2`
	for i := 0; i+len(key) <= len(body); i++ {
		if string(body[i:i+len(key)]) == key {
			return true
		}
	}
	return false
}
