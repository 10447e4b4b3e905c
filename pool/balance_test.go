package pool

import (
	"sync/atomic"
	"testing"
	"time"
)

func policyOf(t testing.TB, n int) (*Registry, *Policy) {
	t.Helper()
	r := NewRegistry()
	for id := range int64(n) {
		r.Register(&Backend{ID: id + 1, Policy: 7})
	}
	return r, r.Policy(7)
}

// simulate sends a request every ms for d to the policy's backends as
// pick chooses them; backend slow answers after 50 ms, the others after
// 1 ms. It returns each backend's share of requests and the replies'
// 99th percentile latency.
func simulate(pol *Policy, slow *Backend, d time.Duration, pick func(now int64, inflight func(*Backend) int) *Backend) (share map[*Backend]float64, p99 time.Duration) {
	type pending struct {
		b    *Backend
		sent int64
		due  int64
	}
	var queue []pending
	load := map[*Backend]int{}
	count := map[*Backend]int{}
	var lats []int64
	step := int64(time.Millisecond)
	total := 0
	for now := step; now <= int64(d); now += step {
		rest := queue[:0]
		for _, p := range queue {
			if p.due <= now {
				load[p.b]--
				p.b.ObserveLatency(now-p.sent, now)
				lats = append(lats, now-p.sent)
				continue
			}
			rest = append(rest, p)
		}
		queue = rest
		b := pick(now, func(b *Backend) int { return load[b] })
		lat := step
		if b == slow {
			lat = 50 * step
		}
		load[b]++
		count[b]++
		total++
		queue = append(queue, pending{b, now, now + lat})
	}
	share = map[*Backend]float64{}
	for b, n := range count {
		share[b] = float64(n) / float64(total)
	}
	// The 99th percentile by counting: latencies are 1 ms or 50 ms.
	slowN := 0
	for _, l := range lats {
		if l > step {
			slowN++
		}
	}
	p99 = time.Millisecond
	if slowN*100 > len(lats) {
		p99 = 50 * time.Millisecond
	}
	return share, p99
}

func TestP2CSlowBackendGetsFew(t *testing.T) {
	for _, tt := range []struct {
		name      string
		p2c       bool
		most      float64 // the slow backend's share, at most
		least     float64 // and at least
		wantP99Ms int
	}{
		{"rr", false, 0.26, 0.24, 50},
		{"p2c", true, 0.01, 0, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, pol := policyOf(t, 4)
			slow := pol.Backends[2]
			rnd := NewRand(1)
			share, p99 := simulate(pol, slow, 60*time.Second, func(now int64, inflight func(*Backend) int) *Backend {
				if tt.p2c {
					return pol.NextP2C(&rnd, now, inflight, nil)
				}
				return pol.Next()
			})
			if s := share[slow]; s > tt.most || s < tt.least {
				t.Errorf("slow backend's share %.4f; want %.2f..%.2f", s, tt.least, tt.most)
			}
			if want := time.Duration(tt.wantP99Ms) * time.Millisecond; p99 != want {
				t.Errorf("p99 %v; want %v", p99, want)
			}
			for _, b := range pol.Backends {
				t.Logf("backend %d: share %.4f", b.ID, share[b])
			}
		})
	}
}

// TestP2CEqualBackendsShare: backends alike share the load about equally.
func TestP2CEqualBackendsShare(t *testing.T) {
	_, pol := policyOf(t, 5)
	rnd := NewRand(7)
	count := map[int64]int{}
	idle := func(*Backend) int { return 0 }
	for range 50000 {
		count[pol.NextP2C(&rnd, 1, idle, nil).ID]++
	}
	for id, n := range count {
		if n < 9000 || n > 11000 {
			t.Errorf("backend %d got %d of 50000; want about 10000 (%v)", id, n, count)
		}
	}
}

func TestP2CSkip(t *testing.T) {
	_, pol := policyOf(t, 4)
	idle := func(*Backend) int { return 0 }
	rnd := NewRand(3)
	only := pol.Backends[3]
	calls := map[*Backend]int{}
	for range 100 {
		clear(calls)
		b := pol.NextP2C(&rnd, 1, idle, func(b *Backend) bool { calls[b]++; return b != only })
		if b != only {
			t.Fatalf("got backend %v; want the one skip lets through, %d", b, only.ID)
		}
		for b, n := range calls {
			if n > 2 {
				t.Fatalf("skip called %d times for backend %d; want at most 2", n, b.ID)
			}
		}
	}
	if b := pol.NextP2C(&rnd, 1, idle, func(*Backend) bool { return true }); b != nil {
		t.Fatalf("got backend %d with every one skipped; want nil", b.ID)
	}
	// The two drawn are distinct: with two backends, both are scored.
	_, two := policyOf(t, 2)
	two.Backends[0].ObserveLatency(int64(time.Millisecond), 1)
	two.Backends[1].ObserveLatency(int64(time.Microsecond), 1)
	for range 100 {
		if b := two.NextP2C(&rnd, 1, idle, nil); b != two.Backends[1] {
			t.Fatalf("got backend %d; want the faster, %d", b.ID, two.Backends[1].ID)
		}
	}
}

// TestP2CProbe: a backend skip lets through while ejected is the
// request's probe: returned without looking for a second choice.
func TestP2CProbe(t *testing.T) {
	r, pol := policyOf(t, 3)
	probe := pol.Backends[1]
	if ev := r.Eject(probe, 0); ev != EjectedNow {
		t.Fatalf("Eject: %v", ev)
	}
	probe.h.state.Store(Probing) // as TryProbe leaves it
	rnd := NewRand(5)
	busy := func(b *Backend) int { return 1000 }
	got := 0
	for range 100 {
		if pol.NextP2C(&rnd, 1, busy, nil) == probe {
			got++
		}
	}
	// It is the first drawn in a third of the calls and the second in
	// another third: taken each time.
	if got < 50 || got > 85 {
		t.Fatalf("the probed backend was chosen %d times of 100; want about 67", got)
	}
}

func TestLatencyEstimate(t *testing.T) {
	b := &Backend{}
	if got := b.Latency(5); got != 0 {
		t.Fatalf("estimate before a sample %v; want 0", got)
	}
	ms := int64(time.Millisecond)
	b.ObserveLatency(ms, 0)
	b.ObserveLatency(50*ms, 1) // the peak: taken at once
	if got := b.Latency(1); got != float64(50*ms) {
		t.Fatalf("after a slow reply %v; want %v", got, 50*ms)
	}
	// A fast reply a decay later weighs 1-1/e.
	now := int64(LatencyDecay) + 1
	b.ObserveLatency(ms, now)
	want := 50*float64(ms)/2.718281828 + float64(ms)*(1-1/2.718281828)
	if got := b.Latency(now); got < want*0.999 || got > want*1.001 {
		t.Fatalf("after a fast reply %v; want %v", got, want)
	}
	// Without replies it decays.
	if got := b.Latency(now + int64(LatencyDecay)); got > want/2.7 {
		t.Fatalf("a decay later %v; want %v/e", got, want)
	}
}

func BenchmarkSelect(b *testing.B) {
	_, pol := policyOf(b, 4)
	for i, bk := range pol.Backends {
		bk.ObserveLatency(int64(i+1)*50_000, 1)
	}
	var load [5]int
	inflight := func(bk *Backend) int { return load[bk.ID] }
	skip := func(bk *Backend) bool { return bk.State() != Healthy }
	b.Run("rr", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			pol.NextExcept(skip)
		}
	})
	b.Run("p2c", func(b *testing.B) {
		rnd := NewRand(1)
		b.ReportAllocs()
		for b.Loop() {
			pol.NextP2C(&rnd, 2, inflight, skip)
		}
	})
}

// BenchmarkObserveLatency is the cost of a reply's sample, alone and with
// every CPU reporting replies of the same backend (loops sharing it).
func BenchmarkObserveLatency(b *testing.B) {
	b.Run("one", func(b *testing.B) {
		bk := &Backend{}
		b.ReportAllocs()
		now := int64(0)
		for b.Loop() {
			now += 1000
			bk.ObserveLatency(50_000+now%7, now)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		bk := &Backend{}
		var clock atomic.Int64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				now := clock.Add(1000)
				bk.ObserveLatency(50_000+now%7, now)
			}
		})
	})
}

// TestP2CUnmeasured: against a backend with no reply yet, in-flight
// requests alone decide.
func TestP2CUnmeasured(t *testing.T) {
	_, pol := policyOf(t, 2)
	known, fresh := pol.Backends[0], pol.Backends[1]
	known.ObserveLatency(int64(time.Millisecond), 1)
	rnd := NewRand(9)
	for _, tt := range []struct {
		name               string
		knownLoad, newLoad int
		want               *Backend
	}{
		{"new one idle", 2, 0, fresh},
		{"new one busier", 0, 3, known},
	} {
		t.Run(tt.name, func(t *testing.T) {
			load := func(b *Backend) int {
				if b == known {
					return tt.knownLoad
				}
				return tt.newLoad
			}
			for range 20 {
				if got := pol.NextP2C(&rnd, 2, load, nil); got != tt.want {
					t.Fatalf("got backend %d; want %d", got.ID, tt.want.ID)
				}
			}
		})
	}
}
