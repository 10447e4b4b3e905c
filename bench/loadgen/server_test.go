package loadgen

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prism-proxy/prism/codec"
)

// echoServer is a backend stand-in for tests: it answers each request with a
// type-2 reply carrying its payload, in order, in the framing the connection
// speaks. Options make it misbehave.
type echoServer struct {
	// delay holds each reply back for this long after its request was read.
	delay time.Duration
	// errEvery answers every errEvery-th request (server-wide) with an
	// "overloaded" error instead of a reply.
	errEvery int64
	// stallAt makes the stallAt-th request (server-wide, from 1) hold up
	// its connection's replies for stallFor, once.
	stallAt  int64
	stallFor time.Duration
	// closeAfter makes the first connection close after reading that many
	// requests, leaving the rest unanswered.
	closeAfter int64

	addr        string
	requests    atomic.Int64 // requests read
	accepted    atomic.Int64 // connections accepted
	inflight    atomic.Int64 // read and not yet answered, over all connections
	maxInflight atomic.Int64
	maxPerConn  atomic.Int64
	stalled     atomic.Bool

	mu       sync.Mutex
	policies map[int64]int64 // requests per policy

	ln   net.Listener
	done chan struct{}
	wg   sync.WaitGroup
}

// start listens on 127.0.0.1:0 and serves until the test ends.
func (s *echoServer) start(tb testing.TB) *echoServer {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s.ln, s.addr, s.done = ln, ln.Addr().String(), make(chan struct{})
	s.policies = map[int64]int64{}
	var conns sync.Map
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for i := 0; ; i++ {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			conns.Store(nc, true)
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer conns.Delete(nc)
				s.serve(nc, i == 0)
			}()
		}
	}()
	tb.Cleanup(func() {
		close(s.done)
		ln.Close()
		conns.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
		s.wg.Wait()
	})
	return s
}

func raiseMax(m *atomic.Int64, v int64) {
	for {
		old := m.Load()
		if v <= old || m.CompareAndSwap(old, v) {
			return
		}
	}
}

type pendingReply struct {
	frame []byte
	due   time.Time
	stall bool
}

// serve reads requests; replies go out from this goroutine, or from a
// writer goroutine when they are held back.
func (s *echoServer) serve(nc net.Conn, first bool) {
	defer nc.Close()
	slow := s.delay > 0 || s.stallAt > 0
	var out chan pendingReply
	writerDone := make(chan struct{})
	var perConn atomic.Int64
	if slow {
		out = make(chan pendingReply, 1<<16)
		go s.writeDelayed(nc, out, &perConn, writerDone)
		defer func() { close(out); <-writerDone }()
	}
	var (
		sp    codec.Splitter
		dec   codec.Decoder
		m     codec.Message
		buf   = make([]byte, 0, 64<<10)
		reply []byte
		read  int64
		fast  int64 // replies in reply
	)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := nc.Read(buf[len(buf):cap(buf)])
		if err != nil {
			return
		}
		buf = buf[:len(buf)+n]
		now := time.Now()
		start := 0
		reply = reply[:0]
		for {
			body, k, err := sp.Next(buf[start:])
			if errors.Is(err, codec.ErrIncomplete) {
				break
			}
			if err != nil {
				return
			}
			start += k
			read++
			if first && s.closeAfter > 0 && read > s.closeAfter {
				return
			}
			seq := s.requests.Add(1)
			raiseMax(&s.maxInflight, s.inflight.Add(1))
			raiseMax(&s.maxPerConn, perConn.Add(1))
			if dec.Decode(body, &m) != nil {
				return
			}
			policy, _ := m.Policy()
			s.mu.Lock()
			s.policies[policy]++
			s.mu.Unlock()
			at := len(reply)
			reply = codec.BeginFrame(reply, sp.Framing)
			if s.errEvery > 0 && seq%s.errEvery == 0 {
				reply = codec.AppendError(reply, m.SrcID, codec.CodeOverloaded, "test says no")
			} else {
				reply = codec.AppendReply(reply, 1, m.SrcID, m.Payload)
			}
			reply = codec.EndFrame(reply, sp.Framing, at)
			if slow {
				stall := seq == s.stallAt && !s.stalled.Swap(true)
				out <- pendingReply{frame: append([]byte(nil), reply[at:]...), due: now.Add(s.delay), stall: stall}
				reply = reply[:at]
			} else {
				fast++
			}
		}
		buf = append(buf[:0], buf[start:]...)
		if fast > 0 {
			s.inflight.Add(-fast)
			perConn.Add(-fast)
			fast = 0
			if _, err := nc.Write(reply); err != nil {
				return
			}
		}
	}
}

// writeDelayed writes held-back replies when they are due.
func (s *echoServer) writeDelayed(nc net.Conn, out <-chan pendingReply, perConn *atomic.Int64, done chan<- struct{}) {
	defer close(done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	wait := func(d time.Duration) bool {
		if d <= 0 {
			return true
		}
		timer.Reset(d)
		select {
		case <-timer.C:
			return true
		case <-s.done:
			return false
		}
	}
	failed := false
	for p := range out {
		if failed {
			continue // drain so the reader never blocks
		}
		if !wait(time.Until(p.due)) {
			failed = true
			continue
		}
		if p.stall && !wait(s.stallFor) {
			failed = true
			continue
		}
		s.inflight.Add(-1)
		perConn.Add(-1)
		if _, err := nc.Write(p.frame); err != nil {
			failed = true
		}
	}
}

func (s *echoServer) policyCounts() map[int64]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[int64]int64{}
	for k, v := range s.policies {
		out[k] = v
	}
	return out
}
