package server

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/prism-proxy/prism/backend"
	"github.com/prism-proxy/prism/client"
	"github.com/prism-proxy/prism/codec"
)

func TestRoundTripFramings(t *testing.T) {
	for _, bf := range []codec.Framing{codec.Binary, codec.Text} {
		for _, cf := range []codec.Framing{codec.Binary, codec.Text} {
			t.Run(fmt.Sprintf("backend_%v/client_%v", bf, cf), func(t *testing.T) {
				p := startProxy(t, Config{})
				startBackend(t, p, 1, 7, backend.Upper, bf)
				c := dial(t, p, cf)
				for _, payload := range []string{"hello", "h\u00e9 \"quoted\" {braces}", ""} {
					a := roundTrip(t, c, 42, 7, payload)
					if a.Type != codec.TypeReply || a.SrcID != 1 || a.DestID != 42 || a.Payload != strings.ToUpper(payload) {
						t.Fatalf("answer %+v; want reply from 1 to 42 with %q", a, strings.ToUpper(payload))
					}
				}
			})
		}
	}
}

func TestRoundRobinExact(t *testing.T) {
	p := startProxy(t, Config{})
	bs := []*backend.Server{
		startBackend(t, p, 1, 7, backend.Echo, codec.Binary),
		startBackend(t, p, 2, 7, backend.Echo, codec.Text),
		startBackend(t, p, 3, 7, backend.Echo, codec.Binary),
	}
	// Several clients (spread over both loops) share the policy's counter.
	var wg sync.WaitGroup
	for i := range 4 {
		c := dial(t, p, codec.Binary)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 30 {
				c.Send(int64(i), 7, fmt.Sprint(j))
			}
			c.Flush()
			var m codec.Message
			for range 30 {
				if err := c.Recv(&m); err != nil || m.Type != codec.TypeReply {
					t.Errorf("answer %+v, %v", m, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, b := range bs {
		if got := b.Served(); got != 40 {
			t.Errorf("backend %d served %d; want 40", b.ID(), got)
		}
	}
}

func TestIsolationUnderLoad(t *testing.T) {
	p := startProxy(t, Config{})
	policyOf := map[int64]int64{}
	for id := int64(1); id <= 6; id++ {
		policy := 10 + (id-1)/2
		startBackend(t, p, id, policy, backend.Echo, codec.Binary)
		policyOf[id] = policy
	}
	var wg sync.WaitGroup
	for cid := range int64(8) {
		c := dial(t, p, codec.Binary)
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(cid), 1))
			const n = 400
			sent := make([]int64, n)
			go func() {
				for i := range n {
					sent[i] = 10 + rng.Int64N(4) // policy 13 has no backend
					c.Send(cid, sent[i], fmt.Sprint(i))
				}
				c.Flush()
			}()
			var m codec.Message
			for i := range n {
				if err := c.Recv(&m); err != nil {
					t.Error(err)
					return
				}
				switch {
				case sent[i] == 13:
					if m.Type != codec.TypeError || m.Code != codec.CodeNoBackend || m.DestID != cid {
						t.Errorf("policy 13: %+v; want no_backend to %d", m, cid)
					}
				case m.Type != codec.TypeReply || policyOf[m.SrcID] != sent[i] || m.Payload != fmt.Sprint(i) || m.DestID != cid:
					t.Errorf("request %d of policy %d answered by %+v", i, sent[i], m)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestPipelinedOrderAcrossSlowAndFastBackends(t *testing.T) {
	p := startProxy(t, Config{Loops: 1})
	newFakeBackend(t, p, 1, 7, func(_ int, s string) (string, bool) {
		time.Sleep(2 * time.Millisecond)
		return s, true
	})
	newFakeBackend(t, p, 2, 7, echo)
	c := dial(t, p, codec.Binary)
	const n = 300
	for i := range n {
		c.Send(9, 7, fmt.Sprint(i))
	}
	c.Flush()
	for i := range n {
		if a := recv(t, c); a.Payload != fmt.Sprint(i) {
			t.Fatalf("answer %d is %+v", i, a)
		}
	}
}

func TestTimeoutKeepsMatching(t *testing.T) {
	p := startProxy(t, Config{Loops: 1, Timeout: 200 * time.Millisecond})
	release := make(chan struct{})
	newFakeBackend(t, p, 1, 7, func(n int, s string) (string, bool) {
		if n == 1 {
			<-release // the first request stalls past its timeout
		}
		return "re:" + s, true
	})
	c := dial(t, p, codec.Binary)
	start := time.Now()
	if a := roundTrip(t, c, 5, 7, "slow"); a.Type != codec.TypeError || a.Code != codec.CodeTimeout || a.DestID != 5 {
		t.Fatalf("stalled request answered %+v; want timeout", a)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("timeout came after %v", d)
	}
	close(release)
	// The late reply to "slow" must be discarded, not handed to "next".
	if a := roundTrip(t, c, 5, 7, "next"); a.Type != codec.TypeReply || a.Payload != "re:next" {
		t.Fatalf("request after a timeout answered %+v; want re:next", a)
	}
	waitFor(t, "late reply counted", time.Second, func() bool { return p.Metrics().Snapshot().Late == 1 })
}

func TestRetryOnAnotherBackend(t *testing.T) {
	for _, tt := range []struct {
		name    string
		retries int
		code    string
	}{
		{"default retries", 0, ""},
		{"no retries", NoRetries, codec.CodeBackendUnavailable},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := startProxy(t, Config{Loops: 1, Retries: tt.retries})
			dying := newFakeBackend(t, p, 1, 7, func(int, string) (string, bool) { return "", false })
			newFakeBackend(t, p, 2, 7, echo)
			c := dial(t, p, codec.Binary)
			a := roundTrip(t, c, 5, 7, "x") // round robin starts at backend 1
			if len(dying.received()) != 1 {
				t.Fatalf("backend 1 got %v", dying.received())
			}
			if tt.code == "" && (a.Type != codec.TypeReply || a.SrcID != 2) {
				t.Fatalf("answer %+v; want a retried reply from 2", a)
			}
			if tt.code != "" && a.Code != tt.code {
				t.Fatalf("answer %+v; want %s", a, tt.code)
			}
		})
	}
}

func TestUnreachableBackend(t *testing.T) {
	p := startProxy(t, Config{Loops: 1})
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close() // nobody listens on port: dials are refused
	fb := &fakeBackend{t: t, id: 1}
	fb.register(p, 7, port)
	t.Cleanup(fb.unregister)
	c := dial(t, p, codec.Binary)
	if a := roundTrip(t, c, 5, 7, "x"); a.Code != codec.CodeBackendUnavailable {
		t.Fatalf("answer %+v; want backend_unavailable", a)
	}
	// With a healthy backend beside it, requests go there.
	newFakeBackend(t, p, 2, 7, echo)
	for range 4 {
		if a := roundTrip(t, c, 5, 7, "y"); a.Type != codec.TypeReply || a.SrcID != 2 {
			t.Fatalf("answer %+v; want reply from 2", a)
		}
	}
}

func TestRegisterToken(t *testing.T) {
	p := startProxy(t, Config{RegisterToken: "s3cret"})
	for _, tt := range []struct {
		token string
		want  int64
	}{{"", codec.TypeError}, {"wrong", codec.TypeError}, {"s3cret", codec.TypeAck}} {
		nc, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		c := client.New(nc, client.Options{})
		c.SendRaw(codec.AppendSetup(nil, 1, 7, 9999, tt.token))
		c.Flush()
		var m codec.Message
		nc.SetDeadline(time.Now().Add(5 * time.Second))
		if err := c.Recv(&m); err != nil || m.Type != tt.want {
			t.Fatalf("token %q: %+v %v; want type %d", tt.token, m, err, tt.want)
		}
		if m.Type == codec.TypeError && m.Code != codec.CodeUnauthorized {
			t.Fatalf("token %q: code %q", tt.token, m.Code)
		}
		nc.Close()
	}
}

func TestLeaseAndReregistration(t *testing.T) {
	p := startProxy(t, Config{Loops: 1})
	a := newFakeBackend(t, p, 1, 7, func(_ int, s string) (string, bool) { return "a", true })
	b := newFakeBackend(t, p, 2, 7, func(_ int, s string) (string, bool) { return "b", true })
	c := dial(t, p, codec.Binary)
	a.unregister()
	waitFor(t, "lease close", 2*time.Second, func() bool { return len(policyBackends(p, 7)) == 1 })
	for range 4 {
		if r := roundTrip(t, c, 1, 7, "x"); r.Payload != "b" {
			t.Fatalf("after backend 1 left: %+v", r)
		}
	}
	// Same id again: the new registration replaces the old one.
	b2 := newFakeBackend(t, p, 2, 7, func(_ int, s string) (string, bool) { return "b2", true })
	for range 4 {
		if r := roundTrip(t, c, 1, 7, "x"); r.Payload != "b2" {
			t.Fatalf("after re-registration: %+v", r)
		}
	}
	// The old lease closing does not remove the new registration.
	b.unregister()
	time.Sleep(50 * time.Millisecond) // give a wrong removal the chance to happen
	if r := roundTrip(t, c, 1, 7, "x"); r.Payload != "b2" {
		t.Fatalf("after the replaced lease closed: %+v", r)
	}
	b2.unregister()
	waitFor(t, "last lease close", 2*time.Second, func() bool { return len(policyBackends(p, 7)) == 0 })
	if r := roundTrip(t, c, 1, 7, "x"); r.Code != codec.CodeNoBackend {
		t.Fatalf("with no backend: %+v", r)
	}
}

func TestBadInput(t *testing.T) {
	p := startProxy(t, Config{MaxFrame: 1024})
	startBackend(t, p, 1, 7, backend.Echo, codec.Binary)
	t.Run("bad request keeps binary connection", func(t *testing.T) {
		c := dial(t, p, codec.Binary)
		for _, body := range []string{`{"type":0,"srcid":5,`, `[1]`, `{"type":0,"srcid":5,"privPoliId":7,"payloadsize":2,"payload":"x"}`, `{"type":2}`} {
			c.SendRaw([]byte(body))
			c.Flush()
			if a := recv(t, c); a.Code != codec.CodeBadRequest {
				t.Fatalf("%s answered %+v", body, a)
			}
		}
		if a := roundTrip(t, c, 5, 7, "ok"); a.Type != codec.TypeReply {
			t.Fatalf("after bad requests: %+v", a)
		}
	})
	t.Run("too large closes", func(t *testing.T) {
		nc, _ := net.Dial("tcp", p.Addr())
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(5 * time.Second))
		var hdr [4]byte
		binary.BigEndian.PutUint32(hdr[:], 4096)
		nc.Write(hdr[:])
		c := client.New(nc, client.Options{})
		if a := recv(t, c); a.Code != codec.CodeTooLarge {
			t.Fatalf("answer %+v; want too_large", a)
		}
		if _, err := c.RecvRaw(); err == nil {
			t.Fatal("connection still open after too_large")
		}
	})
	t.Run("broken text closes after answering earlier requests", func(t *testing.T) {
		nc, _ := net.Dial("tcp", p.Addr())
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(5 * time.Second))
		good := codec.AppendRequest(nil, 3, 7, "first")
		nc.Write(append(append(good, '\n'), "garbage\n"...))
		c := client.New(nc, client.Options{Framing: codec.Text})
		if a := recv(t, c); a.Payload != "first" {
			t.Fatalf("first answer %+v", a)
		}
		if a := recv(t, c); a.Code != codec.CodeBadRequest {
			t.Fatalf("garbage answered %+v", a)
		}
		if _, err := c.RecvRaw(); err == nil {
			t.Fatal("connection still open after unframeable text")
		}
	})
}

// A client that sends far more than the in-flight cap to a stalled backend
// is read only up to the cap; every request is still answered, and other
// clients are served meanwhile.
func TestInflightCapWithStalledBackend(t *testing.T) {
	p := startProxy(t, Config{Loops: 1, Timeout: 300 * time.Millisecond, MaxClientInflight: 4})
	stall := make(chan struct{})
	t.Cleanup(func() { close(stall) })
	stalled := newFakeBackend(t, p, 1, 7, func(int, string) (string, bool) { <-stall; return "", false })
	newFakeBackend(t, p, 2, 8, echo)
	c := dial(t, p, codec.Binary)
	const n = 12
	for i := range n {
		c.Send(5, 7, fmt.Sprint(i))
	}
	c.Flush()
	other := dial(t, p, codec.Binary)
	if a := roundTrip(t, other, 6, 8, "fine"); a.Payload != "fine" {
		t.Fatalf("other client: %+v", a)
	}
	if s := p.Metrics().Snapshot(); s.Requests > 4+1 {
		t.Fatalf("proxy read %d requests; want at most the cap of 4 (+1 of the other client)", s.Requests)
	}
	for i := range n {
		// The link is closed once its oldest request waited twice the
		// timeout: the requests then on it are answered at once.
		if a := recv(t, c); a.Code != codec.CodeTimeout && (i < 4 || a.Code != codec.CodeBackendUnavailable) {
			t.Fatalf("answer %d: %+v; want timeout", i, a)
		}
	}
	_ = stalled
}

// A client that never reads its replies is closed once its unsent replies
// pass MaxConnBuffer; the proxy's memory for it stays bounded.
func TestSlowReaderIsClosed(t *testing.T) {
	p := startProxy(t, Config{Loops: 1, MaxFrame: 64 << 10, MaxConnBuffer: 256 << 10})
	startBackend(t, p, 1, 7, backend.Echo, codec.Binary)
	nc, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.(*net.TCPConn).SetReadBuffer(4096)
	payload := strings.Repeat("x", 60<<10)
	frame := codec.AppendFramed(nil, codec.Binary, codec.AppendRequest(nil, 1, 7, payload))
	nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	go func() { // keep sending, never read: a write fails once the proxy closes us
		for {
			if _, err := nc.Write(frame); err != nil {
				return
			}
		}
	}()
	waitFor(t, "the proxy to close the slow reader", 10*time.Second, func() bool {
		return p.Metrics().Snapshot().Conns <= 1 // the backend's lease
	})
	other := dial(t, p, codec.Binary)
	if a := roundTrip(t, other, 2, 7, "still serving"); a.Payload != "still serving" {
		t.Fatalf("other client: %+v", a)
	}
}

func TestGracefulShutdown(t *testing.T) {
	p := startProxy(t, Config{Loops: 1})
	newFakeBackend(t, p, 1, 7, func(_ int, s string) (string, bool) {
		time.Sleep(100 * time.Millisecond)
		return s, true
	})
	c := dial(t, p, codec.Binary)
	for i := range 3 {
		c.Send(5, 7, fmt.Sprint(i))
	}
	c.Flush()
	waitFor(t, "requests in flight", time.Second, func() bool { return p.Metrics().Snapshot().Inflight == 3 })
	done := make(chan error, 1)
	go func() { done <- p.Shutdown(context.Background()) }()
	waitFor(t, "draining", time.Second, func() bool { return p.p.draining.Load() })
	c.Send(5, 7, "late")
	c.Flush()
	for i := range 3 {
		if a := recv(t, c); a.Payload != fmt.Sprint(i) {
			t.Fatalf("in-flight request %d answered %+v", i, a)
		}
	}
	if a := recv(t, c); a.Code != codec.CodeShuttingDown {
		t.Fatalf("request during drain answered %+v", a)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := c.RecvRaw(); err != io.EOF && err != io.ErrUnexpectedEOF && !isClosedErr(err) {
		t.Fatalf("after shutdown: %v", err)
	}
}

func isClosedErr(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "reset") || strings.Contains(err.Error(), "closed"))
}

// With every backend of the policy under pressure, a client is read no
// faster than the backend answers, and nothing is refused.
func TestBackendPressureBlocksClient(t *testing.T) {
	p := startProxy(t, Config{Loops: 1, MaxBackendInflight: 2})
	var peak atomic.Int64 // requests the proxy has read and not answered
	newFakeBackend(t, p, 1, 7, func(_ int, s string) (string, bool) {
		if n := p.Metrics().Snapshot().Inflight; n > peak.Load() {
			peak.Store(n)
		}
		time.Sleep(time.Millisecond)
		return s, true
	})
	c := dial(t, p, codec.Binary)
	const n = 60
	for i := range n {
		c.Send(5, 7, fmt.Sprint(i))
	}
	c.Flush()
	for i := range n {
		if a := recv(t, c); a.Type != codec.TypeReply || a.Payload != fmt.Sprint(i) {
			t.Fatalf("answer %d: %+v", i, a)
		}
	}
	if s := p.Metrics().Snapshot(); s.Errors[codec.CodeOverloaded] != 0 {
		t.Fatalf("%d requests refused as overloaded", s.Errors[codec.CodeOverloaded])
	}
	// The link takes 2, plus the one that found it full and blocked the client.
	if got := peak.Load(); got > 3 {
		t.Fatalf("the proxy read %d requests ahead of the backend; want at most 3", got)
	}
}

// A backend that stops answering does not hold its clients' later requests
// past the timeout: they are refused once the oldest request timed out.
func TestStalledBackendRefusesFast(t *testing.T) {
	p := startProxy(t, Config{Loops: 1, MaxBackendInflight: 2, Timeout: 200 * time.Millisecond})
	stall := make(chan struct{})
	t.Cleanup(func() { close(stall) })
	newFakeBackend(t, p, 1, 7, func(int, string) (string, bool) { <-stall; return "", false })
	c := dial(t, p, codec.Binary)
	const n = 20
	start := time.Now()
	for i := range n {
		c.Send(5, 7, fmt.Sprint(i))
	}
	c.Flush()
	codes := map[string]int{}
	for range n {
		a := recv(t, c)
		codes[a.Code]++
	}
	if codes[codec.CodeTimeout] == 0 || codes[codec.CodeTimeout]+codes[codec.CodeOverloaded] != n {
		t.Fatalf("answers by code %v; want timeouts, then overloaded", codes)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("answers took %v", d)
	}
}

// A backend that stops reading fills its socket; the requests behind stay
// in the proxy's queue (not copied into gnet's buffer) and go out once the
// backend reads again, in order, none lost.
func TestBackendSocketFullHoldsRequests(t *testing.T) {
	p := startProxy(t, Config{Loops: 1, MaxFrame: 64 << 10})
	gate := make(chan struct{})
	var once sync.Once
	open := func() { once.Do(func() { close(gate) }) }
	t.Cleanup(open)
	newFakeBackend(t, p, 1, 7, func(_ int, s string) (string, bool) { <-gate; return s, true })
	const clients, each = 4, 48
	payload := strings.Repeat("p", 32<<10) // 4×48×32 KiB = 6 MiB: more than loopback buffers hold
	cs := make([]*client.Conn, clients)
	for i := range cs {
		cs[i] = dial(t, p, codec.Binary)
		for j := range each {
			cs[i].Send(int64(i), 7, fmt.Sprint(j)+payload)
		}
		go cs[i].Flush()
	}
	var held, buffered int
	waitFor(t, "requests held back by the full socket", 10*time.Second, func() bool {
		onLoops(t, p, func(l *loop) {
			for _, lk := range l.links {
				if lk.gc != nil {
					held, buffered = lk.unsentBytes, lk.gc.OutboundBuffered()
				}
			}
		})
		return held > 0
	})
	if buffered > chunkSize {
		t.Fatalf("gnet buffers %d bytes for the link; want at most one chunk", buffered)
	}
	open()
	for i, c := range cs {
		for j := range each {
			if a := recv(t, c); a.Type != codec.TypeReply || a.Payload != fmt.Sprint(j)+payload {
				t.Fatalf("client %d answer %d: %+v", i, j, a.Code)
			}
		}
	}
}

// onLoops runs f on each event loop, in the loop, and waits for it.
func onLoops(t testing.TB, p *Proxy, f func(*loop)) {
	t.Helper()
	p.p.mu.Lock()
	loops := append([]*loop(nil), p.p.list...)
	p.p.mu.Unlock()
	for _, l := range loops {
		done := make(chan struct{})
		err := l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			f(l)
			close(done)
			return nil
		}))
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("event loop did not run the task")
		}
	}
}

// Requests of every size, some larger than a link chunk, through a binary
// and a text backend, one of whose data connections dies midway: every
// answer comes back intact and in order, and the links' chunks are all
// recycled afterwards.
func TestChunksMixedSizesAndFailure(t *testing.T) {
	p := startProxy(t, Config{Loops: 1})
	newFakeBackend(t, p, 1, 7, func(n int, s string) (string, bool) { return s, n != 40 })
	startBackend(t, p, 2, 7, backend.Echo, codec.Text)
	const clients, each = 4, 60
	rng := rand.New(rand.NewPCG(1, 2))
	payloads := make([][]string, clients)
	for i := range payloads {
		for j := range each {
			size := 1 + rng.IntN(3000)
			if rng.IntN(10) == 0 {
				size = chunkSize + rng.IntN(chunkSize/2) // a chunk of its own
			}
			payloads[i] = append(payloads[i], fmt.Sprintf("%d/%d/", i, j)+strings.Repeat(string(rune('a'+j%26)), size))
		}
	}
	var wg sync.WaitGroup
	for i := range clients {
		c := dial(t, p, codec.Binary)
		go func() {
			for _, s := range payloads[i] {
				c.Send(int64(i), 7, s)
			}
			c.Flush()
		}()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j, want := range payloads[i] {
				var m codec.Message
				if err := c.Recv(&m); err != nil {
					t.Errorf("client %d answer %d: %v", i, j, err)
					return
				}
				if m.Type != codec.TypeReply || m.Payload != want {
					t.Errorf("client %d answer %d: type %d code %q, %d bytes", i, j, m.Type, m.Code, len(m.Payload))
					return
				}
			}
		}()
	}
	wg.Wait()
	if s := p.Metrics().Snapshot(); s.Retries == 0 {
		t.Errorf("no request was retried: the failure did not happen mid-stream (%+v)", s)
	}
	onLoops(t, p, func(l *loop) {
		for _, lk := range l.links {
			if lk.fifo.Len() != 0 || lk.unsentBytes != 0 || lk.chunks.Len() > 1 {
				t.Errorf("link to %d after the load: %d calls, %d bytes unsent, %d chunks",
					lk.backend.ID, lk.fifo.Len(), lk.unsentBytes, lk.chunks.Len())
			}
			for i := 0; i < lk.chunks.Len(); i++ {
				if ch := lk.chunks.At(i); ch.live != 0 {
					t.Errorf("link to %d: a chunk still counts %d calls", lk.backend.ID, ch.live)
				}
			}
		}
		if len(l.chunks) > maxFreeChunks {
			t.Errorf("loop keeps %d free chunks", len(l.chunks))
		}
	})
}

// A request read just before Shutdown is answered before the engine stops,
// even when the loop published its counters a moment before reading it.
func TestShutdownSeesRequestJustRead(t *testing.T) {
	for round := range 5 {
		p := startProxy(t, Config{Loops: 1, Timeout: 10 * time.Second})
		got := make(chan struct{}, 1)
		newFakeBackend(t, p, 1, 7, func(n int, s string) (string, bool) {
			if n > 1 {
				got <- struct{}{}
				time.Sleep(100 * time.Millisecond) // a slow answer
			}
			return s, true
		})
		c := dial(t, p, codec.Binary)
		if a := roundTrip(t, c, 1, 7, "warm"); a.Type != codec.TypeReply {
			t.Fatalf("warm-up: %+v", a)
		}
		// What a busy loop does every millisecond: publish, then read more.
		onLoops(t, p, func(l *loop) { l.metrics.publish(l.clock()) })
		c.Send(2, 7, "slow")
		c.Flush()
		<-got // the proxy has read and forwarded it
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		p.Shutdown(ctx)
		cancel()
		if a := recv(t, c); a.Type != codec.TypeReply || a.Payload != "slow" {
			t.Fatalf("round %d: the request in flight at Shutdown was answered %+v", round, a)
		}
	}
}

func TestLifecycleMisuse(t *testing.T) {
	p, err := New(Config{Listen: "127.0.0.1:0", Loops: 1, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown before Start: %v", err)
	}
	if err := p.Start(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Start after Shutdown: %v; want ErrClosed", err)
	}

	p = startProxy(t, Config{Loops: 1})
	if err := p.Start(); !errors.Is(err, ErrStarted) {
		t.Fatalf("Start twice: %v; want ErrStarted", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p.Shutdown(ctx) // an ended context: returns at once, the engine still stops
	select {
	case <-p.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("proxy did not stop after Shutdown with an ended context")
	}
}
