package pool

import (
	"sync/atomic"
	"time"
)

// Outlier ejection. A backend whose requests fail (time out, or lose their
// data connection, or get a reply that breaks the protocol) After times in
// a row, or whose data connection stalls, leaves rotation on every loop for
// an ejection time that doubles with each repeated ejection (Base, 2×Base,
// … up to Max). Once it is over, one request is let through as a probe: a
// reply readmits the backend, a failure ejects it again for longer. The
// ejection multiplier starts over once a backend stayed in rotation for Max.
//
// Ejections are capped per policy: an ejection that would leave more than
// MaxPercent of the policy's backends ejected (counting the new one) is
// refused, so a burst of failures cannot empty a policy. When every
// backend a request may use is ejected anyway (a cap of 100), the caller
// routes as if none were: panic mode.
//
// Times are in the caller's clock (nanoseconds, monotonic, the same for
// every caller of one registry).

// Outlier configures ejection. Zero fields take the defaults given.
type Outlier struct {
	After      int           // consecutive failures that eject. Zero: 5; negative: never
	Base       time.Duration // first ejection time. Zero: 1s
	Max        time.Duration // longest ejection time. Zero: 30s
	MaxPercent int           // most of a policy's backends ejected at once, in %. Zero: 50
	Probe      time.Duration // how long a probe may take before it counts as failed. Zero: 5s
}

func (o Outlier) resolve() Outlier {
	if o.After == 0 {
		o.After = 5
	}
	if o.Base <= 0 {
		o.Base = time.Second
	}
	if o.Max <= 0 {
		o.Max = 30 * time.Second
	}
	if o.Max < o.Base {
		o.Max = o.Base
	}
	if o.MaxPercent <= 0 {
		o.MaxPercent = 50
	}
	if o.Probe <= 0 {
		o.Probe = 5 * time.Second
	}
	return o
}

// Health states of a backend.
const (
	Healthy int32 = iota // in rotation
	Ejected              // out of rotation until its time is over
	Probing              // out of rotation, one request in flight as a probe
)

// health is a backend's outlier state, shared by every loop.
type health struct {
	fails     atomic.Int32 // consecutive failures
	state     atomic.Int32
	until     atomic.Int64  // Ejected: end of the ejection; Probing: the probe's deadline
	ejections atomic.Int32  // in a row, for the back-off
	back      atomic.Int64  // when it was last readmitted
	failures  atomic.Uint64 // ever reported, for metrics
}

// Event is what a report of success or failure changed.
type Event uint8

const (
	NoChange   Event = iota
	EjectedNow       // the backend left rotation
	CapRefused       // it would have been ejected, but the policy's cap refused
	Readmitted       // a probe succeeded: back in rotation
)

// State returns b's health state. Safe from any goroutine.
func (b *Backend) State() int32 { return b.h.state.Load() }

// Failures returns how many failures of b were reported (Failed). Safe
// from any goroutine.
func (b *Backend) Failures() uint64 { return b.h.failures.Load() }

// Ejections returns how many times in a row b was ejected.
func (b *Backend) Ejections() int32 { return b.h.ejections.Load() }

// Out reports whether b is out of rotation for a request now: ejected and
// its time not over, or a probe of it in flight. clock is read only for
// an ejected backend. A probe whose deadline passed counts as failed, and
// the backend is ejected again.
func (r *Registry) Out(b *Backend, clock func() int64) bool {
	switch b.h.state.Load() {
	case Healthy:
		return false
	case Ejected:
		return clock() < b.h.until.Load()
	}
	now := clock()
	if until := b.h.until.Load(); now >= until && b.h.state.CompareAndSwap(Probing, Ejected) {
		r.reeject(b, now)
	}
	return true
}

// TryProbe makes the caller's request the probe of b, whose ejection is
// over (Out returned false); false when another caller's request already
// is. For a healthy backend it is one load.
func (r *Registry) TryProbe(b *Backend, clock func() int64) bool {
	if b.h.state.Load() == Healthy {
		return true
	}
	if !b.h.state.CompareAndSwap(Ejected, Probing) {
		return false
	}
	b.h.until.Store(clock() + int64(r.outlier.Load().Probe))
	return true
}

// Succeeded reports a reply from b. It costs two loads when nothing
// changes; clock is read only on readmission.
func (r *Registry) Succeeded(b *Backend, clock func() int64) Event {
	if b.h.fails.Load() != 0 {
		b.h.fails.Store(0)
	}
	if b.h.state.Load() == Probing && b.h.state.CompareAndSwap(Probing, Healthy) {
		b.h.back.Store(clock())
		return Readmitted
	}
	return NoChange
}

// Failed reports a failed request or data connection of b.
func (r *Registry) Failed(b *Backend, now int64) Event {
	n := b.h.fails.Add(1)
	b.h.failures.Add(1)
	switch b.h.state.Load() {
	case Probing:
		if b.h.state.CompareAndSwap(Probing, Ejected) {
			r.reeject(b, now)
			return EjectedNow
		}
	case Healthy:
		if o := r.outlier.Load(); o.After > 0 && int(n) >= o.After {
			return r.Eject(b, now)
		}
	}
	return NoChange
}

// Eject takes b out of rotation now (a stalled data connection), unless the
// policy's cap refuses.
func (r *Registry) Eject(b *Backend, now int64) Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	if b.h.state.Load() != Healthy || b.removed.Load() {
		return NoChange
	}
	p := r.snap.Load().policies[b.Policy]
	if p == nil {
		return NoChange
	}
	out := 1
	for _, o := range p.Backends {
		if o != b && o.h.state.Load() != Healthy {
			out++
		}
	}
	o := r.outlier.Load()
	if out*100 > o.MaxPercent*len(p.Backends) {
		return CapRefused
	}
	if now-b.h.back.Load() > int64(o.Max) {
		b.h.ejections.Store(0) // in rotation long enough: start over
	}
	b.h.state.Store(Ejected)
	r.reeject(b, now)
	return EjectedNow
}

// reeject sets the end of b's ejection, now Ejected, doubling it for each
// ejection in a row.
func (r *Registry) reeject(b *Backend, now int64) {
	k := b.h.ejections.Add(1) - 1
	o := r.outlier.Load()
	d := o.Base
	for ; k > 0 && d < o.Max; k-- {
		d *= 2
	}
	b.h.until.Store(now + int64(min(d, o.Max)))
	b.h.fails.Store(0)
}
