package pool

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/prism-proxy/prism/codec"
)

// Backend is one registration: a server of the pool. Its fields are set
// before Register and never change afterwards, so any goroutine may read them.
// A backend is in rotation from Register to Remove (or to the Register of
// another backend of its id): whether a lease holds it (a setup) or the
// configuration does (a static backend) is the caller's business.
type Backend struct {
	ID      int64
	Policy  int64
	Addr    string        // host:port of the backend's data listener
	Framing codec.Framing // the framing of its setup, used on data connections
	Static  bool          // given in the configuration, not registered by a setup
	Via     string        // the fleet proxy holding its setup; empty: this proxy or the configuration

	removed atomic.Bool
	routed  atomic.Uint64
	h       health
	lat     latency // reply latency estimate, for p2c (balance.go)
}

// Removed reports whether the backend left rotation (lease closed or replaced).
// Safe from any goroutine.
func (b *Backend) Removed() bool { return b.removed.Load() }

// Routed counts the requests the selector handed to b. Safe from any goroutine.
func (b *Backend) Routed() uint64 { return b.routed.Load() }

// Policy is the immutable set of backends of one policy in one snapshot.
type Policy struct {
	ID       int64
	Backends []*Backend // in registration order; never modified
	next     *atomic.Uint64
}

// Next returns the next backend in round-robin order: one atomic add, no lock.
// Over k*n calls with n stable backends each is returned exactly k times.
// Safe from any goroutine.
func (p *Policy) Next() *Backend {
	i := p.next.Add(1) - 1
	b := p.Backends[i%uint64(len(p.Backends))]
	b.routed.Add(1)
	return b
}

// NextExcept is Next with some backends passed over (a failed one, or ones
// the caller cannot use now): it tries each backend at most once, in
// round-robin order, and returns nil when skip rejects them all. skip may be
// nil.
func (p *Policy) NextExcept(skip func(*Backend) bool) *Backend {
	n := uint64(len(p.Backends))
	start := p.next.Add(1) - 1
	for i := uint64(0); i < n; i++ {
		b := p.Backends[(start+i)%n]
		if skip == nil || !skip(b) {
			b.routed.Add(1)
			return b
		}
	}
	return nil
}

type snapshot struct {
	policies map[int64]*Policy
}

// Registry holds the current registrations. Its methods are safe from any
// goroutine; Policy is lock-free.
type Registry struct {
	mu       sync.Mutex
	byID     map[int64]*Backend
	counters map[int64]*atomic.Uint64 // per policy; kept across snapshots
	snap     atomic.Pointer[snapshot]
	outlier  atomic.Pointer[Outlier]
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	r := &Registry{byID: map[int64]*Backend{}, counters: map[int64]*atomic.Uint64{}}
	r.SetOutlier(Outlier{})
	r.snap.Store(&snapshot{policies: map[int64]*Policy{}})
	return r
}

// SetOutlier sets how backends are ejected (health.go). It may change while
// the registry is in use: a backend's state (its failures in a row, the end
// of its ejection) is kept, and the new settings apply from the next
// failure or ejection on.
func (r *Registry) SetOutlier(o Outlier) {
	o = o.resolve()
	r.outlier.Store(&o)
}

// Policy returns the backends of policy id, or nil when none is registered.
func (r *Registry) Policy(id int64) *Policy {
	return r.snap.Load().policies[id]
}

// Register puts b in rotation. A registration with the same id is replaced:
// it leaves rotation and is returned.
func (r *Registry) Register(b *Backend) (replaced *Backend) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if old := r.byID[b.ID]; old != nil {
		old.removed.Store(true)
		replaced = old
	}
	r.byID[b.ID] = b
	r.rebuild()
	return replaced
}

// Remove takes b out of rotation if it is still the registration of its id
// (a lease closing after its id was re-registered removes nothing). It
// reports whether b was removed.
func (r *Registry) Remove(b *Backend) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	b.removed.Store(true)
	if r.byID[b.ID] != b {
		return false
	}
	delete(r.byID, b.ID)
	r.rebuild()
	return true
}

// Lookup returns the registration of id, or nil.
func (r *Registry) Lookup(id int64) *Backend {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byID[id]
}

// Backends lists the registered backends ordered by policy, then id.
func (r *Registry) Backends() []*Backend {
	r.mu.Lock()
	out := make([]*Backend, 0, len(r.byID))
	for _, b := range r.byID {
		out = append(out, b)
	}
	r.mu.Unlock()
	slices.SortFunc(out, func(a, b *Backend) int {
		if a.Policy != b.Policy {
			return cmp.Compare(a.Policy, b.Policy)
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return out
}

// rebuild swaps in a new snapshot. Backends keep their registration order
// within a policy so that round robin is stable across unrelated changes.
func (r *Registry) rebuild() {
	old := r.snap.Load()
	policies := make(map[int64]*Policy, len(old.policies)+1)
	for _, b := range r.byID {
		p := policies[b.Policy]
		if p == nil {
			c := r.counters[b.Policy]
			if c == nil {
				c = new(atomic.Uint64)
				r.counters[b.Policy] = c
			}
			p = &Policy{ID: b.Policy, next: c}
			policies[b.Policy] = p
		}
		p.Backends = append(p.Backends, b)
	}
	for _, p := range policies {
		p.Backends = r.ordered(p.Backends, old.policies[p.ID])
	}
	r.snap.Store(&snapshot{policies: policies})
}

// ordered keeps the previous snapshot's order for backends already present
// and appends new ones sorted by id.
func (r *Registry) ordered(bs []*Backend, prev *Policy) []*Backend {
	pos := map[*Backend]int{}
	if prev != nil {
		for i, b := range prev.Backends {
			pos[b] = i
		}
	}
	slices.SortFunc(bs, func(a, b *Backend) int {
		pa, oka := pos[a]
		pb, okb := pos[b]
		switch {
		case oka && okb:
			return pa - pb
		case oka:
			return -1
		case okb:
			return 1
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return bs
}
