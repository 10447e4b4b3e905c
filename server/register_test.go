package server

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prism-proxy/prism/backend"
	"github.com/prism-proxy/prism/client"
	"github.com/prism-proxy/prism/codec"
	"github.com/prism-proxy/prism/internal/backendtest"
)

// setupOn sends a setup to addr and returns the answer and whether the
// connection closed after it.
func setupOn(t *testing.T, addr string, id int64, token string) (m codec.Message, closed bool) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	c := client.New(nc, client.Options{})
	c.SendRaw(codec.AppendSetup(nil, id, 7, 9, token))
	c.Flush()
	if err := c.Recv(&m); err != nil {
		t.Fatalf("setup on %s: %v", addr, err)
	}
	m.Code, m.Error = string([]byte(m.Code)), string([]byte(m.Error))
	nc.SetDeadline(time.Now().Add(200 * time.Millisecond))
	_, err = c.RecvRaw()
	var ne net.Error
	timedOut := err != nil && errors.As(err, &ne) && ne.Timeout()
	return m, err != nil && !timedOut
}

func TestRegisterRefusals(t *testing.T) {
	for _, tt := range []struct {
		name   string
		cfg    Config
		token  string
		refuse string // "" when accepted
	}{
		{"token right", Config{RegisterToken: "s3cret"}, "s3cret", ""},
		{"token wrong", Config{RegisterToken: "s3cret"}, "s3cres", "setup refused: wrong or missing token"},
		{"token missing", Config{RegisterToken: "s3cret"}, "", "setup refused: wrong or missing token"},
		{"cidr elsewhere", Config{RegisterCIDR: "10.0.0.0/8"}, "", "setup refused: setups are not taken from this address"},
		{"cidr host", Config{RegisterCIDR: "10.0.0.0/8, 127.0.0.1"}, "", ""},
		{"cidr net", Config{RegisterCIDR: "127.0.0.0/8"}, "", ""},
		{"cidr before token", Config{RegisterCIDR: "10.0.0.0/8", RegisterToken: "s3cret"}, "s3cret",
			"setup refused: setups are not taken from this address"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := startProxy(t, tt.cfg)
			m, closed := setupOn(t, p.Addr(), 1, tt.token)
			if tt.refuse == "" {
				if m.Type != codec.TypeAck || closed {
					t.Fatalf("got %+v, closed %v; want an ack and the lease open", m, closed)
				}
				return
			}
			if m.Type != codec.TypeError || m.Code != codec.CodeUnauthorized || m.Error != tt.refuse || !closed {
				t.Fatalf("got %+v, closed %v; want unauthorized %q, then closed", m, closed, tt.refuse)
			}
			if bs := p.Backends(); len(bs) != 0 {
				t.Errorf("backends %+v after a refused setup", bs)
			}
		})
	}
}

func TestBadRegisterCIDR(t *testing.T) {
	if _, err := New(Config{RegisterCIDR: "10.0.0.0/8,nonsense"}); err == nil || !strings.Contains(err.Error(), "nonsense") {
		t.Fatalf("New: %v; want an error naming the bad network", err)
	}
	for _, reg := range []string{"127.0.0.1:9", "0.0.0.0:9", ":9"} {
		if _, err := New(Config{Listen: "127.0.0.1:9", RegisterListen: reg}); err == nil {
			t.Fatalf("New with RegisterListen %s over Listen 127.0.0.1:9: no error", reg)
		}
	}
	if _, err := New(Config{Listen: "127.0.0.1:9", RegisterListen: "127.0.0.2:9"}); err != nil {
		t.Fatalf("New with RegisterListen on another address, same port: %v", err)
	}
}

// With a registration address, setups are taken there only and requests
// on the client address only; backends registered there serve clients of
// the other as usual.
func TestRegisterListen(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0") // a free port: Listen is 127.0.0.1:0 already
	if err != nil {
		t.Fatal(err)
	}
	free := ln.Addr().String()
	ln.Close()
	p := startProxy(t, Config{RegisterListen: free})
	reg := p.RegisterAddr()
	if reg == "" || reg == p.Addr() {
		t.Fatalf("RegisterAddr = %q (Addr %q); want a separate address", reg, p.Addr())
	}
	m, closed := setupOn(t, p.Addr(), 1, "")
	if m.Code != codec.CodeUnauthorized || m.Error != "setup refused: setups are taken on the registration address only" || !closed {
		t.Fatalf("setup on the client address: %+v, closed %v; want unauthorized, closed", m, closed)
	}

	c := dial(t, p, codec.Binary)
	nc, err := net.Dial("tcp", reg)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	wrong := client.New(nc, client.Options{})
	if a := roundTrip(t, wrong, 3, 7, "here?"); a.Type != codec.TypeError || a.Code != codec.CodeBadRequest {
		t.Fatalf("request on the registration address: %+v; want bad_request", a)
	}
	if _, err := wrong.RecvRaw(); err == nil {
		t.Fatal("registration address: a client's connection stays open")
	}

	backendtest.Start(t, backend.Config{ID: 1, Policy: 7, Proxies: []string{reg}, Logger: quiet})
	for i := range 4 { // over both loops
		cl := c
		if i > 0 {
			cl = dial(t, p, codec.Binary)
		}
		if a := roundTrip(t, cl, 5, 7, "hi"); a.Type != codec.TypeReply || a.Payload != "hi" {
			t.Fatalf("client %d: %+v; want the reply", i, a)
		}
	}
}
