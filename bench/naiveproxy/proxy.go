package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"strconv"
	"sync"
	"time"
)

// Server is the naive proxy. Set the fields before Serve; the zero value
// serves with the defaults given on each field. Serve may be called from any
// goroutine; the registry is guarded by a mutex.
type Server struct {
	// Timeout bounds one backend round trip: dial, write and read. Zero
	// means 5s.
	Timeout time.Duration
	// Retries is how many other backends a request may be tried on when its
	// backend cannot be reached or closes before replying. Zero means none.
	Retries int
	// MaxFrame is the largest binary frame accepted, in bytes. Zero means
	// 1 MiB. Text connections are not bounded (the naive design trusts
	// json.Decoder).
	MaxFrame int
	// Logf logs registrations; nil means log.Printf.
	Logf func(format string, args ...any)

	mu       sync.Mutex
	byPolicy map[int64][]*backend
	byID     map[int64]*backend
	next     map[int64]int
}

type backend struct {
	id, policy int64
	addr       string // peer-ip:listenport
	text       bool   // the framing of its setup, used for its requests
}

var (
	errTooLarge = errors.New("naiveproxy: frame too large")
	errBadJSON  = errors.New("naiveproxy: malformed JSON")
)

// ListenAndServe listens on addr and serves until the listener fails.
func (s *Server) ListenAndServe(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return s.Serve(ln)
}

// Serve accepts connections on ln, one goroutine each, until ln is closed.
func (s *Server) Serve(ln net.Listener) error {
	s.logf("naiveproxy: listening on %s", ln.Addr())
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			return err
		}
		go s.serveConn(nc)
	}
}

func (s *Server) logf(format string, args ...any) {
	if s.Logf != nil {
		s.Logf(format, args...)
		return
	}
	log.Printf(format, args...)
}

func (s *Server) timeout() time.Duration {
	if s.Timeout <= 0 {
		return 5 * time.Second
	}
	return s.Timeout
}

// conn is one connection in one framing, read and written by one goroutine.
type conn struct {
	nc   net.Conn
	br   *bufio.Reader
	text bool
	dec  *json.Decoder // text framing only
	max  int
}

func newConn(nc net.Conn, br *bufio.Reader, text bool, max int) *conn {
	if max <= 0 {
		max = 1 << 20
	}
	c := &conn{nc: nc, br: br, text: text, max: max}
	if text {
		c.dec = json.NewDecoder(c.br)
		c.dec.UseNumber()
	}
	return c
}

// read decodes the next message into a map. errBadJSON on a binary
// connection leaves the stream usable; every other error ends it.
func (c *conn) read() (map[string]any, error) {
	var m map[string]any
	if c.text {
		if err := c.dec.Decode(&m); err != nil {
			if err == io.EOF {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %v", errBadJSON, err)
		}
		if m == nil { // the literal null
			return nil, errBadJSON
		}
		return m, nil
	}
	var hdr [4]byte
	if _, err := io.ReadFull(c.br, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > uint32(c.max) {
		return nil, errTooLarge
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(c.br, body); err != nil {
		return nil, err
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	if err := d.Decode(&m); err != nil || m == nil {
		return nil, fmt.Errorf("%w: %v", errBadJSON, err)
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the object", errBadJSON)
	}
	return m, nil
}

// write encodes m and writes it in the connection's framing.
func (c *conn) write(m map[string]any) error {
	body, err := json.Marshal(m)
	if err != nil {
		return err
	}
	var frame []byte
	if c.text {
		frame = append(body, '\n')
	} else {
		frame = binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(body)), uint32(len(body)))
		frame = append(frame, body...)
	}
	_, err = c.nc.Write(frame)
	return err
}

func errorMsg(destid int64, code, text string) map[string]any {
	return map[string]any{"type": 3, "destid": destid, "code": code, "error": text}
}

// serveConn runs one client or backend connection to its end.
func (s *Server) serveConn(nc net.Conn) {
	defer nc.Close()
	br := bufio.NewReader(nc)
	first, err := br.Peek(1)
	if err != nil {
		return
	}
	text := first[0] == '{' || first[0] == ' ' || first[0] == '\t' || first[0] == '\r' || first[0] == '\n'
	c := newConn(nc, br, text, s.MaxFrame)
	var lease *backend
	defer func() {
		if lease != nil {
			s.unregister(lease)
		}
	}()
	for {
		m, err := c.read()
		switch {
		case errors.Is(err, errTooLarge):
			c.write(errorMsg(0, "too_large", fmt.Sprintf("frame larger than %d bytes", c.max)))
			return
		case errors.Is(err, errBadJSON):
			c.write(errorMsg(0, "bad_request", err.Error()))
			if text {
				return // the next object's start cannot be known
			}
			continue
		case err != nil:
			return
		}
		typ, ok := intField(m, "type", true)
		switch {
		case ok && typ == 0:
			err = c.write(s.handleRequest(m))
		case ok && typ == 1:
			var b *backend
			b, err = s.setup(c, m)
			if b != nil {
				if lease != nil && lease.id != b.id {
					s.unregister(lease)
				}
				lease = b
			}
		default:
			id, _ := intField(m, "srcid", false)
			err = c.write(errorMsg(id, "bad_request", "unknown or missing message type"))
		}
		if err != nil {
			return
		}
	}
}

// setup registers the backend a setup message announces and acknowledges it.
func (s *Server) setup(c *conn, m map[string]any) (*backend, error) {
	id, okID := intField(m, "id", false)
	policy, okPol, conflict := policyField(m, "privPolyId", "privPoliId")
	port, okPort := intField(m, "listenport", false)
	switch {
	case !okID || !okPol || conflict:
		return nil, c.write(errorMsg(id, "bad_request", "setup needs integer id and privPolyId"))
	case !okPort || port < 1 || port > 65535:
		return nil, c.write(errorMsg(id, "bad_request", "setup needs listenport in 1..65535"))
	}
	host, _, _ := net.SplitHostPort(c.nc.RemoteAddr().String())
	b := &backend{id: id, policy: policy, addr: net.JoinHostPort(host, strconv.FormatInt(port, 10)), text: c.text}
	s.register(b)
	return b, c.write(map[string]any{"type": 4, "id": id, "privPolyId": policy})
}

func (s *Server) register(b *backend) {
	s.mu.Lock()
	if s.byID == nil {
		s.byID = map[int64]*backend{}
		s.byPolicy = map[int64][]*backend{}
		s.next = map[int64]int{}
	}
	if old := s.byID[b.id]; old != nil {
		s.removeLocked(old)
	}
	s.byID[b.id] = b
	s.byPolicy[b.policy] = append(s.byPolicy[b.policy], b)
	s.mu.Unlock()
	s.logf("naiveproxy: backend %d policy %d at %s registered", b.id, b.policy, b.addr)
}

// unregister removes b unless a newer setup with its id replaced it.
func (s *Server) unregister(b *backend) {
	s.mu.Lock()
	found := s.byID[b.id] == b
	if found {
		s.removeLocked(b)
	}
	s.mu.Unlock()
	if found {
		s.logf("naiveproxy: backend %d policy %d left", b.id, b.policy)
	}
}

func (s *Server) removeLocked(b *backend) {
	delete(s.byID, b.id)
	list := s.byPolicy[b.policy]
	for i, x := range list {
		if x == b {
			s.byPolicy[b.policy] = append(list[:i:i], list[i+1:]...)
			break
		}
	}
}

// pick returns the next backend of policy in round-robin order, skipping
// those in tried; nil when there is none left.
func (s *Server) pick(policy int64, tried []*backend) *backend {
	s.mu.Lock()
	defer s.mu.Unlock()
	list := s.byPolicy[policy]
	if len(list) == 0 {
		return nil
	}
	start := s.next[policy]
	s.next[policy] = start + 1
	for i := range list {
		b := list[(start+i)%len(list)]
		found := false
		for _, t := range tried {
			found = found || t == b
		}
		if !found {
			return b
		}
	}
	return nil
}

// handleRequest validates a request, forwards it and returns the answer for
// the client: the backend's reply or an error message.
func (s *Server) handleRequest(m map[string]any) map[string]any {
	srcid, okSrc := intField(m, "srcid", false)
	policy, okPol, conflict := policyField(m, "privPoliId", "privPolyId")
	size, okSize := intField(m, "payloadsize", false)
	payload, okPayload := m["payload"].(string)
	switch {
	case !okSrc || !okPol || !okSize || !okPayload:
		return errorMsg(srcid, "bad_request", "request needs integer srcid, privPoliId, payloadsize and a string payload")
	case conflict:
		return errorMsg(srcid, "bad_request", "privPoliId and privPolyId disagree")
	case int64(len(payload)) != size:
		return errorMsg(srcid, "bad_request", fmt.Sprintf("payloadsize %d but the payload has %d bytes", size, len(payload)))
	}
	var tried []*backend
	var lastErr error
	for attempt := 0; attempt <= s.Retries; attempt++ {
		b := s.pick(policy, tried)
		if b == nil {
			break
		}
		tried = append(tried, b)
		reply, err := s.roundTrip(b, m)
		if err == nil {
			return reply
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return errorMsg(srcid, "timeout", fmt.Sprintf("backend %d did not answer in %v", b.id, s.timeout()))
		}
		lastErr = fmt.Errorf("backend %d: %w", b.id, err)
	}
	if lastErr == nil {
		return errorMsg(srcid, "no_backend", fmt.Sprintf("no backend serves policy %d", policy))
	}
	return errorMsg(srcid, "backend_unavailable", lastErr.Error())
}

// roundTrip dials b, sends m, reads one reply and closes: one connection per
// request, the defining trait of the naive design.
func (s *Server) roundTrip(b *backend, m map[string]any) (map[string]any, error) {
	nc, err := net.DialTimeout("tcp", b.addr, s.timeout())
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(s.timeout()))
	c := newConn(nc, bufio.NewReader(nc), b.text, s.MaxFrame)
	if err := c.write(m); err != nil {
		return nil, err
	}
	reply, err := c.read()
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return reply, err
}

// intField returns m[key] as an int64 when it is a JSON integer (or, when
// str is set, a string holding one).
func intField(m map[string]any, key string, str bool) (int64, bool) {
	switch v := m[key].(type) {
	case json.Number:
		n, err := v.Int64()
		return n, err == nil
	case string:
		if str {
			n, err := strconv.ParseInt(v, 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// policyField reads the policy under its own spelling or the other one.
func policyField(m map[string]any, spelling, other string) (policy int64, ok, conflict bool) {
	a, okA := intField(m, spelling, false)
	b, okB := intField(m, other, false)
	switch {
	case okA && okB:
		return a, true, a != b
	case okA:
		return a, true, false
	default:
		return b, okB, false
	}
}
