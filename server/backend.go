package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/panjf2000/gnet/v2"
	"github.com/panjf2000/gnet/v2/pkg/logging"

	"github.com/prism-proxy/prism/client"
	"github.com/prism-proxy/prism/codec"
	"github.com/prism-proxy/prism/internal/gnetio"
)

// Mode is how a backend server answers.
type Mode uint8

const (
	// Echo answers with the request's payload.
	Echo Mode = iota
	// Upper answers with the payload upper-cased.
	Upper
)

// ParseMode parses "echo" or "upper".
func ParseMode(s string) (Mode, error) {
	switch s {
	case "echo", "":
		return Echo, nil
	case "upper":
		return Upper, nil
	}
	return Echo, fmt.Errorf("server: unknown mode %q (want echo or upper)", s)
}

// BackendConfig configures a BackendServer. Zero values take the defaults
// given per field.
type BackendConfig struct {
	// ID is the server id announced in setups and carried in replies.
	ID int64
	// Policy is the privacy policy the server serves.
	Policy int64
	// Listen is the data address. Default "127.0.0.1:0" (a free port).
	Listen string
	// Proxies are the proxies to register with; empty serves the data port only.
	Proxies []string
	// Mode of answering. Zero: Echo.
	Mode Mode
	// Token is sent in setups when not empty.
	Token string
	// Framing of the setups, which the proxy then uses on data connections.
	// Zero: codec.Binary.
	Framing codec.Framing
	// Loops is the number of event loops. Zero: 1.
	Loops int
	// MaxFrame bounds a request's size. Zero: codec.DefaultMaxFrame.
	MaxFrame int
	// Retry is the longest wait between attempts to (re)register. Zero: 2s.
	Retry time.Duration
	// Logger receives the server's log. Nil: slog.Default().
	Logger *slog.Logger
}

// BackendServer is a server of the pool: a gnet engine answering requests on
// its data port, in order per connection, and a lease per proxy that keeps
// it registered (re-registering when a lease drops). Methods are safe from
// any goroutine.
type BackendServer struct {
	gnet.BuiltinEventEngine
	cfg    BackendConfig
	engine gnet.Engine
	port   int
	booted chan struct{}
	done   chan struct{}
	runErr error

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	acked map[string]bool
	ackCh chan struct{} // closed and replaced on each ack change

	served atomic.Uint64
}

// NewBackendServer returns a backend server; Start runs it.
func NewBackendServer(cfg BackendConfig) (*BackendServer, error) {
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.Framing == codec.Unknown {
		cfg.Framing = codec.Binary
	}
	if cfg.Loops <= 0 {
		cfg.Loops = 1
	}
	if cfg.MaxFrame <= 0 {
		cfg.MaxFrame = codec.DefaultMaxFrame
	}
	if cfg.Retry <= 0 {
		cfg.Retry = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &BackendServer{
		cfg: cfg, booted: make(chan struct{}), done: make(chan struct{}),
		ctx: ctx, cancel: cancel, acked: map[string]bool{}, ackCh: make(chan struct{}),
	}, nil
}

// Start listens and starts registering with the proxies.
func (s *BackendServer) Start() error {
	go s.serve()
	select {
	case <-s.booted:
	case <-s.done:
		if s.runErr == nil {
			return ErrClosed
		}
		return s.runErr
	}
	for _, addr := range s.cfg.Proxies {
		s.wg.Add(1)
		go s.holdLease(addr)
	}
	return nil
}

func (s *BackendServer) serve() {
	defer close(s.done)
	s.runErr = gnet.Run(s, "tcp://"+s.cfg.Listen,
		gnet.WithNumEventLoop(s.cfg.Loops),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		gnet.WithReuseAddr(true),
		gnet.WithLogger(gnetio.Logger(s.cfg.Logger)),
		gnet.WithLogLevel(logging.ErrorLevel),
	)
}

// Port is the data port the server listens on.
func (s *BackendServer) Port() int { return s.port }

// Served counts the requests answered.
func (s *BackendServer) Served() uint64 { return s.served.Load() }

// ID returns the server id.
func (s *BackendServer) ID() int64 { return s.cfg.ID }

// Policy returns the policy served.
func (s *BackendServer) Policy() int64 { return s.cfg.Policy }

// WaitRegistered blocks until every proxy acknowledged the setup.
func (s *BackendServer) WaitRegistered(ctx context.Context) error {
	for {
		s.mu.Lock()
		ch := s.ackCh
		all := true
		for _, a := range s.cfg.Proxies {
			all = all && s.acked[a]
		}
		s.mu.Unlock()
		if all {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (s *BackendServer) setAcked(addr string, ok bool) {
	s.mu.Lock()
	s.acked[addr] = ok
	close(s.ackCh)
	s.ackCh = make(chan struct{})
	s.mu.Unlock()
}

// Close drops the leases (the proxies take the server out of rotation at
// once) and stops the engine.
func (s *BackendServer) Close() error {
	s.cancel()
	s.wg.Wait()
	select {
	case <-s.booted:
	case <-s.done:
		return nil
	}
	gnetio.Stop(context.Background(), s.engine, s.done)
	return nil
}

// holdLease registers with one proxy and keeps the lease open, registering
// again with backoff when it drops.
func (s *BackendServer) holdLease(addr string) {
	defer s.wg.Done()
	wait := 50 * time.Millisecond
	for s.ctx.Err() == nil {
		err := s.lease(addr)
		s.setAcked(addr, false)
		if s.ctx.Err() != nil {
			return
		}
		s.cfg.Logger.Warn("lease lost; registering again", "proxy", addr, "err", err, "in", wait)
		select {
		case <-time.After(wait):
		case <-s.ctx.Done():
			return
		}
		wait = min(2*wait, s.cfg.Retry)
	}
}

var errRefused = errors.New("server: setup refused")

func (s *BackendServer) lease(addr string) error {
	d := net.Dialer{Timeout: 2 * time.Second}
	nc, err := d.DialContext(s.ctx, "tcp", addr)
	if err != nil {
		return err
	}
	stop := context.AfterFunc(s.ctx, func() { nc.Close() })
	defer stop()
	defer nc.Close()
	c := client.New(nc, client.Options{Framing: s.cfg.Framing, BufferSize: 4096})
	if err := c.SendRaw(codec.AppendSetup(nil, s.cfg.ID, s.cfg.Policy, s.port, s.cfg.Token)); err != nil {
		return err
	}
	if err := c.Flush(); err != nil {
		return err
	}
	var m codec.Message
	if err := c.Recv(&m); err != nil {
		return err
	}
	if m.Type != codec.TypeAck {
		return fmt.Errorf("%w: %s: %s", errRefused, m.Code, m.Error)
	}
	s.setAcked(addr, true)
	s.cfg.Logger.Info("registered", "proxy", addr, "id", s.cfg.ID, "policy", s.cfg.Policy, "port", s.port)
	for { // the lease stays open; the proxy sends nothing more on it
		if err := c.Recv(&m); err != nil {
			return err
		}
	}
}

// OnBoot learns the bound port.
func (s *BackendServer) OnBoot(eng gnet.Engine) gnet.Action {
	s.engine = eng
	if a := gnetio.Addr(eng); a != nil {
		s.port = a.Port
	}
	if s.port == 0 {
		_, p, _ := net.SplitHostPort(s.cfg.Listen)
		s.port, _ = strconv.Atoi(p)
	}
	close(s.booted)
	return gnet.None
}

// backendConn is a data connection's state.
type backendConn struct {
	split codec.Splitter
	dec   codec.Decoder
	msg   codec.Message
	out   []byte
	upper []byte
}

// OnOpen sets up a data connection.
func (s *BackendServer) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	bc := &backendConn{}
	bc.split.Max = s.cfg.MaxFrame
	c.SetContext(bc)
	return nil, gnet.None
}

// OnTraffic answers every complete request, in order, in one write.
func (s *BackendServer) OnTraffic(c gnet.Conn) gnet.Action {
	bc := c.Context().(*backendConn)
	f := gnetio.NewFrames(c, &bc.split)
	bc.out = bc.out[:0]
	var served uint64
	action := gnet.None
	for {
		body, err := f.Next()
		if gnetio.Incomplete(err) {
			break
		}
		if err != nil {
			start := len(bc.out)
			bc.out = codec.BeginFrame(bc.out, bc.split.Framing)
			bc.out = codec.AppendError(bc.out, 0, codec.CodeTooLarge, err.Error())
			bc.out = codec.EndFrame(bc.out, bc.split.Framing, start)
			action = gnet.Close
			c.Discard(-1)
			break
		}
		served++
		start := len(bc.out)
		bc.out = codec.BeginFrame(bc.out, bc.split.Framing)
		bc.out = s.answer(bc, body)
		bc.out = codec.EndFrame(bc.out, bc.split.Framing, start)
		f.Consume()
	}
	f.Done()
	if len(bc.out) > 0 {
		c.Write(bc.out)
	}
	if cap(bc.out) > 1<<20 {
		bc.out = nil // do not keep a large burst's buffer per connection
	}
	s.served.Add(served)
	return action
}

// answer appends the reply to one request, or an error when it is invalid
// (a backend answers every request, or the proxy's matching would slip).
func (s *BackendServer) answer(bc *backendConn, body []byte) []byte {
	m := &bc.msg
	if _, err := bc.dec.DecodeRequest(body, m); err != nil {
		return codec.AppendError(bc.out, m.SrcID, codec.CodeBadRequest, err.Error())
	}
	payload := m.Payload
	if s.cfg.Mode == Upper {
		payload = bc.upperCase(payload)
	}
	return codec.AppendReply(bc.out, s.cfg.ID, m.SrcID, payload)
}

// upperCase upper-cases ASCII in a reused buffer; other text goes through
// strings.ToUpper.
func (bc *backendConn) upperCase(p string) string {
	for i := 0; i < len(p); i++ {
		if p[i] >= utf8.RuneSelf {
			return strings.ToUpper(p)
		}
	}
	bc.upper = append(bc.upper[:0], p...)
	for i, ch := range bc.upper {
		if 'a' <= ch && ch <= 'z' {
			bc.upper[i] = ch - 'a' + 'A'
		}
	}
	return unsafe.String(unsafe.SliceData(bc.upper), len(bc.upper))
}
