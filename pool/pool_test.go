package pool

import (
	"sync"
	"testing"
)

func TestRoundRobinExact(t *testing.T) {
	r := NewRegistry()
	bs := []*Backend{{ID: 3, Policy: 7}, {ID: 1, Policy: 7}, {ID: 2, Policy: 7}, {ID: 9, Policy: 8}}
	for _, b := range bs {
		r.Register(b)
	}
	count := map[int64]int{}
	var prev int64 = -1
	for range 30 {
		b := r.Policy(7).Next()
		if b.Policy != 7 {
			t.Fatalf("policy 7 selected backend %d of policy %d", b.ID, b.Policy)
		}
		if b.ID == prev {
			t.Fatalf("backend %d selected twice in a row", b.ID)
		}
		prev = b.ID
		count[b.ID]++
	}
	for _, id := range []int64{1, 2, 3} {
		if count[id] != 10 {
			t.Fatalf("counts %v; want 10 each for 1, 2, 3", count)
		}
	}
	if r.Policy(99) != nil {
		t.Fatal("policy without backends has a selector")
	}
}

func TestRoundRobinConcurrent(t *testing.T) {
	r := NewRegistry()
	for id := range int64(4) {
		r.Register(&Backend{ID: id, Policy: 1})
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				r.Policy(1).Next()
			}
		}()
	}
	wg.Wait()
	for _, b := range r.Backends() {
		if b.Routed() != 2000 {
			t.Fatalf("backend %d routed %d; want 2000", b.ID, b.Routed())
		}
	}
}

func TestReplaceAndRemove(t *testing.T) {
	r := NewRegistry()
	old := &Backend{ID: 1, Policy: 7, Addr: "a"}
	r.Register(old)
	other := &Backend{ID: 2, Policy: 7, Addr: "b"}
	r.Register(other)
	repl := &Backend{ID: 1, Policy: 7, Addr: "c"}
	if got := r.Register(repl); got != old {
		t.Fatalf("Register returned %v; want the old registration", got)
	}
	if !old.Removed() {
		t.Fatal("replaced backend not marked removed")
	}
	if r.Remove(old) {
		t.Fatal("removing the replaced registration removed the new one")
	}
	ps := r.Policy(7).Backends
	if len(ps) != 2 || ps[0] != other || ps[1] != repl {
		t.Fatalf("backends %v; want other then the replacement", ps)
	}
	// A backend moving to another policy leaves the old one's rotation.
	moved := &Backend{ID: 2, Policy: 8}
	r.Register(moved)
	if ps := r.Policy(7).Backends; len(ps) != 1 || ps[0] != repl {
		t.Fatalf("policy 7 after move: %v", ps)
	}
	if !r.Remove(moved) || !r.Remove(repl) || r.Policy(7) != nil || r.Policy(8) != nil {
		t.Fatal("registry not empty after removing everything")
	}
}

func TestNextExcept(t *testing.T) {
	r := NewRegistry()
	a, b := &Backend{ID: 1, Policy: 7}, &Backend{ID: 2, Policy: 7}
	r.Register(a)
	r.Register(b)
	p := r.Policy(7)
	for range 4 {
		if got := p.NextExcept(func(x *Backend) bool { return x == a }); got != b {
			t.Fatalf("got %v; want b", got)
		}
	}
	if got := p.NextExcept(func(*Backend) bool { return true }); got != nil {
		t.Fatalf("all skipped: got %v; want nil", got)
	}
}

// BenchmarkSelector measures round-robin selection from all cores at once:
// the snapshot load and the policy's atomic counter.
func BenchmarkSelector(b *testing.B) {
	r := NewRegistry()
	for id := range int64(4) {
		r.Register(&Backend{ID: id, Policy: 7, Addr: "127.0.0.1:1"})
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if r.Policy(7).Next() == nil {
				b.Fatal("no backend")
			}
		}
	})
}

func TestEjectionCapBackoffAndProbe(t *testing.T) {
	r := NewRegistry()
	r.SetOutlier(Outlier{After: 3, Base: 100, Max: 400, MaxPercent: 50, Probe: 50})
	a, b := &Backend{ID: 1, Policy: 7}, &Backend{ID: 2, Policy: 7}
	r.Register(a)
	r.Register(b)
	var now int64 = 1000
	clock := func() int64 { return now }
	for i := range 2 {
		if ev := r.Failed(a, now); ev != NoChange {
			t.Fatalf("failure %d: %v", i, ev)
		}
	}
	r.Succeeded(a, clock) // a success in between starts the count over
	for range 2 {
		r.Failed(a, now)
	}
	if ev := r.Failed(a, now); ev != EjectedNow || !r.Out(a, clock) {
		t.Fatalf("third failure in a row: %v, out %v; want ejected", ev, r.Out(a, clock))
	}
	// The cap: ejecting b too would leave 100% of the policy out.
	for range 2 {
		r.Failed(b, now)
	}
	if ev := r.Failed(b, now); ev != CapRefused || r.Out(b, clock) {
		t.Fatalf("b: %v; want refused by the cap", ev)
	}
	// Over: one probe only; its failure doubles the ejection.
	now += 100
	if r.Out(a, clock) || !r.TryProbe(a, clock) || r.TryProbe(a, clock) || !r.Out(a, clock) {
		t.Fatal("ejection over: want exactly one probe")
	}
	if ev := r.Failed(a, now); ev != EjectedNow {
		t.Fatalf("failed probe: %v", ev)
	}
	now += 150
	if !r.Out(a, clock) {
		t.Fatal("second ejection shorter than twice the first")
	}
	now += 50
	if r.Out(a, clock) || !r.TryProbe(a, clock) {
		t.Fatal("second ejection not over after 200")
	}
	// A probe that takes longer than Probe counts as failed.
	now += 60
	if !r.Out(a, clock) || a.State() != Ejected {
		t.Fatalf("lost probe: state %d; want ejected again", a.State())
	}
	now += 400
	if r.Out(a, clock) || !r.TryProbe(a, clock) {
		t.Fatal("third ejection not over at the max")
	}
	if ev := r.Succeeded(a, clock); ev != Readmitted || r.Out(a, clock) {
		t.Fatalf("probe reply: %v; want readmitted", ev)
	}
}
