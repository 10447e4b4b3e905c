package server

import "testing"

func TestHistoBuckets(t *testing.T) {
	var h histo
	for _, d := range []int64{0, 50e3, 50e3 + 1, 1e9, 20e9} {
		h.observe(d)
	}
	cum := h.cumulative()
	for _, c := range []struct {
		le   float64
		want uint64
	}{{0.00005, 2}, {0.0001, 3}, {1, 4}, {10, 4}} {
		if got := cum[c.le]; got != c.want {
			t.Errorf("le=%v: %d; want %d", c.le, got, c.want)
		}
	}
	if h.count() != 5 {
		t.Errorf("count %d; want 5", h.count())
	}
}

func TestPolicyTableCap(t *testing.T) {
	var pt policyTable
	pt.init()
	for id := range int64(maxPolicies + 10) {
		pt.of(id).n[pRequests]++
	}
	if got := pt.of(maxPolicies + 5).label; got != policyOther {
		t.Errorf("policy past the cap: %q; want %q", got, policyOther)
	}
	if got := len(pt.slots()); got != maxPolicies+2 { // none and other
		t.Errorf("%d slots; want %d", got, maxPolicies+2)
	}
	if got := pt.of(3).label; got != "3" {
		t.Errorf("policy 3: %q", got)
	}
}

// BenchmarkRecordReply is what the request path pays per request and reply
// for the per-policy counters and histograms: the slot lookup, the counts
// and two observations.
func BenchmarkRecordReply(b *testing.B) {
	var pt policyTable
	pt.init()
	pt.of(8)
	b.ReportAllocs()
	var d int64
	for b.Loop() {
		ps := pt.of(7)
		ps.n[pRequests]++
		ps.n[pReplies]++
		d = (d + 37_000) % 3_000_000 // 0 to 3ms
		ps.lat.observe(d)
		ps.backend.observe(d / 2)
	}
}
