package server

import (
	"context"
	"net/netip"
	"slices"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/prism-proxy/prism/pool"
)

// settings are what may change while the proxy runs: the configuration and
// what the loops derive from it. A snapshot is never modified: Reload
// publishes a new one (proxy.live), and each loop picks it up in its next
// tick (loop.reload), so the request path reads its own copy of the limits
// and takes no lock.
type settings struct {
	cfg  Config
	lim  limits
	nets []netip.Prefix // parsed RegisterCIDR
}

// The settings that a running proxy cannot change, by flag name: Reload
// keeps the running value and reports them. The listeners and loops are
// the engine's; the connection cap's reserve of descriptors is counted per
// loop at start.
var restartOnly = []struct {
	name string
	get  func(*Config) any
}{
	{"listen", func(c *Config) any { return c.Listen }},
	{"register-listen", func(c *Config) any { return c.RegisterListen }},
	{"loops", func(c *Config) any { return c.Loops }},
	{"max-conns", func(c *Config) any { return c.MaxConns }},
	{"registry", func(c *Config) any { return c.Registry }},
	{"proxy-id", func(c *Config) any { return c.ProxyID }},
	{"registry-ttl", func(c *Config) any { return c.RegistryTTL }},
}

// Reload applies cfg, resolved as New resolves it, to the running proxy
// without dropping a connection: timeouts, retries and the retry budget,
// the limits (frames, in-flight requests, memory), ejection, the
// registration token and networks, connection timeouts, readiness and the
// static backends take effect at once (requests already started keep their
// deadline). The settings a running proxy cannot change keep their running
// value; restartNeeded names them (by flag name) when cfg changes them.
// cfg.Logger is ignored: the proxy keeps its logger.
//
// Reload returns once the event loops have the new settings (it waits a
// second at most for a busy loop, which then takes them at its next tick).
// On an error (the same as New's) nothing changes. Safe from any
// goroutine, before or after Start; calls are applied one at a time.
func (p *Proxy) Reload(cfg Config) (restartNeeded []string, err error) {
	px := p.p
	px.reloadMu.Lock()
	defer px.reloadMu.Unlock()
	cfg.Logger = px.cfg.Logger
	if cfg, err = cfg.resolve(); err != nil {
		return nil, err
	}
	run := px.live.Load().cfg
	for _, f := range restartOnly {
		if f.get(&cfg) != f.get(&run) {
			restartNeeded = append(restartNeeded, f.name)
		}
	}
	cfg.Listen, cfg.RegisterListen, cfg.Loops, cfg.MaxConns = run.Listen, run.RegisterListen, run.Loops, run.MaxConns
	cfg.Registry, cfg.ProxyID, cfg.RegistryTTL = run.Registry, run.ProxyID, run.RegistryTTL
	px.apply(cfg)
	px.syncSettings()
	return restartNeeded, nil
}

// reloadWait bounds how long Reload waits for the loops to take the new
// settings; a loop that is later takes them at its next tick.
const reloadWait = time.Second

// syncSettings has every loop take the current settings now, through its
// task queue, and waits for them (at most reloadWait): a request read after
// Reload returns is under the new settings.
func (p *proxy) syncSettings() {
	ctx, cancel := context.WithTimeout(context.Background(), reloadWait)
	defer cancel()
	runOnLoops(ctx, p, func(l *loop) struct{} {
		if s := l.p.live.Load(); s != l.set {
			l.reload(s)
		}
		return struct{}{}
	})
}

// apply publishes cfg, resolved, as the proxy's settings: ejection, the
// static backends, then the loops' snapshot. New and Reload call it.
func (p *proxy) apply(cfg Config) {
	nets, _ := parseNets(cfg.RegisterCIDR) // resolve checked it
	p.registry.SetOutlier(pool.Outlier{
		After: cfg.EjectAfter, Base: cfg.EjectTime, Max: cfg.EjectMaxTime,
		MaxPercent: cfg.MaxEjectedPercent, Probe: cfg.Timeout,
	})
	p.setStatic(cfg.Backends)
	p.live.Store(&settings{cfg: cfg, lim: newLimits(&cfg), nets: nets})
}

// setStatic makes specs the static backends: new ones enter rotation,
// changed ones (policy, address or framing) are replaced, unchanged ones
// keep their state (ejection included), and the others leave. A lease
// holding the id of a new static backend is revoked.
func (p *proxy) setStatic(specs []StaticBackend) {
	log := p.cfg.Logger
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range specs {
		fr, _ := parseFraming(s.Framing) // resolve checked it
		if b := p.static[s.ID]; b != nil && !b.Removed() && b.Policy == s.Policy && b.Addr == s.Addr && b.Framing == fr {
			continue
		}
		b := &pool.Backend{ID: s.ID, Policy: s.Policy, Addr: s.Addr, Framing: fr, Static: true}
		replaced := p.registry.Register(b)
		p.static[s.ID] = b
		log.Info("static backend in rotation", "id", b.ID, "policy", b.Policy, "addr", b.Addr, "framing", b.Framing.String())
		if ic := p.leases[replaced]; ic != nil {
			delete(p.leases, replaced)
			if p.fleet != nil && p.fleet.m != nil {
				p.fleet.m.Withdraw(entryOf(replaced))
			}
			text := "id " + itoa(s.ID) + " is now a static backend (configuration)"
			_ = ic.loop.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
				ic.revoke(replaced, text)
				return nil
			}))
		}
	}
	for id, b := range p.static {
		if !slices.ContainsFunc(specs, func(s StaticBackend) bool { return s.ID == id }) {
			p.registry.Remove(b)
			delete(p.static, id)
			log.Info("static backend left rotation", "id", b.ID, "policy", b.Policy, "addr", b.Addr)
			p.fleetRefresh(id) // the fleet's entry of the id, if any, takes its place
		}
	}
}
