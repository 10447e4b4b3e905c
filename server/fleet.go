package server

import (
	"math"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/prism-proxy/prism/codec"
	"github.com/prism-proxy/prism/internal/fleet"
	"github.com/prism-proxy/prism/pool"
)

// The fleet registry (Config.Registry): the proxies of a fleet share their
// registrations through etcd (package internal/fleet), so that a backend
// registered with any of them is served by all.
//
// Each setup this proxy accepts is published; its key is deleted when the
// lease closes. The other proxies' entries are installed in the registry
// like static backends, without a lease here, under their own id: the
// data path dials the backend's address itself, and ejection applies to
// them as to any. A registration of this proxy (a lease) or a static
// backend of the same id wins over a remote entry; when several proxies
// publish the same id, the most recently put entry wins. When the local
// lease closes, the remote entry (if any) takes its place again.
//
// Removals are damped: a deletion in etcd (a backend left, or a proxy's
// lease expired) takes a remote backend out at once only within a budget
// of fleetRemovePercent of the policy's remote backends per second (at
// least one a second, so that one backend leaving goes at once). Past it,
// a deleted entry stays in rotation as "suspect" until the budget allows
// or the data path fails it (its backend is ejected or probing): a flood
// of deletions (etcd losing its leases, a proxy partitioned from etcd)
// cannot empty a policy faster than its backends prove dead.
//
// While etcd is unreachable nothing is removed (no deletion comes), the
// table is the last one known, the proxy's own registrations are served
// as always, /readyz answers 200 with the reason after "ready" (the
// proxy can serve; only news of the fleet is missing), and the metric
// prism_registry_up is 0. When it returns, the table is reconciled from a
// fresh read and this proxy's registrations are put again, under a new
// lease if the old one expired.

// fleetRemovePercent is the share of a policy's remote backends that
// deletions may remove per second, outside the data path's judgement.
const fleetRemovePercent = 10

// fleetDampEvery is how often suspect entries are looked at.
const fleetDampEvery = 100 * time.Millisecond

// fleetState is the proxy's part in the fleet; its maps are guarded by
// proxy.mu.
type fleetState struct {
	m       *fleet.Member
	id      string
	table   map[string]*remote           // by etcd key
	byID    map[int64]map[string]*remote // the same, by backend id
	in      map[int64]*pool.Backend      // the remote backend installed for an id
	budget  map[int64]*removeBudget      // by policy
	stopped chan struct{}                // closed when the damper should end
	done    chan struct{}                // closed when it ended
	suspect int                          // entries deleted in etcd but kept
}

// remote is an entry of another proxy.
type remote struct {
	fleet.Remote
	framing codec.Framing
	since   time.Time // deleted in etcd at; zero: live
}

// removeBudget is a token bucket of removals per policy.
type removeBudget struct {
	tokens float64
	last   time.Time
}

// take spends a removal of a policy with n remote backends, if the budget
// has one.
func (b *removeBudget) take(now time.Time, n int) bool {
	rate := math.Max(1, math.Ceil(float64(n*fleetRemovePercent)/100))
	if b.last.IsZero() {
		b.tokens = rate
	} else {
		b.tokens = math.Min(rate, b.tokens+now.Sub(b.last).Seconds()*rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// startFleet joins the fleet registry, once the proxy listens.
func (p *proxy) startFleet() error {
	eps, _ := parseRegistry(p.cfg.Registry) // resolve checked it
	if eps == nil {
		return nil
	}
	id := p.cfg.ProxyID
	if id == "" {
		host, _ := os.Hostname()
		id = strings.ReplaceAll(host+"@"+p.addr, "/", "_")
	}
	f := &fleetState{
		id: id, table: map[string]*remote{}, byID: map[int64]map[string]*remote{},
		in: map[int64]*pool.Backend{}, budget: map[int64]*removeBudget{},
		stopped: make(chan struct{}), done: make(chan struct{}),
	}
	p.mu.Lock()
	p.fleet = f
	p.mu.Unlock()
	m, err := fleet.Start(fleet.Config{
		Endpoints: eps, ProxyID: id, TTL: p.cfg.RegistryTTL,
		Put: p.fleetPut, Delete: p.fleetDelete, Logger: p.cfg.Logger,
	})
	if err != nil {
		return err
	}
	p.mu.Lock()
	f.m = m
	for b, ic := range p.leases { // setups accepted before the member existed
		if ic != nil {
			m.Publish(entryOf(b))
		}
	}
	p.mu.Unlock()
	p.cfg.Logger.Info("fleet registry", "endpoints", strings.Join(eps, ","), "proxy_id", id, "ttl", p.cfg.RegistryTTL)
	go fleetDamper(p, f)
	return nil
}

// stopFleet leaves the fleet: this proxy's keys are deleted (its lease
// revoked).
func (p *proxy) stopFleet() {
	p.mu.Lock()
	f := p.fleet
	p.mu.Unlock()
	if f == nil {
		return
	}
	close(f.stopped)
	<-f.done
	if f.m != nil {
		f.m.Close()
	}
}

func entryOf(b *pool.Backend) fleet.Entry {
	return fleet.Entry{Addr: b.Addr, Framing: b.Framing.String(), Policy: b.Policy, ID: b.ID}
}

// fleetPublish publishes a setup this proxy accepted. Called with p.mu held.
func (p *proxy) fleetPublish(b *pool.Backend) {
	if p.fleet != nil && p.fleet.m != nil {
		p.fleet.m.Publish(entryOf(b))
	}
}

// fleetLeft withdraws a registration of this proxy that left rotation,
// and puts back the fleet's entry of its id, if any.
func (p *proxy) fleetLeft(b *pool.Backend) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f := p.fleet
	if f == nil {
		return
	}
	if f.m != nil {
		f.m.Withdraw(entryOf(b))
	}
	p.fleetRefresh(b.ID)
}

// fleetPut takes an entry of another proxy (the member's goroutine).
func (p *proxy) fleetPut(r fleet.Remote) {
	fr := codec.Binary
	if r.Framing == codec.Text.String() {
		fr = codec.Text
	}
	if _, _, err := net.SplitHostPort(r.Addr); err != nil {
		p.cfg.Logger.Warn("fleet: skipping an entry whose addr is not host:port", "key", r.Key, "addr", r.Addr)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	f := p.fleet
	if old := f.table[r.Key]; old != nil {
		f.drop(old)
	}
	e := &remote{Remote: r, framing: fr}
	f.table[r.Key] = e
	if f.byID[r.ID] == nil {
		f.byID[r.ID] = map[string]*remote{}
	}
	f.byID[r.ID][r.Key] = e
	p.fleetRefresh(r.ID)
}

// fleetDelete takes the deletion of another proxy's entry (the member's
// goroutine): at once if the budget allows, else the entry turns suspect.
func (p *proxy) fleetDelete(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f := p.fleet
	e := f.table[key]
	if e == nil || !e.since.IsZero() {
		return
	}
	now := time.Now()
	if !p.fleetRouted(e) || f.budgetOf(e.Policy).take(now, f.count(e.Policy)) {
		f.drop(e)
		p.fleetRefresh(e.ID)
		return
	}
	e.since = now
	f.suspect++
	p.cfg.Logger.Info("fleet: backend deleted from the registry kept as suspect: the policy's removals are at their rate",
		"id", e.ID, "policy", e.Policy, "addr", e.Addr, "proxy", e.Proxy)
}

// fleetRouted reports whether e is the entry in rotation for its id.
func (p *proxy) fleetRouted(e *remote) bool {
	b := p.fleet.in[e.ID]
	return b != nil && !b.Removed() && b.Via == e.Proxy && b.Addr == e.Addr && b.Policy == e.Policy
}

func (f *fleetState) budgetOf(policy int64) *removeBudget {
	b := f.budget[policy]
	if b == nil {
		b = &removeBudget{}
		f.budget[policy] = b
	}
	return b
}

// count returns the remote backends in rotation of a policy.
func (f *fleetState) count(policy int64) int {
	n := 0
	for _, b := range f.in {
		if b.Policy == policy && !b.Removed() {
			n++
		}
	}
	return n
}

// drop forgets e.
func (f *fleetState) drop(e *remote) {
	if !e.since.IsZero() {
		f.suspect--
	}
	delete(f.table, e.Key)
	if ids := f.byID[e.ID]; ids != nil {
		delete(ids, e.Key)
		if len(ids) == 0 {
			delete(f.byID, e.ID)
		}
	}
}

// fleetRefresh puts in rotation the fleet's entry for id, the most
// recently put, unless a lease of this proxy or a static backend holds
// the id. Called with p.mu held.
func (p *proxy) fleetRefresh(id int64) {
	f := p.fleet
	if f == nil {
		return
	}
	cur := p.registry.Lookup(id)
	if p.static[id] != nil || cur != nil && p.leases[cur] != nil {
		return // local wins; the remote one installed, if any, was replaced
	}
	var best *remote
	for _, e := range f.byID[id] {
		if best == nil || e.Rev > best.Rev || e.Rev == best.Rev && e.Key < best.Key {
			best = e
		}
	}
	inst := f.in[id]
	log := p.cfg.Logger
	if best == nil {
		if inst != nil {
			delete(f.in, id)
			if p.registry.Remove(inst) {
				log.Info("fleet backend left rotation: no proxy of the fleet holds it", "id", id,
					"policy", inst.Policy, "addr", inst.Addr, "proxy", inst.Via)
			}
		}
		return
	}
	if inst != nil && !inst.Removed() && inst.Via == best.Proxy && inst.Addr == best.Addr &&
		inst.Policy == best.Policy && inst.Framing == best.framing {
		return
	}
	b := &pool.Backend{ID: id, Policy: best.Policy, Addr: best.Addr, Framing: best.framing, Via: best.Proxy}
	p.registry.Register(b)
	f.in[id] = b
	log.Info("fleet backend in rotation", "id", id, "policy", b.Policy, "addr", b.Addr,
		"framing", b.Framing.String(), "proxy", b.Via)
}

// fleetDamper removes suspect entries as the budget allows, or at once
// when the data path failed their backend.
func fleetDamper(p *proxy, f *fleetState) {
	defer close(f.done)
	t := time.NewTicker(fleetDampEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-f.stopped:
			return
		}
		p.mu.Lock()
		if f.suspect > 0 {
			p.fleetDamp(time.Now())
		}
		p.mu.Unlock()
	}
}

// fleetDamp looks at the suspects, oldest first. Called with p.mu held.
func (p *proxy) fleetDamp(now time.Time) {
	f := p.fleet
	var sus []*remote
	for _, e := range f.table {
		if !e.since.IsZero() {
			sus = append(sus, e)
		}
	}
	slices.SortFunc(sus, func(a, b *remote) int { return a.since.Compare(b.since) })
	for _, e := range sus {
		routed := p.fleetRouted(e)
		failed := routed && f.in[e.ID].State() != pool.Healthy
		if routed && !failed && !f.budgetOf(e.Policy).take(now, f.count(e.Policy)) {
			continue
		}
		p.cfg.Logger.Info("fleet: suspect backend removed", "id", e.ID, "policy", e.Policy, "addr", e.Addr,
			"proxy", e.Proxy, "failed_on_data_path", failed, "suspect_for", now.Sub(e.since).Round(time.Millisecond))
		f.drop(e)
		p.fleetRefresh(e.ID)
	}
}

// fleetStatus reports the registry's state: whether it is configured,
// reachable, why not, and the number of remote entries.
func (p *proxy) fleetStatus() (on, up bool, why string, n int) {
	p.mu.Lock()
	f := p.fleet
	if f != nil {
		n = len(f.table)
	}
	p.mu.Unlock()
	if f == nil || f.m == nil {
		return f != nil, false, "not started", n
	}
	up, why, since := f.m.Status()
	if !up {
		why = "fleet registry unreachable since " + since.UTC().Format(time.RFC3339) + " (" + why +
			"): serving the last known table and local registrations"
	}
	return true, up, why, n
}
