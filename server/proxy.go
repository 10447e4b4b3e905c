package server

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/panjf2000/gnet/v2/pkg/logging"

	"github.com/prism-proxy/prism/codec"
	"github.com/prism-proxy/prism/internal/gnetio"
	"github.com/prism-proxy/prism/pool"
)

// ErrClosed is returned by Start on a proxy that was shut down.
var ErrClosed = errors.New("server: proxy closed")

// Proxy is the Prism reverse proxy: one gnet engine serving clients and
// backend registrations on one address. Its methods are safe from any
// goroutine.
type Proxy struct {
	gnet.BuiltinEventEngine

	cfg      Config
	registry *pool.Registry
	metrics  *Metrics

	engine   gnet.Engine
	booted   chan struct{}
	done     chan struct{} // closed when the engine returned
	runErr   error
	addr     string
	draining atomic.Bool

	mu    sync.Mutex
	loops map[gnet.EventLoop]*loop
	list  []*loop // the same loops, for the ticker
}

// New returns a proxy with cfg's defaults resolved; Start runs it.
func New(cfg Config) (*Proxy, error) {
	cfg, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	p := &Proxy{
		cfg:      cfg,
		registry: pool.NewRegistry(),
		booted:   make(chan struct{}),
		done:     make(chan struct{}),
		loops:    map[gnet.EventLoop]*loop{},
	}
	p.metrics = newMetrics(p)
	return p, nil
}

// Registry returns the proxy's backend registry.
func (p *Proxy) Registry() *pool.Registry { return p.registry }

// Metrics returns the proxy's counters.
func (p *Proxy) Metrics() *Metrics { return p.metrics }

// Config returns the configuration with defaults resolved.
func (p *Proxy) Config() Config { return p.cfg }

// Start runs the event loops in the background and returns once the proxy
// listens (or failed to).
func (p *Proxy) Start() error {
	if err := codec.Prepare(); err != nil {
		p.cfg.Logger.Warn("request decoder not compiled ahead: the first request compiles it", "err", err)
	}
	go p.serve()
	select {
	case <-p.booted:
		return nil
	case <-p.done:
		if p.runErr == nil {
			return ErrClosed
		}
		return p.runErr
	}
}

func (p *Proxy) serve() {
	defer close(p.done)
	p.runErr = gnet.Run(p, "tcp://"+p.cfg.Listen,
		gnet.WithNumEventLoop(p.cfg.Loops),
		gnet.WithTicker(true),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		gnet.WithReuseAddr(true),
		gnet.WithLogger(gnetio.Logger(p.cfg.Logger)),
		gnet.WithLogLevel(logging.ErrorLevel),
	)
}

// Addr is the address the proxy listens on, with the port it got.
func (p *Proxy) Addr() string { return p.addr }

// Done is closed when the proxy has stopped.
func (p *Proxy) Done() <-chan struct{} { return p.done }

// Shutdown stops the proxy gracefully: new connections are closed at once,
// new requests are answered "shutting_down", and requests in flight are
// answered (by their backend, or by their timeout) before the engine stops.
// When ctx ends first, the engine stops anyway and ctx's error is returned.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.draining.Store(true)
	select {
	case <-p.booted:
	case <-p.done:
		return nil
	}
	var err error
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	// The loops publish their counts every millisecond while busy: have them
	// publish now, and on every look, so that a request read a moment ago
	// is not missed.
	for p.syncMetrics(); p.unanswered() > 0; p.syncMetrics() {
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-tick.C:
			continue
		}
		break
	}
	gnetio.Stop(context.Background(), p.engine, p.done)
	p.mu.Lock()
	for _, l := range p.list {
		l.wake.close()
	}
	p.mu.Unlock()
	return err
}

// syncWait bounds how long a Snapshot waits for a loop to publish.
const syncWait = 100 * time.Millisecond

// syncMetrics has every loop publish its counters, and reports whether the
// proxy has stopped (its loops are gone).
func (p *Proxy) syncMetrics() (stopped bool) {
	select {
	case <-p.done:
		return true
	default:
	}
	p.mu.Lock()
	loops := append([]*loop(nil), p.list...)
	p.mu.Unlock()
	timeout := time.NewTimer(syncWait)
	defer timeout.Stop()
	for _, l := range loops {
		done := make(chan struct{})
		err := l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			l.flush() // answers waiting for the end of the poll go out first
			l.metrics.publish(l.clock())
			close(done)
			return nil
		}))
		if err != nil {
			continue
		}
		select {
		case <-done:
		case <-timeout.C:
			return false
		case <-p.done:
			return true
		}
	}
	return false
}

func (p *Proxy) unanswered() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var n int64
	for _, l := range p.list {
		n += l.metrics.pub[mUnanswered].Load()
	}
	return n
}

// OnBoot learns the listening port and releases Start.
func (p *Proxy) OnBoot(eng gnet.Engine) gnet.Action {
	p.engine = eng
	p.addr = p.cfg.Listen
	if a := gnetio.Addr(eng); a != nil {
		p.addr = a.String()
	}
	close(p.booted)
	return gnet.None
}

// loopOf returns the state of the event loop that owns c, creating it on the
// loop's first connection.
func (p *Proxy) loopOf(c gnet.Conn) *loop {
	el := c.EventLoop()
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.loops[el]
	if l == nil {
		l = newLoop(p, el)
		p.loops[el] = l
		p.list = append(p.list, l)
	}
	return l
}

// OnOpen tells a data connection (its context is the link that dialed it)
// from an inbound one, whose role is known at its first message.
func (p *Proxy) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	switch x := c.Context().(type) {
	case *link:
		x.opened(c)
		x.loop.flush()
		return nil, gnet.None
	case *wake:
		x.ready = true
		return nil, gnet.None
	}
	if p.draining.Load() {
		return nil, gnet.Close
	}
	l := p.loopOf(c)
	ic := &inConn{loop: l, gc: c}
	ic.split.Max = p.cfg.MaxFrame
	c.SetContext(ic)
	l.metrics.n[mConns]++
	return nil, gnet.None
}

// OnClose releases a connection's state; the gnet.Conn is reused afterwards.
func (p *Proxy) OnClose(c gnet.Conn, err error) gnet.Action {
	switch x := c.Context().(type) {
	case *link:
		x.closed(c, err)
		x.loop.flush()
	case *inConn:
		x.closed()
		x.loop.metrics.n[mConns]--
		x.loop.flush()
	case *wake:
		x.ready = false
		x.close()
		x.loop.flush()
	}
	c.SetContext(nil)
	return gnet.None
}

// OnTraffic routes readable bytes to the connection's handler.
func (p *Proxy) OnTraffic(c gnet.Conn) gnet.Action {
	switch x := c.Context().(type) {
	case *link:
		x.traffic()
	case *inConn:
		x.traffic()
	case *wake:
		x.traffic(c)
	}
	return gnet.None
}

// OnTick asks each loop to expire overdue requests and resume paused clients.
func (p *Proxy) OnTick() (time.Duration, gnet.Action) {
	p.mu.Lock()
	for _, l := range p.list {
		_ = l.el.Execute(context.Background(), l.tickTask)
	}
	p.mu.Unlock()
	return tickInterval(p.cfg.Timeout), gnet.None
}

func tickInterval(timeout time.Duration) time.Duration {
	return min(max(timeout/50, time.Millisecond), 50*time.Millisecond)
}
