package pool

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// Power of two choices (p2c). NextP2C draws two distinct backends of the
// policy at random among those the caller may use and takes the one of
// lower cost, (in-flight+1) × its latency estimate: a peak-EWMA of its
// reply latency as in Finagle and Linkerd. A reply slower than the
// estimate replaces it at once (the peak); a faster one is averaged in
// with a weight that grows with the time since the last one, and the
// estimate decays towards zero while no reply comes (LatencyDecay), so
// that a backend that was slow and sent away is tried again later. Against
// a backend with no reply yet, the in-flight counts alone decide.
//
// The estimate is shared by every caller (two atomics per backend); the
// in-flight count is the caller's (a loop knows what it sent and is not
// answered), so reading it costs no shared write.

// LatencyDecay is the time constant of the latency estimate: a sample's
// weight is 1-exp(-Δt/LatencyDecay), Δt the time since the previous one,
// and an estimate without replies falls to 1/e of itself in this time.
// Linkerd's and Finagle's default.
const LatencyDecay = 10 * time.Second

// latency is a backend's reply-latency estimate, in the callers' clock.
type latency struct {
	ewma atomic.Uint64 // float64 bits, nanoseconds; 0: no reply yet
	at   atomic.Int64  // clock of the last sample
}

// ObserveLatency folds a reply's latency (rtt, nanoseconds) seen at now
// into b's estimate. A compare-and-swap: safe from any goroutine. Two
// callers racing may pair one's estimate with the other's time: the
// estimate is decayed a little more or less, which does no harm.
func (b *Backend) ObserveLatency(rtt, now int64) {
	x := float64(max(rtt, 1))
	for {
		old := b.lat.ewma.Load()
		est := math.Float64frombits(old)
		next := x
		if est != 0 && x < est {
			w := decay(now - b.lat.at.Load())
			next = est*w + x*(1-w)
		}
		if b.lat.ewma.CompareAndSwap(old, math.Float64bits(next)) {
			b.lat.at.Store(now)
			return
		}
	}
}

// Latency returns b's latency estimate at now, in nanoseconds (decayed
// since its last sample); 0 before the first. Safe from any goroutine.
func (b *Backend) Latency(now int64) float64 {
	est := math.Float64frombits(b.lat.ewma.Load())
	if est == 0 {
		return 0
	}
	return est * decay(now-b.lat.at.Load())
}

// decay is exp(-dt/LatencyDecay); 1 for dt ≤ 0 (clocks of two callers).
func decay(dt int64) float64 {
	if dt <= 0 {
		return 1
	}
	return math.Exp(-float64(dt) / float64(LatencyDecay))
}

// NextP2C returns a backend of the policy chosen by the power of two
// choices: two distinct backends skip lets through, drawn at random with r,
// and the one of lower (inflight(b)+1) × b.Latency(now) (in-flight alone
// when either has no estimate yet); the first drawn on a tie. With one usable backend it is returned; with none, nil. skip
// may be nil; it is called at most twice per backend, and a backend it
// lets through that is not Healthy is returned at once: skip made the
// request its probe (Registry.TryProbe), which must not be wasted.
// Safe from any goroutine with its own r.
func (p *Policy) NextP2C(r *Rand, now int64, inflight func(*Backend) int, skip func(*Backend) bool) *Backend {
	n := len(p.Backends)
	if n == 0 {
		return nil
	}
	first, probe := p.firstAllowed(r.Intn(n), -1, skip)
	if first < 0 {
		return nil
	}
	a := p.Backends[first]
	if probe {
		a.routed.Add(1)
		return a
	}
	if n > 1 {
		// The second: the first allowed of the others, from a random one on.
		k, probe := p.firstAllowed(first+1+r.Intn(n-1), first, skip)
		if k >= 0 {
			b := p.Backends[k]
			if probe {
				b.routed.Add(1)
				return b
			}
			if lower(b, a, now, inflight) {
				a = b
			}
		}
	}
	a.routed.Add(1)
	return a
}

// firstAllowed returns the index of the first backend skip lets through,
// scanning from index from on (wrapping) and passing over index except;
// probe says it is not Healthy (skip made the request its probe: take it
// at once). -1 when skip lets none through.
func (p *Policy) firstAllowed(from, except int, skip func(*Backend) bool) (k int, probe bool) {
	n := len(p.Backends)
	for i := range n {
		k = from + i
		for k >= n {
			k -= n
		}
		if k == except {
			continue
		}
		b := p.Backends[k]
		if skip != nil && skip(b) {
			continue
		}
		return k, b.h.state.Load() != Healthy
	}
	return -1, false
}

// lower reports whether b costs less than a. When either has no latency
// estimate yet, in-flight requests alone decide: a new backend is tried at
// once, but a slow one does not take half of the requests until its first
// reply.
func lower(b, a *Backend, now int64, inflight func(*Backend) int) bool {
	eb, ea := b.Latency(now), a.Latency(now)
	if eb == 0 || ea == 0 {
		eb, ea = 1, 1
	}
	return float64(inflight(b)+1)*eb < float64(inflight(a)+1)*ea
}

// Rand is a small random source for one goroutine (wyrand): no lock, no
// allocation. The zero value works; seed it for different sequences.
type Rand struct{ s uint64 }

// NewRand returns a source seeded with seed.
func NewRand(seed uint64) Rand { return Rand{s: seed} }

// Uint64 returns the next pseudo-random number.
func (r *Rand) Uint64() uint64 {
	r.s += 0xa0761d6478bd642f
	hi, lo := bits.Mul64(r.s, r.s^0xe7037ed1a0b428db)
	return hi ^ lo
}

// Intn returns a number in [0, n), n > 0 (Lemire's multiply-shift: no
// division).
func (r *Rand) Intn(n int) int {
	hi, _ := bits.Mul64(r.Uint64(), uint64(n))
	return int(hi)
}
