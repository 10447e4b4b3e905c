package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/panjf2000/gnet/v2/pkg/logging"

	"github.com/prism-proxy/prism/codec"
	"github.com/prism-proxy/prism/internal/gnetio"
	"github.com/prism-proxy/prism/pool"
)

// Errors of the proxy's lifecycle.
var (
	// ErrClosed is returned by Start on a proxy that was shut down.
	ErrClosed = errors.New("server: proxy closed")
	// ErrStarted is returned by Start on a proxy already started.
	ErrStarted = errors.New("server: proxy already started")
	// ErrDrainExpired is wrapped in Shutdown's error when its context ended
	// with requests in flight, which were answered "shutting_down".
	ErrDrainExpired = errors.New("server: drain expired: requests in flight answered shutting_down")
)

// Proxy is the Prism reverse proxy: one gnet engine serving clients and
// backend registrations on one address. Its methods are safe from any
// goroutine. It is a handle on the engine's handler (proxy), whose gnet
// callbacks are not part of the API.
type Proxy struct {
	p *proxy
}

// proxy is the gnet event handler and the state shared by the loops.
type proxy struct {
	gnet.BuiltinEventEngine

	cfg      Config                   // as resolved by New; what may change live is in live
	live     atomic.Pointer[settings] // what Reload changes (reload.go)
	reloadMu sync.Mutex               // one Reload at a time
	registry *pool.Registry
	metrics  *Metrics

	engine    gnet.Engine
	booted    chan struct{}
	done      chan struct{} // closed when the engine returned
	stopped   chan struct{} // closed when Shutdown's stop is complete
	stopOnce  sync.Once
	runErr    error
	addr      string
	regAddr   *net.TCPAddr // the RegisterListen listener's address; nil: none
	listen    string       // Config.Listen, its port 0 resolved (gnetio.ListenAddr)
	release   func()       // of the ports held for port 0, once listening
	regListen string       // Config.RegisterListen, the same
	draining  atomic.Bool
	handover  atomic.Bool // Handover began: clients are sent away

	epoch time.Time      // the loops' clock counts from here (monotonic)
	tails sync.WaitGroup // half-closed clients' writers (halfclose.go)

	// Inbound connections open, across loops, against Config.MaxConns; an
	// atomic add per connection opened or closed, none per request.
	open    atomic.Int64
	refused atomic.Int64 // connections closed at once for the cap

	// Each loop's share of the descriptors backend links may take
	// (linkBudget), and the links not dialed for want of them.
	linkShare     int64
	linksRefused  atomic.Int64
	linksReported int64 // the tick's own: what the log reported last

	// The tick's own (OnTick runs on one goroutine): what the refusal log
	// reported last, and when.
	refusedLogged int64
	refusedLogAt  time.Time

	mu    sync.Mutex
	life  lifecycle
	loops map[gnet.EventLoop]*loop
	list  []*loop // the same loops, for the ticker

	// The lease connection of each registration, to tell it when a newer
	// registration of its id replaces it: it may live on another loop.
	leases map[*pool.Backend]*inConn
	// The static backends (Config.Backends) by id: a setup of their id is
	// refused.
	static map[int64]*pool.Backend
	// The fleet registry (fleet.go); nil without Config.Registry.
	fleet *fleetState
}

type lifecycle uint8

const (
	lifeNew lifecycle = iota
	lifeStarted
	lifeClosed // shut down before it started
)

// New returns a proxy with cfg's defaults resolved; Start runs it.
func New(cfg Config) (*Proxy, error) {
	cfg, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	p := &proxy{
		cfg:      cfg,
		registry: pool.NewRegistry(),
		booted:   make(chan struct{}),
		done:     make(chan struct{}),
		stopped:  make(chan struct{}),
		loops:    map[gnet.EventLoop]*loop{},
		leases:   map[*pool.Backend]*inConn{},
		static:   map[int64]*pool.Backend{},
		epoch:    time.Now(),
	}
	p.linkShare = max(linkBudget(openFilesLimit(), cfg.Loops, cfg.MaxConns)/int64(cfg.Loops), 2)
	p.apply(cfg)
	p.metrics = newMetrics(p)
	return &Proxy{p}, nil
}

// Metrics returns the proxy's counters.
func (p *Proxy) Metrics() *Metrics { return p.p.metrics }

// Config returns the configuration with defaults resolved, as the last
// Reload left it. Safe from any goroutine.
func (p *Proxy) Config() Config {
	cfg := p.p.live.Load().cfg
	cfg.Backends = append([]StaticBackend(nil), cfg.Backends...)
	return cfg
}

// BackendInfo describes a registered backend at one moment.
type BackendInfo struct {
	ID      int64  `json:"id"`
	Policy  int64  `json:"policy"`
	Addr    string `json:"addr"`    // its data address, as the proxy dials it
	Framing string `json:"framing"` // "binary" or "text"
	Routed  uint64 `json:"routed"`  // requests routed to it
	State   string `json:"state"`   // "up", "ejected" or "probing"
	// Failures reported (timeouts, failed or broken data connections), and
	// requests on its data connections not yet replied to.
	Failures uint64 `json:"failures"`
	Inflight int    `json:"inflight"`
	Static   bool   `json:"static"` // from the configuration, not registered by a setup
	// Fleet names the proxy of the fleet registry that holds its setup;
	// empty for this proxy's own registrations and static backends.
	Fleet string `json:"fleet,omitempty"`
}

var stateNames = [...]string{pool.Healthy: "up", pool.Ejected: "ejected", pool.Probing: "probing"}

// Backends lists the backends in rotation, ordered by policy, then id.
// It asks each loop for its in-flight counts (waiting for a busy one at
// most syncWait).
func (p *Proxy) Backends() []BackendInfo {
	bs := p.p.registry.Backends()
	inflight := p.p.backendInflight()
	out := make([]BackendInfo, 0, len(bs))
	for _, b := range bs {
		out = append(out, BackendInfo{b.ID, b.Policy, b.Addr, b.Framing.String(), b.Routed(), stateNames[b.State()],
			b.Failures(), inflight[b], b.Static, b.Via})
	}
	return out
}

// Start runs the event loops in the background and returns once the proxy
// listens (or failed to). A proxy starts once: Start again returns
// ErrStarted, and after Shutdown ErrClosed.
func (p *Proxy) Start() error {
	px := p.p
	px.mu.Lock()
	life := px.life
	if life == lifeNew {
		px.life = lifeStarted
	}
	px.mu.Unlock()
	switch life {
	case lifeStarted:
		return ErrStarted
	case lifeClosed:
		return ErrClosed
	}
	if err := codec.Prepare(); err != nil {
		px.cfg.Logger.Warn("request decoder not compiled ahead: the first request compiles it", "err", err)
	}
	go px.serve()
	select {
	case <-px.booted:
		if err := px.startFleet(); err != nil {
			p.Shutdown(context.Background())
			return err
		}
		return nil
	case <-px.done:
		if px.runErr == nil {
			return ErrClosed
		}
		return px.runErr
	}
}

func (p *proxy) serve() {
	defer close(p.done)
	// One engine for both listeners (gnet.Rotate), so that a lease, a
	// client and their data connections share the same event loops.
	addr := gnetio.ClaimAddr // the port is this proxy's alone (Config.SharePort)
	if p.cfg.SharePort {
		addr = gnetio.ListenAddr
	}
	listen, release, err := addr(p.cfg.Listen)
	p.release = release
	if err == nil && p.cfg.RegisterListen != "" {
		var release2 func()
		p.regListen, release2, err = addr(p.cfg.RegisterListen)
		if err == nil {
			p.release = func() { release(); release2() }
		}
	}
	if err != nil {
		p.runErr = err
		return
	}
	p.listen = listen
	addrs := []string{"tcp://" + listen}
	if p.regListen != "" {
		addrs = append(addrs, "tcp://"+p.regListen)
	}
	// A listener per loop (gnetio.ListenAddr): a loop accepts one
	// connection per event and OnOpen runs at once on the same goroutine,
	// so a connection refused by the cap (measured: the flood test in
	// cmd/prism) gives its descriptor back before the loop accepts
	// another: at most one per loop is over the cap. Where gnet ignores the
	// option the cap is only as good as acceptMargin.
	defer func() { p.release() }() // again, if the engine failed before OnBoot (closing twice is harmless)
	p.runErr = gnet.Rotate(p, addrs,
		gnet.WithNumEventLoop(p.cfg.Loops),
		gnet.WithReusePort(true),
		gnet.WithTicker(true),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		gnet.WithReuseAddr(true),
		gnet.WithLogger(gnetio.Logger(p.cfg.Logger)),
		gnet.WithLogLevel(logging.ErrorLevel),
	)
}

// Addr is the address the proxy listens on, with the port it got; empty
// before Start.
func (p *Proxy) Addr() string {
	select {
	case <-p.p.booted:
		return p.p.addr
	default:
		return ""
	}
}

// RegisterAddr is the address of the listener for registrations only
// (Config.RegisterListen), with the port it got; empty when there is none,
// or before Start.
func (p *Proxy) RegisterAddr() string {
	select {
	case <-p.p.booted:
		if a := p.p.regAddr; a != nil {
			return a.String()
		}
	default:
	}
	return ""
}

// Done is closed when the proxy has stopped.
func (p *Proxy) Done() <-chan struct{} { return p.p.done }

// Shutdown stops the proxy gracefully: new connections are closed at once,
// new requests are answered "shutting_down", and requests in flight are
// answered (by their backend, or by their timeout) before the engine
// stops. It logs the drain's start, its progress every second and its end,
// with counts.
//
// When ctx ends first, the drain has expired: each loop answers every
// request still unanswered with "shutting_down", writes the answers, and
// closes its client and lease connections; then the engine stops. That
// takes at most drainGrace more, and Shutdown returns an error that wraps
// ErrDrainExpired and ctx's error (or only ctx's error when the loops did
// not finish within drainGrace: Done tells when they did). When nothing
// was left to answer at the deadline, the drain counts as complete.
//
// Shutdown returns nil once the drain completed and the engine stopped.
// Before Start it returns at once, and Start then fails. Safe from any
// goroutine; a second call drains along with the first.
func (p *Proxy) Shutdown(ctx context.Context) error {
	px := p.p
	px.mu.Lock()
	life := px.life
	if life == lifeNew {
		px.life = lifeClosed
	}
	px.mu.Unlock()
	if life == lifeNew {
		return nil
	}
	px.draining.Store(true)
	select {
	case <-px.booted:
	case <-px.done:
		return nil
	}
	log := px.cfg.Logger
	began := time.Now()
	// The loops publish their counts every millisecond while busy: have them
	// publish now, and on every look, so that a request read a moment ago
	// is not missed.
	px.syncMetrics()
	inflight := px.unanswered()
	log.Info("drain started", "inflight", inflight)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	progress := time.NewTicker(time.Second)
	defer progress.Stop()
	expired := false
	for px.syncMetrics(); !expired && px.unanswered() > 0; px.syncMetrics() {
		select {
		case <-ctx.Done():
			expired = true
		case <-progress.C:
			log.Info("draining", "unanswered", px.unanswered(), "elapsed", time.Since(began).Round(time.Millisecond))
		case <-tick.C:
		}
	}
	if !expired {
		log.Info("drain complete", "answered", inflight, "elapsed", time.Since(began).Round(time.Millisecond))
		px.stopOnce.Do(func() { go px.stop() })
		select {
		case <-px.stopped:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	grace, cancel := context.WithTimeout(context.Background(), drainGrace)
	defer cancel()
	aborted, complete := px.abort(grace)
	log.Warn("drain expired: requests in flight answered shutting_down",
		"inflight", inflight, "shutting_down", aborted, "answered", max(inflight-int64(aborted), 0),
		"all_loops", complete, "elapsed", time.Since(began).Round(time.Millisecond))
	px.stopOnce.Do(func() { go px.stop() })
	select {
	case <-px.stopped:
	case <-grace.Done():
		return ctx.Err()
	}
	switch {
	case !complete:
		return ctx.Err()
	case aborted > 0:
		return fmt.Errorf("%w (%d requests): %w", ErrDrainExpired, aborted, ctx.Err())
	}
	return nil
}

// drainGrace bounds what Shutdown does after an expired drain: answering
// the calls left, writing, closing and stopping the engine.
const drainGrace = 2 * time.Second

// abort has every loop answer its unanswered calls shutting_down and close
// its inbound connections (loop.abort), through the loops' task queues. It
// returns how many calls were answered so, and whether every loop did it
// before ctx ended.
func (p *proxy) abort(ctx context.Context) (answered int, complete bool) {
	ns, complete := runOnLoops(ctx, p, (*loop).abort)
	for _, n := range ns {
		answered += n
	}
	return answered, complete
}

// stop stops the engine, waits for its loops to end, and closes what they
// used.
func (p *proxy) stop() {
	gnetio.Stop(context.Background(), p.engine, p.done)
	p.stopFleet()  // after the leases closed: their keys go with the lease
	p.tails.Wait() // they end with done closed, once written
	p.mu.Lock()
	for _, l := range p.list {
		l.wake.close() // only now: a loop may ring it until it ends
	}
	p.mu.Unlock()
	close(p.stopped)
}

// syncWait bounds how long a Snapshot waits for a loop to publish.
const syncWait = 100 * time.Millisecond

// syncMetrics has every loop publish its counters (waiting for a busy one
// at most syncWait), and reports whether the proxy has stopped (its loops
// are gone).
func (p *proxy) syncMetrics() (stopped bool) {
	ctx, cancel := context.WithTimeout(context.Background(), syncWait)
	defer cancel()
	runOnLoops(ctx, p, func(l *loop) struct{} {
		l.flush() // answers waiting for the end of the poll go out first
		l.metrics.n[mHeld] = l.held
		l.metrics.publish(l.clock())
		return struct{}{}
	})
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// runOnLoops runs f on every loop, in the loop (through its task queue: a
// control path, Execute allocates), all at once, and collects what they
// return until ctx ends or the proxy stops; complete reports whether every
// loop answered.
func runOnLoops[T any](ctx context.Context, p *proxy, f func(*loop) T) (res []T, complete bool) {
	p.mu.Lock()
	loops := append([]*loop(nil), p.list...)
	p.mu.Unlock()
	ch := make(chan T, len(loops))
	pending := 0
	for _, l := range loops {
		err := l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			ch <- f(l)
			return nil
		}))
		if err == nil {
			pending++
		}
	}
	for ; pending > 0; pending-- {
		select {
		case v := <-ch:
			res = append(res, v)
		case <-ctx.Done():
			return res, false
		case <-p.done:
			return res, false
		}
	}
	return res, true
}

func (p *proxy) unanswered() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var n int64
	for _, l := range p.list {
		n += l.metrics.pub[mUnanswered].Load()
	}
	return n
}

// OnBoot learns the listening port and releases Start.
func (p *proxy) OnBoot(eng gnet.Engine) gnet.Action {
	p.engine = eng
	p.addr = p.listen
	if a := gnetio.ListenerAddr(eng, p.listen); a != nil {
		p.addr = a.String()
	}
	if p.cfg.RegisterListen != "" {
		p.regAddr = gnetio.ListenerAddr(eng, p.regListen)
		if p.regAddr == nil {
			p.cfg.Logger.Error("cannot learn the registration listener's address: setups are taken on both",
				"register_listen", p.cfg.RegisterListen)
		}
	}
	p.release() // the ports picked for port 0 were held until now (gnetio.ListenAddr)
	close(p.booted)
	return gnet.None
}

// loopOf returns the state of the event loop that owns c, creating it on the
// loop's first connection.
func (p *proxy) loopOf(c gnet.Conn) *loop {
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
func (p *proxy) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
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
	// Past the cap the connection is closed here, before it is read:
	// returning Close frees its descriptor before this loop takes another.
	if p.open.Add(1) > int64(p.cfg.MaxConns) {
		p.open.Add(-1)
		p.refused.Add(1)
		return nil, gnet.Close
	}
	l := p.loopOf(c)
	ic := &inConn{loop: l, gc: c, regOnly: p.onRegisterListener(c), lastRead: l.clock()}
	ic.split.Max = l.lim.maxFrame
	c.SetContext(ic)
	l.conns[ic] = struct{}{}
	l.metrics.n[mConns]++
	if p.handover.Load() {
		ic.goAway() // accepted as the listener closed: the next process serves it
	}
	return nil, gnet.None
}

// onRegisterListener reports whether c came in on the listener for
// registrations only.
func (p *proxy) onRegisterListener(c gnet.Conn) bool {
	reg := p.regAddr
	if reg == nil {
		return false
	}
	local, ok := c.LocalAddr().(*net.TCPAddr)
	return ok && local.Port == reg.Port && (reg.IP.IsUnspecified() || reg.IP.Equal(local.IP))
}

// setupRefusal returns why a setup on ic may not register, or "".
func (p *proxy) setupRefusal(ic *inConn) string {
	if p.regAddr != nil && !ic.regOnly {
		return "setups are taken on the registration address only"
	}
	nets := p.live.Load().nets
	if len(nets) == 0 {
		return ""
	}
	if ta, ok := ic.gc.RemoteAddr().(*net.TCPAddr); ok {
		if a, ok := netip.AddrFromSlice(ta.IP); ok {
			a = a.Unmap()
			for _, n := range nets {
				if n.Contains(a) {
					return ""
				}
			}
		}
	}
	return "setups are not taken from this address"
}

// OnClose releases a connection's state; the gnet.Conn is reused afterwards.
func (p *proxy) OnClose(c gnet.Conn, err error) gnet.Action {
	switch x := c.Context().(type) {
	case *link:
		x.closed(c, err)
		x.loop.flush()
	case *inConn:
		x.closed(c, err)
		if x.tail == nil { // a half-closed client's tail keeps its slot, and counts, until it ends
			x.loop.metrics.n[mConns]--
			p.open.Add(-1)
		}
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
func (p *proxy) OnTraffic(c gnet.Conn) gnet.Action {
	switch x := c.Context().(type) {
	case *link:
		return x.traffic()
	case *inConn:
		x.traffic()
	case *wake:
		x.traffic(c)
	}
	return gnet.None
}

// OnTick asks each loop to expire overdue requests and resume paused clients.
func (p *proxy) OnTick() (time.Duration, gnet.Action) {
	p.mu.Lock()
	for _, l := range p.list {
		_ = l.el.Execute(context.Background(), l.tickTask)
	}
	p.mu.Unlock()
	p.logRefused()
	p.logLinksRefused()
	p.metrics.logErrors(p.cfg.Logger, p.live.Load().cfg.ErrorLogEvery)
	return tickInterval(p.live.Load().cfg.Timeout), gnet.None
}

// refusedLogEvery spaces the refusal log: a flood must not become a log
// line per connection.
const refusedLogEvery = time.Second

// logRefused logs the connections refused at the cap since the last line,
// at most once per refusedLogEvery.
func (p *proxy) logRefused() {
	n := p.refused.Load()
	if n == p.refusedLogged || time.Since(p.refusedLogAt) < refusedLogEvery {
		return
	}
	p.cfg.Logger.Warn("connections refused: at the connection cap (-max-conns)",
		"refused", n-p.refusedLogged, "total", n, "max_conns", p.cfg.MaxConns)
	p.refusedLogged, p.refusedLogAt = n, time.Now()
}

func tickInterval(timeout time.Duration) time.Duration {
	return min(max(timeout/50, time.Millisecond), 50*time.Millisecond)
}

// logLinksRefused logs the backend links not dialed for want of
// descriptors since the last line, at most once per refusedLogEvery (it
// shares the connection refusals' clock).
func (p *proxy) logLinksRefused() {
	n := p.linksRefused.Load()
	if n == p.linksReported || time.Since(p.refusedLogAt) < refusedLogEvery {
		return
	}
	p.cfg.Logger.Warn("backend connections not opened: the open-files limit has no room left for them; requests for those backends were answered overloaded (raise ulimit -n, or lower -max-conns)",
		"refused", n-p.linksReported, "total", n, "max_conns", p.cfg.MaxConns, "open_files", openFilesLimit())
	p.linksReported, p.refusedLogAt = n, time.Now()
}

// isOwnAddr reports whether host:port, a backend's data address, is one of
// the proxy's listeners: the address the setup came in on (local), or the
// client or registration listener's port on the same host. A listener on
// the wildcard address (local is then 0.0.0.0 or ::, gnet gives a
// connection its listener's address) is on every address of the host.
func (p *proxy) isOwnAddr(host string, port int, local net.Addr) bool {
	la, ok := local.(*net.TCPAddr)
	if !ok {
		return false
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return false
	}
	switch {
	case ip.Equal(la.IP), ip.IsLoopback() && la.IP.IsLoopback():
	case la.IP.IsUnspecified() && (ip.IsLoopback() || isHostAddr(ip)):
	default:
		return false
	}
	if port == la.Port {
		return true
	}
	if a, err := net.ResolveTCPAddr("tcp", p.addr); err == nil && a.Port == port {
		return true
	}
	return p.regAddr != nil && p.regAddr.Port == port
}

// isHostAddr reports whether ip is an address of one of this host's
// interfaces.
func isHostAddr(ip net.IP) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
			return true
		}
	}
	return false
}
