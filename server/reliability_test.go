package server

import (
	"fmt"
	"testing"
	"time"

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
