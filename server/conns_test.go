package server

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/prism-proxy/prism/client"
	"github.com/prism-proxy/prism/codec"
)

// closedByPeer reports whether nc's peer closed it, waiting up to d.
func closedByPeer(nc net.Conn, d time.Duration) bool {
	nc.SetReadDeadline(time.Now().Add(d))
	var b [64]byte
	for {
		_, err := nc.Read(b[:])
		if err == nil {
			continue
		}
		var ne net.Error
		return !(errors.As(err, &ne) && ne.Timeout())
	}
}

func rawDial(t testing.TB, p *Proxy) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc
}

// At the cap, new connections are closed at once; the open ones are still
// served, and once one closes a new one gets in.
func TestMaxConns(t *testing.T) {
	p := startProxy(t, Config{MaxConns: 4, IdleTimeout: -1})
	newFakeBackend(t, p, 1, 7, echo) // its lease is one of the four
	var clients []*client.Conn
	for i := range 3 {
		c := dial(t, p, codec.Binary)
		if a := roundTrip(t, c, int64(i), 7, "in"); a.Payload != "in" {
			t.Fatalf("client %d: %+v", i, a)
		}
		clients = append(clients, c)
	}
	extra := rawDial(t, p)
	if !closedByPeer(extra, 5*time.Second) {
		t.Fatal("connection over the cap not closed")
	}
	waitFor(t, "refusal counted", 2*time.Second, func() bool { return p.Metrics().Snapshot().ConnsRefused == 1 })
	for i, c := range clients {
		if a := roundTrip(t, c, int64(i), 7, "still"); a.Payload != "still" {
			t.Fatalf("client %d after the refusal: %+v", i, a)
		}
	}
	clients[0].Close()
	waitFor(t, "a slot freed", 2*time.Second, func() bool { return p.Metrics().Snapshot().Conns == 3 })
	c := dial(t, p, codec.Binary)
	if a := roundTrip(t, c, 9, 7, "new"); a.Payload != "new" {
		t.Fatalf("new client: %+v", a)
	}
}

func TestMaxConnsOverLimitRefused(t *testing.T) {
	_, most := connBudget(openFilesLimit(), 2)
	if _, err := New(Config{Loops: 2, MaxConns: most + 1}); err == nil {
		t.Fatalf("MaxConns %d over the budget accepted", most+1)
	}
	if _, err := New(Config{Loops: 2, MaxConns: most}); err != nil {
		t.Fatalf("MaxConns at the budget: %v", err)
	}
}

func TestConnBudget(t *testing.T) {
	for _, tt := range []struct {
		name              string
		limit, loops      int
		wantDef, wantMost int
	}{
		{"256, 2 loops", 256, 2, 150, 168},
		{"20000, 2 loops", 20000, 2, 14958, 18678},
		{"1024, 8 loops", 1024, 8, 708, 816},
		{"too low", 40, 2, -48, -48},
	} {
		t.Run(tt.name, func(t *testing.T) {
			def, most := connBudget(tt.limit, tt.loops)
			if def != tt.wantDef || most != tt.wantMost {
				t.Fatalf("got %d, %d; want %d, %d", def, most, tt.wantDef, tt.wantMost)
			}
			if tt.limit > 64 && def+fdFixed(tt.loops)+acceptMargin(tt.limit) > tt.limit {
				t.Fatalf("default %d leaves no accept margin under %d", def, tt.limit)
			}
			if most > 0 && linkBudget(tt.limit, tt.loops, most) != int64(linkMin(tt.loops)) {
				t.Fatalf("at the largest cap links get %d descriptors; want %d", linkBudget(tt.limit, tt.loops, most), linkMin(tt.loops))
			}
		})
	}
}

// An idle client is closed after IdleTimeout; one with a request in flight
// is not, nor is a lease.
func TestIdleTimeout(t *testing.T) {
	const idle = 300 * time.Millisecond
	p := startProxy(t, Config{IdleTimeout: idle, Timeout: 5 * time.Second})
	release := make(chan struct{})
	slow := newFakeBackend(t, p, 1, 8, func(_ int, s string) (string, bool) { <-release; return s, true })
	newFakeBackend(t, p, 2, 7, echo)

	idleConn := rawDial(t, p)
	busy := dial(t, p, codec.Binary)
	busy.Send(5, 8, "slow")
	busy.Flush()
	waitFor(t, "request at the backend", 2*time.Second, func() bool { return len(slow.received()) == 1 })

	start := time.Now()
	if !closedByPeer(idleConn, 5*time.Second) {
		t.Fatal("idle connection not closed")
	}
	if d := time.Since(start); d < idle/2 {
		t.Fatalf("closed after %v; want about %v", d, idle)
	}
	time.Sleep(3 * idle) // the busy client and the leases outlive several timeouts
	close(release)
	if a := recv(t, busy); a.Type != codec.TypeReply || a.Payload != "slow" {
		t.Fatalf("busy client got %+v", a)
	}
	if got := len(policyBackends(p, 7)) + len(policyBackends(p, 8)); got != 2 {
		t.Fatalf("%d backends in rotation; want 2: a lease was closed as idle", got)
	}
	c := dial(t, p, codec.Binary)
	if a := roundTrip(t, c, 1, 7, "x"); a.Payload != "x" {
		t.Fatalf("after the idle period: %+v", a)
	}
	if s := p.Metrics().Snapshot(); s.IdleClosed < 1 {
		t.Fatalf("idle closes %d; want at least 1", s.IdleClosed)
	}
}

// A connection that holds a partial message past FrameTimeout gets
// bad_request after the answers already due, and is closed; a client that
// sends a whole message in pieces within the deadline, and a text client
// that leaves a newline buffered, are not.
func TestFrameTimeout(t *testing.T) {
	const frame = 300 * time.Millisecond
	p := startProxy(t, Config{FrameTimeout: frame, IdleTimeout: -1})
	newFakeBackend(t, p, 1, 7, echo)

	t.Run("binary slowloris", func(t *testing.T) {
		nc := rawDial(t, p)
		whole := codec.AppendFramed(nil, codec.Binary, codec.AppendRequest(nil, 3, 7, "first"))
		part := codec.AppendFramed(nil, codec.Binary, codec.AppendRequest(nil, 4, 7, "second"))
		nc.Write(append(whole, part[:10]...))
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		for i, want := range []struct {
			typ  int64
			code string
		}{{codec.TypeReply, ""}, {codec.TypeError, codec.CodeBadRequest}} {
			m := readBinary(t, nc)
			if m.Type != want.typ || string(m.Code) != want.code {
				t.Fatalf("answer %d: %+v; want type %d code %q", i, m, want.typ, want.code)
			}
		}
		if !closedByPeer(nc, 5*time.Second) {
			t.Fatal("slowloris not closed")
		}
	})
	t.Run("text slowloris", func(t *testing.T) {
		nc := rawDial(t, p)
		nc.Write([]byte(`{"type":0,"srcid":1,`))
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, err := io.ReadAll(nc)
		if err != nil {
			t.Fatal(err)
		}
		var m codec.Message
		var d codec.Decoder
		if err := d.Decode(line[:len(line)-1], &m); err != nil || m.Type != codec.TypeError || string(m.Code) != codec.CodeBadRequest {
			t.Fatalf("got %q (%v); want one bad_request line", line, err)
		}
	})
	t.Run("slow but in time, and a trailing newline", func(t *testing.T) {
		nc := rawDial(t, p)
		msg := append(codec.AppendRequest(nil, 5, 7, "pieces"), '\n')
		for i := 0; i < len(msg); i += 8 { // whole within the deadline, over several scans
			nc.Write(msg[i:min(i+8, len(msg))])
			time.Sleep(frame / 16)
		}
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 4096)
		n, err := nc.Read(buf)
		if err != nil || !json7(buf[:n]) {
			t.Fatalf("got %q %v", buf[:n], err)
		}
		if closedByPeer(nc, 3*frame) { // the '\n' left buffered is no partial message
			t.Fatal("closed with only whitespace buffered")
		}
	})
	if s := p.Metrics().Snapshot(); s.SlowFrames != 2 {
		t.Fatalf("slow frames %d; want 2", s.SlowFrames)
	}
}

func json7(b []byte) bool {
	var m codec.Message
	var d codec.Decoder
	return len(b) > 1 && d.Decode(b[:len(b)-1], &m) == nil && m.Type == codec.TypeReply
}

// A lease is not idle, but a partial message on it is timed out too.
func TestLeaseFrameTimeout(t *testing.T) {
	p := startProxy(t, Config{FrameTimeout: 200 * time.Millisecond, IdleTimeout: 100 * time.Millisecond})
	fb := newFakeBackend(t, p, 1, 7, echo)
	time.Sleep(500 * time.Millisecond) // several idle timeouts
	if len(policyBackends(p, 7)) != 1 {
		t.Fatal("lease closed as idle")
	}
	fb.lease.Write([]byte{0, 0, 0, 9, '{'})
	if !closedByPeer(fb.lease, 5*time.Second) {
		t.Fatal("lease holding a partial message not closed")
	}
	waitFor(t, "backend out of rotation", 2*time.Second, func() bool { return len(policyBackends(p, 7)) == 0 })
}

func readBinary(t testing.TB, nc net.Conn) codec.Message {
	t.Helper()
	var hdr [4]byte
	if _, err := io.ReadFull(nc, hdr[:]); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, binary.BigEndian.Uint32(hdr[:]))
	if _, err := io.ReadFull(nc, body); err != nil {
		t.Fatal(err)
	}
	var m codec.Message
	var d codec.Decoder
	if err := d.Decode(body, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// Backend links hold descriptors from each loop's share of a budget
// (fdbudget.go): gnet stops the engine when accept meets EMFILE, and a
// peer registers backends at will. Past the budget a request whose backend
// would need a new link goes to another backend of its policy that has
// one; or the least recently busy idle link is closed for it; or, with
// every link busy, it is answered overloaded.
func TestLinkBudget(t *testing.T) {
	p := startProxy(t, Config{Loops: 1})
	room := func(set int64) int64 {
		r, _ := runOnLoops(context.Background(), p.p, func(l *loop) int64 {
			switch {
			case set > 0:
				l.linkRoom = set
			case set < 0:
				l.linkRoom = 0
			}
			return l.linkRoom
		})
		return r[0]
	}
	c := dial(t, p, codec.Binary)
	release := make(chan struct{})
	newFakeBackend(t, p, 1, 7, func(_ int, s string) (string, bool) {
		if s == "wait" {
			<-release
		}
		return s, true
	})
	room(2) // one dial's worth (the loop exists once a connection came)
	if got := roundTrip(t, c, 1, 7, "a"); got.Type != codec.TypeReply || got.SrcID != 1 {
		t.Fatalf("first link: %+v", got)
	}
	waitFor(t, "the open link to hold one descriptor", 2*time.Second, func() bool { return room(0) == 1 })

	newFakeBackend(t, p, 2, 7, echo) // policy 7's second backend: no room for its link
	for i := range 6 {
		if got := roundTrip(t, c, 2, 7, "b"); got.Type != codec.TypeReply || got.SrcID != 1 {
			t.Fatalf("request %d of policy 7: %+v; want backend 1's reply (the one with a link)", i, got)
		}
	}
	if s := p.Metrics().Snapshot(); s.LinksEvicted != 0 {
		t.Fatalf("%d links evicted; want none: policy 7 has a backend with a link", s.LinksEvicted)
	}

	// Backend 1's link busy: policy 8 finds no room and no idle link.
	c2 := dial(t, p, codec.Binary)
	if err := c2.Send(3, 7, "wait"); err != nil || c2.Flush() != nil {
		t.Fatal(err)
	}
	newFakeBackend(t, p, 3, 8, echo)
	waitFor(t, "the request held by backend 1", 2*time.Second, func() bool { return p.Metrics().Snapshot().Inflight == 1 })
	if got := roundTrip(t, c, 4, 8, "c"); got.Type != codec.TypeError || got.Code != codec.CodeOverloaded {
		t.Fatalf("with every link busy and no room: %+v; want overloaded", got)
	}
	close(release)
	if got := recv(t, c2); got.Type != codec.TypeReply || got.Payload != "wait" {
		t.Fatalf("the held request: %+v", got)
	}
	// Idle again: policy 8 takes its descriptor.
	if got := roundTrip(t, c, 5, 8, "d"); got.Type != codec.TypeReply || got.SrcID != 3 {
		t.Fatalf("policy 8 with an idle link to evict: %+v; want backend 3's reply", got)
	}
	s := p.Metrics().Snapshot()
	if s.LinksEvicted != 1 || s.LinksRefused < 1 {
		t.Fatalf("links evicted %d, refused %d; want 1 and at least 1", s.LinksEvicted, s.LinksRefused)
	}
	waitFor(t, "one link open, one descriptor free", 2*time.Second, func() bool { return room(0) == 1 })

	// No room at all (as with dials under way) and one idle link: closing
	// it would free one descriptor of the two a dial takes, so none is
	// closed for nothing.
	room(-1)
	newFakeBackend(t, p, 4, 9, echo)
	if got := roundTrip(t, c, 6, 9, "e"); got.Type != codec.TypeError || got.Code != codec.CodeOverloaded {
		t.Fatalf("with one idle link and no room: %+v; want overloaded", got)
	}
	if s := p.Metrics().Snapshot(); s.LinksEvicted != 1 {
		t.Fatalf("links evicted %d; want still 1", s.LinksEvicted)
	}
}
