package server

import (
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prism-proxy/prism/backend"
	"github.com/prism-proxy/prism/client"
	"github.com/prism-proxy/prism/codec"
)

// BenchmarkProxyForward measures the whole request path through a real proxy
// on loopback: decode, route, forward on a pipelined data connection, match
// the reply, return it. One op is one request; allocations are counted over
// the whole process (proxy, backend and client), so 0 allocs/op means the
// steady-state path allocates nothing anywhere.
func BenchmarkProxyForward(b *testing.B) {
	for _, tc := range []struct {
		size, pipeline int
		balance        string
	}{{64, 1, "rr"}, {64, 16, "rr"}, {4096, 16, "rr"}, {64, 1, "p2c"}, {64, 16, "p2c"}} {
		name := "size=" + strconv.Itoa(tc.size) + "/pipeline=" + strconv.Itoa(tc.pipeline)
		if tc.balance != "rr" {
			name += "/balance=" + tc.balance
		}
		b.Run(name, func(b *testing.B) {
			p := startProxy(b, Config{Loops: 1, Balance: tc.balance})
			startBackend(b, p, 1, 7, backend.Echo, codec.Binary)
			startBackend(b, p, 2, 7, backend.Echo, codec.Binary)
			c := dial(b, p, codec.Binary)
			benchPipeline(b, c, tc.pipeline, strings.Repeat("x", tc.size))
		})
	}
}

// BenchmarkDirect is the same load straight to a backend: the baseline.
func BenchmarkDirect(b *testing.B) {
	nc := dialDirect(b, startLoneBackend(b))
	for _, depth := range []int{1, 16} {
		b.Run("pipeline="+strconv.Itoa(depth), func(b *testing.B) {
			benchPipeline(b, nc, depth, strings.Repeat("x", 64))
		})
	}
}

// benchPipeline keeps depth requests in flight on c for b.N requests.
func benchPipeline(b *testing.B, c *client.Conn, depth int, payload string) {
	c.NetConn().SetDeadline(time.Time{})
	var m codec.Message
	// Warm up pools and buffers so the measurement is steady state.
	for range 1000 {
		c.Send(1, 7, payload)
	}
	c.Flush()
	for range 1000 {
		if err := c.Recv(&m); err != nil || m.Type != codec.TypeReply {
			b.Fatalf("warm-up: %+v %v", m, err)
		}
	}
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	b.ResetTimer()
	sent, got := 0, 0
	for sent < b.N && sent < depth {
		c.Send(1, 7, payload)
		sent++
	}
	for got < b.N {
		if c.Buffered() == 0 {
			c.Flush()
		}
		if err := c.Recv(&m); err != nil {
			b.Fatal(err)
		}
		if m.Type != codec.TypeReply {
			b.Fatalf("answer %+v", m)
		}
		got++
		if sent < b.N {
			c.Send(1, 7, payload)
			sent++
		}
	}
}

// BenchmarkProxyClients is many clients at once through a one-loop proxy:
// the case where a message proxy batches several clients' requests into one
// backend write. One op is one request.
func BenchmarkProxyClients(b *testing.B) {
	for _, pipeline := range []int{1, 16} {
		b.Run("conns=32/pipeline="+strconv.Itoa(pipeline), func(b *testing.B) {
			p := startProxy(b, Config{Loops: 1})
			startBackend(b, p, 1, 7, backend.Echo, codec.Binary)
			startBackend(b, p, 2, 7, backend.Echo, codec.Binary)
			benchClients(b, 32, pipeline, func() *client.Conn { return dial(b, p, codec.Binary) })
		})
	}
}

// benchClients spreads b.N requests over conns clients keeping depth each in flight.
func benchClients(b *testing.B, conns, depth int, dial func() *client.Conn) {
	cs := make([]*client.Conn, conns)
	for i := range cs {
		cs[i] = dial()
	}
	payload := strings.Repeat("x", 64)
	for _, c := range cs {
		c.NetConn().SetDeadline(time.Time{})
	}
	run := func(c *client.Conn, n int) {
		var m codec.Message
		sent, got := 0, 0
		for sent < n && sent < depth {
			c.Send(1, 7, payload)
			sent++
		}
		for got < n {
			if c.Buffered() == 0 {
				c.Flush()
			}
			if err := c.Recv(&m); err != nil || m.Type != codec.TypeReply {
				b.Errorf("answer %+v %v", m, err)
				return
			}
			got++
			if sent < n {
				c.Send(1, 7, payload)
				sent++
			}
		}
	}
	var wg sync.WaitGroup
	for _, c := range cs { // warm-up
		wg.Add(1)
		go func() { defer wg.Done(); run(c, 200) }()
	}
	wg.Wait()
	b.ReportAllocs()
	b.ResetTimer()
	for i, c := range cs {
		n := b.N / conns
		if i < b.N%conns {
			n++
		}
		wg.Add(1)
		go func() { defer wg.Done(); run(c, n) }()
	}
	wg.Wait()
}

// BenchmarkDirectClients is BenchmarkProxyClients straight to one backend.
func BenchmarkDirectClients(b *testing.B) {
	for _, pipeline := range []int{1, 16} {
		b.Run("conns=32/pipeline="+strconv.Itoa(pipeline), func(b *testing.B) {
			be := startLoneBackend(b)
			benchClients(b, 32, pipeline, func() *client.Conn { return dialDirect(b, be) })
		})
	}
}

// startLoneBackend runs a backend server registered nowhere, for direct load.
func startLoneBackend(b *testing.B) *backend.Server {
	be, err := backend.New(backend.Config{ID: 1, Policy: 7, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	if err := be.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { be.Close() })
	return be
}

func dialDirect(b *testing.B, be *backend.Server) *client.Conn {
	c, err := client.Dial(b.Context(), "127.0.0.1:"+strconv.Itoa(be.Port()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}
