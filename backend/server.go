package backend

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
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

var (
	// ErrStarted is returned by Start on a server already started.
	ErrStarted = errors.New("backend: server already started")
	// ErrClosed is returned by Start on a server that was shut down.
	ErrClosed = errors.New("backend: server closed")
)

// Server is a server of the pool: a gnet engine answering requests on its
// data port, in order per connection, and a lease per proxy that keeps it
// registered (re-registering when a lease drops). Methods are safe from any
// goroutine.
type Server struct {
	cfg     Config
	engine  gnet.Engine
	port    int
	booted  chan struct{}
	done    chan struct{} // closed when the engine returned
	release func()        // of the port held for port 0, once listening
	runErr  error

	ctx      context.Context // ends at Shutdown: the leases drop
	cancel   context.CancelFunc
	wg       sync.WaitGroup // the leases
	stopOnce sync.Once

	mu       sync.Mutex
	started  bool
	closed   bool
	leases   map[string]*leaseHandle // by proxy address: the leases held or being opened
	resolved bool                    // every name of Proxies had its first answer
	acked    map[string]bool
	gaveUp   map[string]error // proxies no longer registered with, and why
	ackCh    chan struct{}    // closed and replaced on each ack change

	served   atomic.Uint64
	open     atomic.Int64 // data connections open, against maxConns
	maxConns int64        // Config.MaxConns, resolved
	refused  atomic.Uint64
}

// New returns a backend server with cfg's defaults resolved; Start runs it.
func New(cfg Config) (*Server, error) {
	cfg = cfg.resolve()
	limit := gnetio.OpenFilesLimit()
	most := defaultMaxConns(limit)
	maxConns := cfg.MaxConns
	switch {
	case maxConns < 0:
		return nil, fmt.Errorf("backend: MaxConns (-max-conns) %d is negative", maxConns)
	case maxConns == 0:
		maxConns = most
	case maxConns > most:
		return nil, fmt.Errorf("backend: MaxConns (-max-conns) %d is more than the open-files limit %d allows (%d): raise the limit (ulimit -n) or lower it", maxConns, limit, most)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		cfg: cfg, maxConns: int64(maxConns), booted: make(chan struct{}), done: make(chan struct{}),
		ctx: ctx, cancel: cancel, leases: map[string]*leaseHandle{},
		acked: map[string]bool{}, gaveUp: map[string]error{},
		ackCh: make(chan struct{}),
	}, nil
}

// Start listens and starts registering with the proxies. It returns once the
// server listens, or with the error that stopped it; ErrStarted when called
// again, ErrClosed after Shutdown or Close.
func (s *Server) Start() error {
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return ErrClosed
	case s.started:
		s.mu.Unlock()
		return ErrStarted
	}
	s.started = true
	s.mu.Unlock()
	go s.serve()
	select {
	case <-s.booted:
	case <-s.done:
		if s.runErr == nil {
			return ErrClosed
		}
		return s.runErr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed { // shut down while booting: the engine is being stopped
		return ErrClosed
	}
	literal, names := splitProxies(s.cfg.Proxies)
	s.setLeasesLocked(literal)
	s.resolved = len(names) == 0
	if len(names) > 0 {
		s.wg.Add(1)
		go s.resolveLoop(literal, names)
	}
	return nil
}

func (s *Server) serve() {
	defer close(s.done)
	// A listener per loop (gnetio.ListenAddr): a loop accepts and opens a
	// connection on its own goroutine, so none is lost when the engine
	// stops (a proxy dials its backends all the time), and OnOpen closes
	// one past Config.MaxConns before the loop accepts another, so a flood
	// cannot run the process out of descriptors (EMFILE at accept stops
	// the loop). The port is its own (gnetio.ClaimAddr): a second server
	// on it is refused, not shared.
	listen, release, err := gnetio.ClaimAddr(s.cfg.Listen)
	if err != nil {
		s.runErr = err
		return
	}
	s.release = release
	defer release() // again, if the engine failed before OnBoot (closing twice is harmless)
	defer func() {
		s.mu.Lock()
		asked := s.closed
		s.mu.Unlock()
		if !asked { // gnet stopped on its own (a loop's error): the leases go too
			if s.runErr == nil {
				s.runErr = ErrEngineStopped
			}
			s.cfg.Logger.Error("the data port stopped serving", "err", s.runErr)
			s.cancel()
		}
	}()
	s.runErr = gnet.Run(&events{s: s}, "tcp://"+listen,
		gnet.WithNumEventLoop(s.cfg.Loops),
		gnet.WithReusePort(true),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		gnet.WithReuseAddr(true),
		gnet.WithLogger(gnetio.Logger(s.cfg.Logger)),
		gnet.WithLogLevel(logging.ErrorLevel),
	)
}

// Port is the data port the server listens on, once Start returned.
func (s *Server) Port() int { return s.port }

// Served counts the requests answered.
func (s *Server) Served() uint64 { return s.served.Load() }

// ID returns the server id.
func (s *Server) ID() int64 { return s.cfg.ID }

// Policy returns the policy served.
func (s *Server) Policy() int64 { return s.cfg.Policy }

// WaitRegistered blocks until every proxy acknowledged the setup: every
// literal address of Proxies and every address its names resolve to, once
// each name was resolved to at least one address. It returns an error wrapping ErrRefused or
// ErrRevoked when the server gave up on a proxy, or ctx's error.
func (s *Server) WaitRegistered(ctx context.Context) error {
	for {
		s.mu.Lock()
		ch := s.ackCh
		all := s.resolved && (len(s.leases) > 0 || len(s.cfg.Proxies) == 0)
		var gaveUp error
		for _, a := range slices.Sorted(maps.Keys(s.leases)) {
			all = all && s.acked[a]
			if err := s.gaveUp[a]; err != nil && gaveUp == nil {
				gaveUp = fmt.Errorf("proxy %s: %w", a, err)
			}
		}
		s.mu.Unlock()
		if gaveUp != nil {
			return gaveUp
		}
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

// Proxies returns the addresses the server holds a lease with (or is
// opening one with), sorted: the literal addresses of Config.Proxies and
// those its names resolved to.
func (s *Server) Proxies() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.leases))
}

// setAcked records the state of lease h, unless it was closed since (its
// address vanished from the names' answers).
func (s *Server) setAcked(h *leaseHandle, ok bool, gaveUp error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.leases[h.addr] != h {
		return
	}
	s.acked[h.addr] = ok
	if gaveUp != nil {
		s.gaveUp[h.addr] = gaveUp
	}
	s.ackChangedLocked()
}

func (s *Server) ackChangedLocked() {
	close(s.ackCh)
	s.ackCh = make(chan struct{})
}

// Shutdown drops the leases (the proxies take the server out of rotation at
// once) and then stops the engine, closing the data connections. It returns
// once the engine stopped, or with ctx's error when ctx ends first; the
// server stops all the same. On a server never started it returns at once,
// and Start then fails. It may be called more than once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	started := s.started
	s.mu.Unlock()
	s.cancel()
	if !started {
		return nil
	}
	s.stopOnce.Do(func() { go s.stop() })
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close is Shutdown without a deadline.
func (s *Server) Close() error { return s.Shutdown(context.Background()) }

// ErrEngineStopped is Err's answer when the data port stopped serving
// without Shutdown or Close.
var ErrEngineStopped = errors.New("backend: the data port's engine stopped")

// Done is closed when the data port stopped serving: after Shutdown or
// Close, or on its own (then Err says why, and the leases are dropped).
func (s *Server) Done() <-chan struct{} { return s.done }

// Err is why the data port stopped serving on its own; nil while it
// serves, or after Shutdown or Close.
func (s *Server) Err() error {
	select {
	case <-s.done:
	default:
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed && !errors.Is(s.runErr, ErrEngineStopped) {
		return nil
	}
	return s.runErr
}

// Refused is how many data connections were closed as they opened, past
// Config.MaxConns.
func (s *Server) Refused() uint64 { return s.refused.Load() }

// stop waits for the leases to drop and the engine to boot, then stops it.
func (s *Server) stop() {
	s.wg.Wait()
	select {
	case <-s.booted:
	case <-s.done:
		return
	}
	gnetio.Stop(context.Background(), s.engine, s.done)
}

// holdLease registers with one proxy and keeps the lease open, registering
// again with backoff when it drops. It gives up on the proxy when the proxy
// refused the setup (registering again would get the same answer). When the
// lease was revoked because another server registered the same id, it
// waits ReplacedRetry before registering again: at once would take the id
// back and out of rotation in turn, the two servers fighting over it;
// never would leave the id's policy without this server for good if the
// other one was an impostor or is gone.
func (s *Server) holdLease(h *leaseHandle) {
	defer s.wg.Done()
	ctx, addr := h.ctx, h.addr
	const firstWait = 50 * time.Millisecond
	wait := firstWait
	for ctx.Err() == nil {
		began := time.Now()
		registered, err := s.lease(h)
		if registered && time.Since(began) > s.cfg.Retry {
			wait = firstWait // the lease held a while: a drop now is news, not a streak
		}
		if ctx.Err() != nil {
			s.setAcked(h, false, nil)
			return
		}
		if giveUp(err) {
			s.setAcked(h, false, err)
			if !errors.Is(err, ErrRevoked) || s.cfg.ReplacedRetry < 0 {
				s.cfg.Logger.Error("not registering with this proxy again", "proxy", addr, "id", s.cfg.ID, "err", err)
				return
			}
			s.cfg.Logger.Error("another server registered this id: registering again later (give each server its own id)",
				"proxy", addr, "id", s.cfg.ID, "in", s.cfg.ReplacedRetry, "err", err)
			select {
			case <-time.After(s.cfg.ReplacedRetry):
			case <-ctx.Done():
				return
			}
			wait = firstWait
			continue
		}
		s.setAcked(h, false, nil)
		if registered {
			s.cfg.Logger.Warn("lease lost; registering again", "proxy", addr, "err", err, "in", wait)
		} else {
			s.cfg.Logger.Warn("could not register: "+registerFailure(err)+"; trying again", "proxy", addr, "err", err, "in", wait)
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return
		}
		wait = min(2*wait, s.cfg.Retry)
	}
}

var (
	// ErrRefused is wrapped in the error of a setup a proxy answered with
	// an error (its code and text follow).
	ErrRefused = errors.New("backend: setup refused")
	// ErrRevoked is wrapped in the error of a lease a proxy ended with an
	// error after acknowledging it, as when a newer registration of the
	// same id replaced it (code unauthorized).
	ErrRevoked = errors.New("backend: registration revoked")
)

// leaseError is a proxy's error message on a lease.
type leaseError struct {
	kind       error // ErrRefused or ErrRevoked
	code, text string
}

func (e *leaseError) Error() string { return e.kind.Error() + ": " + e.code + ": " + e.text }
func (e *leaseError) Unwrap() error { return e.kind }

// giveUp reports whether err is a proxy's answer that the same setup would
// get again: unauthorized (a wrong token, an address not allowed, or a
// newer registration of the id) or bad_request.
func giveUp(err error) bool {
	var le *leaseError
	return errors.As(err, &le) && (le.code == codec.CodeUnauthorized || le.code == codec.CodeBadRequest)
}

// registerFailure says why a registration that never got its ack failed,
// for the log.
func registerFailure(err error) string {
	var op *net.OpError
	var le *leaseError
	switch {
	case errors.As(err, &op) && op.Op == "dial":
		return "dial failed (is the proxy running at this address?)"
	case errors.As(err, &le):
		return "the proxy answered the setup with an error"
	}
	return "no acknowledgement from the proxy"
}

// lease registers with the proxy at h.addr and holds the lease until it
// ends; registered reports whether the proxy acknowledged the setup.
func (s *Server) lease(h *leaseHandle) (registered bool, err error) {
	ctx, addr := h.ctx, h.addr
	d := net.Dialer{Timeout: 2 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false, err
	}
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	defer stop()
	defer nc.Close()
	c := client.New(nc, client.Options{Framing: s.cfg.Framing, BufferSize: 4096})
	if err := c.SendRaw(codec.AppendSetup(nil, s.cfg.ID, s.cfg.Policy, s.port, s.cfg.Token)); err != nil {
		return false, err
	}
	if err := c.Flush(); err != nil {
		return false, err
	}
	var m codec.Message
	if err := c.Recv(&m); err != nil {
		return false, err
	}
	if m.Type != codec.TypeAck {
		return false, &leaseError{ErrRefused, string([]byte(m.Code)), string([]byte(m.Error))}
	}
	s.setAcked(h, true, nil)
	s.cfg.Logger.Info("registered", "proxy", addr, "id", s.cfg.ID, "policy", s.cfg.Policy, "port", s.port)
	for { // the lease stays open; the proxy sends only an error, then closes
		if err := c.Recv(&m); err != nil {
			return true, err
		}
		if m.Type == codec.TypeError {
			return true, &leaseError{ErrRevoked, string([]byte(m.Code)), string([]byte(m.Error))}
		}
	}
}

// events are the gnet callbacks of a Server's engine, kept off its API.
type events struct {
	gnet.BuiltinEventEngine
	s *Server
}

// OnBoot learns the bound port and releases Start.
func (e *events) OnBoot(eng gnet.Engine) gnet.Action {
	s := e.s
	s.engine = eng
	if a := gnetio.Addr(eng); a != nil {
		s.port = a.Port
	}
	if s.port == 0 {
		_, p, _ := net.SplitHostPort(s.cfg.Listen)
		s.port, _ = strconv.Atoi(p)
	}
	s.release() // the port picked for port 0 was held until now (gnetio.ListenAddr)
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
	delay *delayed // with Config.Delay: the replies waiting for it
}

// OnOpen sets up a data connection.
func (e *events) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	s := e.s
	if s.open.Add(1) > s.maxConns { // a loop accepts one at a time: at most one over
		s.open.Add(-1)
		if n := s.refused.Add(1); n&(n-1) == 0 { // logged at 1, 2, 4, 8...: a flood is not a line each
			s.cfg.Logger.Warn("data connections refused: at the connection cap", "refused", n, "max_conns", s.maxConns)
		}
		return nil, gnet.Close
	}
	bc := &backendConn{}
	bc.split.Max = s.cfg.MaxFrame
	c.SetContext(bc)
	if s.cfg.Delay > 0 {
		bc.delay = newDelayed()
		go writeDelayed(c, bc.delay)
	}
	return nil, gnet.None
}

// OnClose stops a connection's delayed writer.
func (e *events) OnClose(c gnet.Conn, _ error) gnet.Action {
	bc, ok := c.Context().(*backendConn)
	if !ok {
		return gnet.None // refused in OnOpen
	}
	e.s.open.Add(-1)
	if bc.delay != nil {
		bc.delay.close()
	}
	return gnet.None
}

// OnTraffic answers every complete request, in order, in one write.
func (e *events) OnTraffic(c gnet.Conn) gnet.Action {
	s := e.s
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
		if err != nil { // the stream cannot be cut: answer why, then close
			code, text := codec.ErrorAnswer(err, bc.split.Max)
			start := len(bc.out)
			bc.out = codec.BeginFrame(bc.out, bc.split.Framing)
			bc.out = codec.AppendError(bc.out, 0, code, text)
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
	switch {
	case len(bc.out) == 0:
	case bc.delay != nil && action == gnet.None:
		bc.delay.push(time.Now().Add(s.cfg.Delay), bc.out)
	default:
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
func (s *Server) answer(bc *backendConn, body []byte) []byte {
	m := &bc.msg
	if _, err := bc.dec.DecodeRequest(body, m); err != nil {
		code, text := codec.ErrorAnswer(err, s.cfg.MaxFrame)
		return codec.AppendError(bc.out, m.SrcID, code, text)
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
