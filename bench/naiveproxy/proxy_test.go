package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prism-proxy/prism/client"
	"github.com/prism-proxy/prism/codec"
)

func startProxy(t testing.TB) (*Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Timeout: 2 * time.Second, Retries: 1, Logf: func(string, ...any) {}}
	go s.Serve(ln)
	t.Cleanup(func() { ln.Close() })
	return s, ln.Addr().String()
}

func writeFrame(w io.Writer, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(binary.BigEndian.AppendUint32(nil, uint32(len(body))))
	if err == nil {
		_, err = w.Write(body)
	}
	return err
}

func readFrame(r io.Reader, v any) error {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return err
	}
	body := make([]byte, binary.BigEndian.Uint32(hdr[:]))
	if _, err := io.ReadFull(r, body); err != nil {
		return err
	}
	return json.Unmarshal(body, v)
}

// startBackend runs an echo backend with the given id and policy, registers
// it with the proxy at proxyAddr and returns a func that ends its lease.
func startBackend(t testing.TB, s *Server, proxyAddr string, id, policy int64) (leave func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go echo(nc, id)
		}
	}()
	setup, err := net.Dial("tcp", proxyAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { setup.Close() })
	port := ln.Addr().(*net.TCPAddr).Port
	if err := writeFrame(setup, map[string]any{"type": 1, "id": id, "privPolyId": policy, "listenport": port}); err != nil {
		t.Fatal(err)
	}
	var ack struct{ Type, ID, PrivPolyId int64 }
	setup.SetReadDeadline(time.Now().Add(5 * time.Second))
	if err := readFrame(setup, &ack); err != nil || ack.Type != 4 || ack.ID != id || ack.PrivPolyId != policy {
		t.Fatalf("setup ack = %+v, %v; want type 4 id %d policy %d", ack, err, id, policy)
	}
	return func() {
		setup.Close()
		waitFor(t, func() bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			return s.byID[id] == nil
		})
	}
}

func echo(nc net.Conn, id int64) {
	defer nc.Close()
	for {
		var req struct {
			Srcid   int64
			Payload string
		}
		if err := readFrame(nc, &req); err != nil {
			return
		}
		if err := writeFrame(nc, map[string]any{"type": 2, "srcid": id, "destid": req.Srcid, "payloadsize": len(req.Payload), "payload": req.Payload}); err != nil {
			return
		}
	}
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func dial(t testing.TB, addr string, f codec.Framing) *client.Conn {
	t.Helper()
	c, err := client.DialOptions(context.Background(), addr, client.Options{Framing: f})
	if err != nil {
		t.Fatal(err)
	}
	c.NetConn().SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

func call(t testing.TB, c *client.Conn, srcid, policy int64, payload string) (client.Reply, string) {
	t.Helper()
	r, err := c.Call(context.Background(), srcid, policy, payload)
	var er *client.ErrorReply
	if errors.As(err, &er) {
		if er.DestID != srcid {
			t.Fatalf("error destid = %d; want %d", er.DestID, srcid)
		}
		return r, er.Code
	}
	if err != nil {
		t.Fatal(err)
	}
	return r, ""
}

func TestRoundRobinAndLease(t *testing.T) {
	s, addr := startProxy(t)
	leave1 := startBackend(t, s, addr, 1, 7)
	startBackend(t, s, addr, 2, 7)
	startBackend(t, s, addr, 3, 8)

	for _, f := range []codec.Framing{codec.Binary, codec.Text} {
		c := dial(t, addr, f)
		counts := map[int64]int{}
		for i := range 10 {
			r, code := call(t, c, int64(40+i), 7, "h\u00e9llo <&>")
			if code != "" {
				t.Fatalf("%v request %d: error %s", f, i, code)
			}
			if r.DestID != int64(40+i) || r.Payload != "h\u00e9llo <&>" {
				t.Fatalf("%v reply = %+v; want destid %d and the payload back", f, r, 40+i)
			}
			counts[r.SrcID]++
		}
		if counts[1] != 5 || counts[2] != 5 {
			t.Fatalf("%v: replies by backend = %v; want 5 from 1 and 5 from 2, none from 3", f, counts)
		}
	}

	leave1()
	c := dial(t, addr, codec.Binary)
	for range 4 {
		if r, code := call(t, c, 1, 7, "x"); code != "" || r.SrcID != 2 {
			t.Fatalf("after backend 1 left: reply from %d, error %q; want backend 2", r.SrcID, code)
		}
	}
}

func TestPipelinedInOrder(t *testing.T) {
	s, addr := startProxy(t)
	startBackend(t, s, addr, 1, 7)
	startBackend(t, s, addr, 2, 7)
	c := dial(t, addr, codec.Binary)
	payload := strings.Repeat("p", 4096)
	for i := range 16 {
		if err := c.Send(int64(i), 7, payload); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	var m codec.Message
	for i := range 16 {
		if err := c.Recv(&m); err != nil {
			t.Fatal(err)
		}
		if m.Type != codec.TypeReply || m.DestID != int64(i) || len(m.Payload) != 4096 {
			t.Fatalf("reply %d: type %d destid %d payload %d bytes; want a reply to %d", i, m.Type, m.DestID, len(m.Payload), i)
		}
	}
}

func TestErrors(t *testing.T) {
	s, addr := startProxy(t)
	startBackend(t, s, addr, 1, 7)

	// A backend whose port no longer listens.
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadPort := dead.Addr().(*net.TCPAddr).Port
	dead.Close()
	setup, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer setup.Close()
	writeFrame(setup, map[string]any{"type": "1", "id": 9, "privPoliId": 5, "listenport": deadPort})
	var ack map[string]any
	if err := readFrame(setup, &ack); err != nil || ack["type"] != 4.0 {
		t.Fatalf("setup ack = %v, %v", ack, err)
	}

	c := dial(t, addr, codec.Binary)
	tests := []struct {
		name string
		body string
		code string
	}{
		{"no backend", `{"type":0,"srcid":42,"privPoliId":9,"payloadsize":1,"payload":"x"}`, "no_backend"},
		{"backend unavailable", `{"type":0,"srcid":42,"privPoliId":5,"payloadsize":1,"payload":"x"}`, "backend_unavailable"},
		{"size mismatch", `{"type":0,"srcid":42,"privPoliId":7,"payloadsize":9,"payload":"x"}`, "bad_request"},
		{"string srcid", `{"type":0,"srcid":"42","privPoliId":7,"payloadsize":1,"payload":"x"}`, "bad_request"},
		{"policies disagree", `{"type":0,"srcid":42,"privPoliId":7,"privPolyId":8,"payloadsize":1,"payload":"x"}`, "bad_request"},
		{"broken JSON", `{"type":0,`, "bad_request"},
		{"unknown type", `{"type":7,"srcid":42}`, "bad_request"},
		{"ok, string type and other spelling", `{"type":"0","srcid":42,"privPolyId":7,"payloadsize":1,"payload":"x"}`, ""},
	}
	var m codec.Message
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := c.SendRaw([]byte(tt.body)); err != nil {
				t.Fatal(err)
			}
			if err := c.Flush(); err != nil {
				t.Fatal(err)
			}
			if err := c.Recv(&m); err != nil {
				t.Fatal(err)
			}
			switch {
			case tt.code == "" && m.Type != codec.TypeReply:
				t.Fatalf("got type %d code %q; want a reply", m.Type, m.Code)
			case tt.code != "" && (m.Type != codec.TypeError || m.Code != tt.code):
				t.Fatalf("got type %d code %q; want error %s", m.Type, m.Code, tt.code)
			}
		})
	}

	// A frame over the limit ends the connection after too_large.
	big := dial(t, addr, codec.Binary)
	big.NetConn().Write([]byte{0x7f, 0, 0, 0})
	if err := big.Recv(&m); err != nil || m.Code != "too_large" {
		t.Fatalf("huge frame: code %q, %v; want too_large", m.Code, err)
	}
	if err := big.Recv(&m); err == nil {
		t.Fatal("connection still open after too_large")
	}
}
