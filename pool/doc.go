// Package pool owns Prism's backend registry and the structures that route a
// request to one backend: registrations held as leases, and two selectors
// that take no lock on the request path: a per-policy round robin (Next,
// NextExcept), exact, and the power of two choices on in-flight requests ×
// a peak-EWMA of reply latency (NextP2C, balance.go), which sends few
// requests to a slow backend.
//
// Writers (registration, lease close) take a mutex, build a new immutable
// snapshot of the policies and swap it in atomically. Readers load the
// snapshot and advance one atomic counter per policy (or, for p2c, read two
// backends' estimates with a per-caller Rand): selection is lock-free and
// allocates nothing.
//
//	r := pool.NewRegistry()
//	b := &pool.Backend{ID: 1, Policy: 7, Addr: "127.0.0.1:9101"}
//	r.Register(b)
//	if p := r.Policy(7); p != nil {
//		backend := p.Next()
//	}
//	r.Remove(b) // the lease closed
//
// The data connections themselves are owned by the proxy's event loops
// (package server), one per backend per loop.
package pool
