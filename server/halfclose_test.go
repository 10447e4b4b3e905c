package server

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/prism-proxy/prism/codec"
)

// A half-closed client that resets while its rest is still unparsed (its
// tail's writes fail): the loop drops the rest, and what it counted in the
// loop's memory share with it (found by a cold review: the rest stayed
// paused and counted for good, and answers piled up for the dead tail;
// repeated, the loop would stop parsing every client).
func TestHalfCloseGoneDropsRest(t *testing.T) {
	const inflight = 4
	p := startProxy(t, Config{Loops: 1, MaxClientInflight: inflight, MaxFrame: 64 << 10, MaxConnBuffer: 256 << 10})
	newFakeBackend(t, p, 1, 7, func(_ int, s string) (string, bool) { time.Sleep(300 * time.Millisecond); return s, true })
	// What the loop holds, and its paused half-closed clients with a rest.
	state := func() (int64, int) {
		r, _ := runOnLoops(context.Background(), p.p, func(l *loop) [2]int64 {
			rests := map[*inConn]bool{} // an entry may be there twice
			for _, ic := range l.paused {
				if ic.gc == nil && ic.rest != nil {
					rests[ic] = true
				}
			}
			return [2]int64{l.held, int64(len(rests))}
		})
		return r[0][0], int(r[0][1])
	}
	for range 3 {
		nc, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		var out []byte
		for i := range inflight {
			out = codec.AppendFramed(out, codec.Binary, codec.AppendRequest(nil, int64(i), 7, "held"))
		}
		for len(out) < 250<<10 {
			out = codec.AppendFramed(out, codec.Binary, codec.AppendRequest(nil, 9, 999, ""))
		}
		if _, err := nc.Write(out); err != nil {
			t.Fatal(err)
		}
		nc.(*net.TCPConn).CloseWrite()
		waitFor(t, "a half-closed client with a rest", 2*time.Second, func() bool { _, n := state(); return n == 1 })
		nc.(*net.TCPConn).SetLinger(0)
		nc.Close() // a reset: the tail's writes fail
		waitFor(t, "its rest dropped", 5*time.Second, func() bool { _, n := state(); return n == 0 })
	}
	// A link keeps its current chunk (256 KiB) counted; nothing more.
	waitFor(t, "the loop's share given back", 5*time.Second, func() bool { h, _ := state(); return h <= 256<<10 })
}
