package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prism-proxy/prism/client"
	"github.com/prism-proxy/prism/codec"
)

// A backend that answers with something other than the reply to the
// request at the head of its data connection never reaches a client: the
// data connection is closed and the request is retried on a healthy
// sibling (or answered with an error), and every request gets exactly one
// answer, its own.
func TestBadRepliesNeverReachClients(t *testing.T) {
	reply := func(dest int64, p string) []byte { return codec.AppendReply(nil, 1, dest, p) }
	bad := []struct {
		name  string
		frame func(srcid int64, payload string) [][]byte
	}{
		{"not JSON", func(int64, string) [][]byte { return [][]byte{[]byte("hello")} }},
		{"empty frame", func(int64, string) [][]byte { return [][]byte{{}} }},
		{"array", func(s int64, p string) [][]byte { return [][]byte{[]byte("[" + string(reply(s, p)) + "]")} }},
		{"type 0", func(s int64, p string) [][]byte { return [][]byte{codec.AppendRequest(nil, s, 7, p)} }},
		{"type 4", func(s int64, _ string) [][]byte { return [][]byte{codec.AppendAck(nil, s, 7)} }},
		{"forged error", func(s int64, _ string) [][]byte {
			return [][]byte{codec.AppendError(nil, s, codec.CodeOverloaded, "forged")}
		}},
		{"wrong destid", func(s int64, p string) [][]byte { return [][]byte{reply(s+1, p)} }},
		{"two replies", func(s int64, p string) [][]byte { return [][]byte{reply(s, p), reply(s, p)} }},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			p := startProxy(t, Config{Loops: 1})
			rogue := newFakeBackend(t, p, 1, 7, nil)
			rogue.raw = func(_ int, srcid int64, payload string) [][]byte { return tt.frame(srcid, payload) }
			newFakeBackend(t, p, 2, 7, echo)
			c := dial(t, p, codec.Binary)
			const n = 40
			for i := range n {
				c.Send(int64(100+i), 7, fmt.Sprint("req", i))
			}
			c.Flush()
			for i := range n {
				a := recv(t, c)
				switch {
				case a.Type == codec.TypeReply && a.DestID == int64(100+i) && a.Payload == fmt.Sprint("req", i):
				case a.Type == codec.TypeError && a.DestID == int64(100+i) && a.Code == codec.CodeBackendUnavailable:
				default:
					t.Fatalf("request %d answered %+v", i, a)
				}
			}
			if got := p.Metrics().Snapshot().BadReplies; got == 0 {
				t.Fatal("no bad reply counted")
			}
		})
	}
}

// One reply too many, while a second client's request waits on the same
// data connection, must not reach the second client.
func TestExtraReplyDoesNotCrossClients(t *testing.T) {
	p := startProxy(t, Config{Loops: 1})
	second := make(chan struct{})
	rogue := newFakeBackend(t, p, 1, 7, nil)
	rogue.raw = func(n int, srcid int64, payload string) [][]byte {
		r := codec.AppendReply(nil, 1, srcid, payload)
		if n == 1 {
			<-second // the second client's request is on the link now
			return [][]byte{r, r}
		}
		return [][]byte{r}
	}
	a := dial(t, p, codec.Binary)
	b := dial(t, p, codec.Binary)
	a.Send(5, 7, "for A")
	a.Flush()
	waitFor(t, "first request at the backend", 2*time.Second, func() bool { return len(rogue.received()) >= 1 })
	b.Send(6, 7, "for B")
	b.Flush()
	waitFor(t, "second request in flight", 2*time.Second, func() bool { return p.Metrics().Snapshot().Inflight == 2 })
	close(second)
	if got := recv(t, a); got.Type != codec.TypeReply || got.DestID != 5 || got.Payload != "for A" {
		t.Fatalf("A got %+v", got)
	}
	got := recv(t, b)
	if got.Payload == "for A" || got.DestID != 6 {
		t.Fatalf("B got %+v: another client's reply", got)
	}
	if got.Type != codec.TypeReply && got.Code != codec.CodeBackendUnavailable {
		t.Fatalf("B got %+v", got)
	}
}

// A stalled backend (it stops answering, its process alive) leaves rotation
// once its data connection gives no reply for StallTimeout; the requests
// it held are retried on its healthy sibling, so no request waits out its
// timeout. Once it answers again, a probe readmits it.
func TestStalledBackendIsEjectedAndReadmitted(t *testing.T) {
	p := startProxy(t, Config{Loops: 1, Timeout: 3 * time.Second, StallTimeout: 200 * time.Millisecond,
		EjectTime: 300 * time.Millisecond})
	stall := make(chan struct{})
	var stalled atomic.Bool
	stalled.Store(true)
	slow := newFakeBackend(t, p, 1, 7, func(_ int, s string) (string, bool) {
		if stalled.Load() {
			<-stall
		}
		return s, true
	})
	newFakeBackend(t, p, 2, 7, echo)
	c := dial(t, p, codec.Binary)
	start := time.Now()
	const n = 200
	for i := range n {
		c.Send(int64(i), 7, fmt.Sprint(i))
		if i%20 == 19 {
			c.Flush()
			time.Sleep(10 * time.Millisecond)
		}
	}
	c.Flush()
	for i := range n {
		a := recv(t, c)
		if a.Type != codec.TypeReply || a.DestID != int64(i) || a.Payload != fmt.Sprint(i) {
			t.Fatalf("request %d answered %+v", i, a)
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("answers took %v: requests waited for their timeout", d)
	}
	s := p.Metrics().Snapshot()
	if s.Ejections != 1 || s.Stalls == 0 || s.Retries == 0 {
		t.Fatalf("ejections %d stalls %d retries %d; want 1 ejection after a stall, with retries", s.Ejections, s.Stalls, s.Retries)
	}
	if st := policyBackends(p, 7)[0].State; st != "ejected" {
		t.Fatalf("backend 1 state %q; want ejected", st)
	}
	// It answers again: after its ejection time one request probes it and
	// its reply readmits it.
	stalled.Store(false)
	close(stall)
	waitFor(t, "readmission", 5*time.Second, func() bool {
		a := roundTrip(t, c, 1, 7, "after")
		if a.Type != codec.TypeReply || a.Payload != "after" {
			t.Fatalf("answer %+v", a)
		}
		return p.Metrics().Snapshot().Readmitted == 1
	})
	before := len(slow.received())
	for range 10 {
		roundTrip(t, c, 1, 7, "rr")
	}
	if got := len(slow.received()) - before; got != 5 {
		t.Fatalf("readmitted backend got %d of 10 requests; want its round-robin share, 5", got)
	}
}

// The ejection cap: with one backend in a policy, a stall cannot eject it
// (that would empty the policy); its requests get their timeout.
func TestEjectionCapKeepsLastBackend(t *testing.T) {
	p := startProxy(t, Config{Loops: 1, Timeout: 400 * time.Millisecond, StallTimeout: 100 * time.Millisecond})
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	newFakeBackend(t, p, 1, 7, func(_ int, s string) (string, bool) { <-release; return s, true })
	c := dial(t, p, codec.Binary)
	if a := roundTrip(t, c, 5, 7, "x"); a.Code != codec.CodeTimeout {
		t.Fatalf("answer %+v; want timeout", a)
	}
	s := p.Metrics().Snapshot()
	if s.Ejections != 0 || s.Refused == 0 {
		t.Fatalf("ejections %d refused %d; want the cap to refuse", s.Ejections, s.Refused)
	}
}

// Retries are bounded by a budget, a share of the requests read, so that a
// failing backend cannot multiply the load on its siblings: past it, the
// failed requests are answered backend_unavailable.
func TestRetryBudget(t *testing.T) {
	p := startProxy(t, Config{Loops: 1, RetryBudget: 10, EjectAfter: -1, StallTimeout: -1})
	newFakeBackend(t, p, 1, 7, func(int, string) (string, bool) { return "", false }) // fails every request
	newFakeBackend(t, p, 2, 7, echo)
	c := dial(t, p, codec.Binary)
	const n = 1000
	start := time.Now()
	replies, unavailable := 0, 0
	for i := range n {
		c.Send(int64(i), 7, "x")
		if i%50 == 49 {
			c.Flush()
			for range 50 {
				switch a := recv(t, c); {
				case a.Type == codec.TypeReply:
					replies++
				case a.Code == codec.CodeBackendUnavailable:
					unavailable++
				default:
					t.Fatalf("answer %+v", a)
				}
			}
		}
	}
	s := p.Metrics().Snapshot()
	// Half the requests fail at backend 1; the budget allows 100 retries
	// to start with, 10% of the requests and 10 a second.
	limit := 100 + n/10 + int64(10*time.Since(start).Seconds()) + 1
	if s.Retries > limit || s.NoBudget == 0 {
		t.Fatalf("retries %d (limit %d), refused %d", s.Retries, limit, s.NoBudget)
	}
	if replies+unavailable != n || int64(replies) != n/2+s.Retries {
		t.Fatalf("%d replies, %d unavailable, %d retries for %d requests", replies, unavailable, s.Retries, n)
	}
	t.Logf("%d requests: %d retried, %d refused by the budget", n, s.Retries, s.NoBudget)
}

// Behind a stalled backend that cannot be ejected (the only one of its
// policy), a flood of large requests is held within MaxMemory: clients are
// slowed, and what they send past their cap is answered "overloaded" as
// whole error frames; every request gets exactly one answer, and another
// policy's requests keep being served.
func TestMemoryBoundedBehindStalledBackend(t *testing.T) {
	const maxMemory = 8 << 20
	p := startProxy(t, Config{Loops: 1, Timeout: time.Second, MaxMemory: maxMemory,
		MaxFrame: 64 << 10, MaxConnBuffer: 1 << 20})
	stall := make(chan struct{})
	t.Cleanup(func() { close(stall) })
	newFakeBackend(t, p, 1, 7, func(int, string) (string, bool) { <-stall; return "", false })
	newFakeBackend(t, p, 2, 8, echo)

	payload := strings.Repeat("p", 20<<10)
	const floods = 8
	var stop atomic.Bool
	type tally struct{ sent, answered, overloaded, timeout, other atomic.Int64 }
	tallies := make([]*tally, floods)
	var wg sync.WaitGroup
	for i := range floods {
		tl := &tally{}
		tallies[i] = tl
		c := dial(t, p, codec.Binary)
		wg.Add(1)
		go func() { // the writer: as fast as the proxy takes it
			defer wg.Done()
			for n := int64(0); !stop.Load(); n++ {
				if c.Send(n, 7, payload) != nil || c.Flush() != nil {
					return
				}
				tl.sent.Add(1)
			}
		}()
		go func() { // the reader
			var m codec.Message
			for c.Recv(&m) == nil {
				tl.answered.Add(1)
				switch m.Code {
				case codec.CodeOverloaded:
					tl.overloaded.Add(1)
				case codec.CodeTimeout:
					tl.timeout.Add(1)
				default:
					tl.other.Add(1)
				}
			}
		}()
	}
	other := dial(t, p, codec.Binary)
	var worst time.Duration
	var held int64
	for start := time.Now(); time.Since(start) < 3*time.Second; {
		t0 := time.Now()
		if a := roundTrip(t, other, 9, 8, "other"); a.Type != codec.TypeReply || a.Payload != "other" {
			t.Fatalf("the other policy's request answered %+v", a)
		}
		worst = max(worst, time.Since(t0))
		held = max(held, p.Metrics().Snapshot().Held)
		time.Sleep(20 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	var sent, overloaded, timeouts, others int64
	for _, tl := range tallies {
		waitFor(t, "an answer to every request", 10*time.Second, func() bool { return tl.answered.Load() == tl.sent.Load() })
		sent += tl.sent.Load()
		overloaded += tl.overloaded.Load()
		timeouts += tl.timeout.Load()
		others += tl.other.Load()
	}
	t.Logf("%d requests of 20 KiB: %d overloaded, %d timeout, %d other; most held %d KiB (cap %d KiB); other policy's slowest round trip %v",
		sent, overloaded, timeouts, others, held>>10, maxMemory>>10, worst)
	if held > maxMemory+(1<<20) {
		t.Fatalf("held %d bytes; cap %d", held, maxMemory)
	}
	if worst >= time.Second {
		t.Fatalf("the other policy waited %v: a request timeout", worst)
	}
}

// A client that shuts down its write side after its requests (nc -N)
// still gets every answer, then EOF: those the proxy had read, and those
// it had not read yet when the FIN came, because the client was over its
// in-flight cap (20 requests, a cap of 3).
func TestHalfCloseGetsEveryAnswer(t *testing.T) {
	const requestsSent = 20
	p := startProxy(t, Config{Loops: 1, MaxClientInflight: 3})
	newFakeBackend(t, p, 1, 7, upperSlowly)
	for _, framing := range []codec.Framing{codec.Text, codec.Binary} {
		t.Run(framing.String(), func(t *testing.T) {
			got := halfCloseExchange(t, p, requests(framing, requestsSent))
			sp := codec.Splitter{Framing: framing}
			var dec codec.Decoder
			var m codec.Message
			for i := range requestsSent {
				body, n, err := sp.Next(got)
				if err != nil {
					t.Fatalf("answer %d: %v (read %q)", i, err, got)
				}
				got = got[n:]
				if err := dec.Decode(body, &m); err != nil || m.Type != codec.TypeReply || m.DestID != int64(i) || m.Payload != fmt.Sprint("HI", i) {
					t.Fatalf("answer %d: %+v %v", i, m, err)
				}
			}
			// Counted while its tail wrote, not after.
			waitFor(t, "prism_connections back to the lease", 2*time.Second, func() bool { return p.Metrics().Snapshot().Conns == 1 })
		})
	}
}

// Connections that each send most of a large message and then nothing
// count toward the memory share: past it they are answered "overloaded"
// and closed, and the proxy keeps serving.
func TestPartialMessagesBoundedByMemory(t *testing.T) {
	const maxMemory = 4 << 20
	p := startProxy(t, Config{Loops: 1, MaxMemory: maxMemory, MaxFrame: 512 << 10})
	newFakeBackend(t, p, 1, 7, echo)
	var conns []net.Conn
	refused := 0
	for range 60 { // 60 × 200 KiB = 12 MiB, three times the share
		nc, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, nc)
		frame := make([]byte, 4+200<<10)
		frame[1] = 0x04 // announces 256 KiB
		copy(frame[4:], `{"type":0,"srcid":1,"privPoliId":7,"payloadsize":1,"payload":"`)
		if _, err := nc.Write(frame); err != nil {
			refused++
		}
	}
	defer func() {
		for _, nc := range conns {
			nc.Close()
		}
	}()
	waitFor(t, "the memory held back under the share", 5*time.Second, func() bool {
		return p.Metrics().Snapshot().Held <= maxMemory+(256<<10)
	})
	answered := 0
	for _, nc := range conns {
		nc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		buf := make([]byte, 4096)
		if n, _ := nc.Read(buf); n > 0 {
			if !strings.Contains(string(buf[:n]), codec.CodeOverloaded) {
				t.Fatalf("a partial message's connection got %q", buf[:n])
			}
			answered++
		}
	}
	if answered == 0 {
		t.Fatal("no connection was refused")
	}
	c := dial(t, p, codec.Binary)
	if a := roundTrip(t, c, 5, 7, "still serving"); a.Payload != "still serving" {
		t.Fatalf("a client after the flood got %+v", a)
	}
	t.Logf("%d connections holding 200 KiB each: %d answered overloaded, held %d KiB (share %d KiB)",
		len(conns), answered, p.Metrics().Snapshot().Held>>10, maxMemory>>10)
}

// A setup whose data address is the proxy's own would make requests loop
// through the proxy: it is refused, whether the proxy listens on one
// address or on all of them (0.0.0.0: a connection's local address is then
// the wildcard), and from whichever local address the lease comes.
func TestSetupOfProxyOwnAddressRefused(t *testing.T) {
	for _, listen := range []string{"127.0.0.1:0", "0.0.0.0:0"} {
		p := startProxy(t, Config{Loops: 1, Listen: listen})
		_, port, _ := net.SplitHostPort(p.Addr())
		var portN int
		fmt.Sscan(port, &portN)
		for _, from := range []string{"127.0.0.1", "127.0.0.5"} {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
			nc, err := d.Dial("tcp", net.JoinHostPort("127.0.0.1", port))
			if err != nil {
				t.Fatal(err)
			}
			c := client.New(nc, client.Options{})
			c.SendRaw(codec.AppendSetup(nil, 77, 77, portN, ""))
			c.Flush()
			nc.SetDeadline(time.Now().Add(5 * time.Second))
			var m codec.Message
			if err := c.Recv(&m); err != nil || m.Type != codec.TypeError || m.Code != codec.CodeBadRequest {
				t.Fatalf("proxy on %s: setup from %s at the proxy's own port answered %+v, %v; want bad_request", listen, from, m, err)
			}
			nc.Close()
			if bs := policyBackends(p, 77); len(bs) != 0 {
				t.Fatalf("proxy on %s: registered %+v", listen, bs)
			}
		}
	}
}

// A client whose stream breaks (a frame too large to take) right after
// valid requests, and that shuts down its write side in the same write,
// gets the answers of the valid requests, then the error, then EOF: the
// half-close path takes a connection that was closing as well.
func TestHalfCloseAfterFatalError(t *testing.T) {
	p := startProxy(t, Config{Loops: 1})
	newFakeBackend(t, p, 1, 7, upperSlowly)
	for _, framing := range []codec.Framing{codec.Text, codec.Binary} {
		t.Run(framing.String(), func(t *testing.T) {
			out := requests(framing, 5)
			if framing == codec.Binary {
				out = append(out, 0xff, 0xff, 0xff, 0xff) // a length past -max-frame
			} else {
				out = append(out, " xyz "...) // not a JSON object
			}
			got := halfCloseExchange(t, p, out)
			sp := codec.Splitter{Framing: framing}
			var dec codec.Decoder
			var m codec.Message
			for i := range 6 {
				body, n, err := sp.Next(got)
				if err != nil {
					t.Fatalf("answer %d: %v (read %q)", i, err, got)
				}
				got = got[n:]
				err = dec.Decode(body, &m)
				switch {
				case i < 5 && (err != nil || m.Type != codec.TypeReply || m.DestID != int64(i) || m.Payload != fmt.Sprint("HI", i)):
					t.Fatalf("answer %d: %+v %v; want the reply", i, m, err)
				case i == 5 && (err != nil || m.Type != codec.TypeError):
					t.Fatalf("answer %d: %+v %v; want the error", i, m, err)
				}
			}
		})
	}
}

// A client at its in-flight cap that sends tiny frames past its buffer
// cap, without reading: each refused frame is a call until its answer's
// turn (bytes cost less than calls here), so past shedCalls caps of calls
// the connection is answered overloaded once more and closed, instead of
// queueing a call per frame (5 MiB of 5-byte frames: 425,576 calls).
func TestShedBoundsCalls(t *testing.T) {
	const inflight = 4
	p := startProxy(t, Config{Loops: 1, MaxClientInflight: inflight, Timeout: 5 * time.Second})
	release := make(chan struct{})
	newFakeBackend(t, p, 1, 7, func(_ int, s string) (string, bool) { <-release; return s, true })
	nc, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := nc.Write(tinyFlood(inflight)); err != nil {
		t.Fatal(err)
	}
	// The client's queue, and whether it is closing.
	state := func() (int, bool) {
		q, _ := runOnLoops(context.Background(), p.p, func(l *loop) [2]int {
			var st [2]int // the client is the loop's one active connection
			for _, ic := range l.active {
				st[0] = ic.queue.Len()
				if ic.closing {
					st[1] = 1
				}
			}
			return st
		})
		return q[0][0], q[0][1] == 1
	}
	waitFor(t, "the connection to be closing", 5*time.Second, func() bool { _, c := state(); return c })
	if q, _ := state(); q > (shedCalls+1)*inflight {
		t.Fatalf("%d calls queued on one connection; want at most %d", q, (shedCalls+1)*inflight)
	}
	close(release)
	got, err := io.ReadAll(nc) // the answers, then the close
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if n := bytes.Count(got, []byte(`"type":2`)); n != inflight {
		t.Fatalf("%d replies; want %d", n, inflight)
	}
	t.Logf("%d replies, %d errors, then closed", inflight, bytes.Count(got, []byte(`"type":3`)))
}

// A client paused before its first message was parsed (its loop over its
// memory share when it first read) and that half-closes still gets its
// answers: it is taken for a client, though its role is not known yet.
func TestHalfCloseBeforeFirstMessageParsed(t *testing.T) {
	p := startProxy(t, Config{Loops: 1})
	newFakeBackend(t, p, 1, 7, echo)
	over := func(d int64) {
		runOnLoops(context.Background(), p.p, func(l *loop) int { l.held += d; return 0 })
	}
	over(1 << 40) // the loop parses no new request
	nc, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var out []byte
	for i := range 3 {
		out = codec.AppendFramed(out, codec.Binary, codec.AppendRequest(nil, int64(i), 7, "hi"))
	}
	nc.Write(out)
	waitFor(t, "the requests held unparsed", 2*time.Second, func() bool {
		n, _ := runOnLoops(context.Background(), p.p, func(l *loop) int { return len(l.paused) })
		return n[0] > 0
	})
	nc.(*net.TCPConn).CloseWrite()
	waitFor(t, "the FIN seen", 2*time.Second, func() bool {
		n, _ := runOnLoops(context.Background(), p.p, func(l *loop) int { return len(l.conns) })
		return n[0] <= 1 // the lease: the client's connection is closed, its tail writes
	})
	over(-1 << 40)
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(nc)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if n := bytes.Count(got, []byte(`"type":2`)); n != 3 {
		t.Fatalf("%d replies to the 3 requests sent before the FIN (read %q)", n, got)
	}
}

// upperSlowly is a fake backend's handler that answers 20 ms late (after
// the FIN of a test client that half-closes at once), upper-cased.
func upperSlowly(_ int, s string) (string, bool) {
	time.Sleep(20 * time.Millisecond)
	return strings.ToUpper(s), true
}

// halfCloseExchange sends out to p in one write, shuts down the write side,
// and returns what came back until the proxy closed the connection.
func halfCloseExchange(t *testing.T, p *Proxy, out []byte) []byte {
	t.Helper()
	nc, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := nc.Write(out); err != nil {
		t.Fatal(err)
	}
	nc.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(nc) // until the proxy closes
	if err != nil {
		t.Fatalf("read: %v (%d answers before)", err, bytes.Count(got, []byte(`"type":2`)))
	}
	return got
}

// requests frames n requests of policy 7, srcid i and payload "hi<i>".
func requests(framing codec.Framing, n int) []byte {
	var out []byte
	for i := range n {
		out = codec.AppendFramed(out, framing, codec.AppendRequest(nil, int64(i), 7, fmt.Sprint("hi", i)))
	}
	return out
}

// tinyFlood is n requests of policy 7 ("held"), then 5-byte frames up to
// 5 MiB: a client far past its in-flight cap and its buffer cap.
func tinyFlood(n int) []byte {
	var out []byte
	for i := range n {
		out = codec.AppendFramed(out, codec.Binary, codec.AppendRequest(nil, int64(i), 7, "held"))
	}
	frame := codec.AppendFramed(nil, codec.Binary, []byte("x"))
	for len(out) < 5<<20 {
		out = append(out, frame...)
	}
	return out
}
