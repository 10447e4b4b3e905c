package server

import (
	"strconv"
	"sync/atomic"
)

// Per-policy counters and latency histograms, the loop's side. Like the
// loop's other counters they are plain integers that only the loop
// writes, published to atomics with them (loopMetrics.publish) and summed
// across loops at scrape (Metrics.Collect). A loop gives a policy its
// slot the first time one of its requests arrives: a map insert, which
// allocates, but once per policy and loop, not per request.

// latencyBounds are the histograms' bucket upper bounds in nanoseconds:
// 50µs to 10s, about three per decade (Prometheus' le, inclusive).
var latencyBounds = [...]int64{
	50e3, 100e3, 250e3, 500e3,
	1e6, 2.5e6, 5e6, 10e6, 25e6, 50e6, 100e6, 250e6, 500e6,
	1e9, 2.5e9, 5e9, 10e9,
}

const nBuckets = len(latencyBounds) + 1 // the last is +Inf

// histo is a fixed-bucket latency histogram in nanoseconds.
type histo struct {
	counts [nBuckets]int64
	sum    int64
}

// observe counts a duration of d nanoseconds. Most are short: a linear
// scan from the smallest bucket stops within a few compares.
func (h *histo) observe(d int64) {
	i := 0
	for i < len(latencyBounds) && d > latencyBounds[i] {
		i++
	}
	h.counts[i]++
	h.sum += d
}

// pubHisto is a histo's published copy.
type pubHisto struct {
	counts [nBuckets]atomic.Int64
	sum    atomic.Int64
}

func (p *pubHisto) publish(h *histo) {
	for i := range h.counts {
		if p.counts[i].Load() != h.counts[i] {
			p.counts[i].Store(h.counts[i])
		}
	}
	if p.sum.Load() != h.sum {
		p.sum.Store(h.sum)
	}
}

// Indexes of a policy's counters.
const (
	pRequests = iota
	pReplies
	pErrors // first of len(errorCodes)
	pCount  = pErrors + len(errorCodes)
)

// policyStats are one loop's counts for one policy. lat is the request
// latency through the proxy: from the request's arrival (the read that
// brought it) to its answer, reply or error, being queued for its client.
// backend is the backend's: from the request being handed to its data
// connection (or the connection opening, for requests that waited for the
// dial) to its reply.
type policyStats struct {
	label string // the policy label: its id, or "none" or "other"

	n            [pCount]int64
	lat, backend histo

	pubN               [pCount]atomic.Int64
	pubLat, pubBackend pubHisto
	events             int64 // the sum of n at the last publish
}

// publish copies the counts to the published ones. Every event (a
// request, a reply, an error) adds to n: a slot whose sum did not move
// has nothing new.
func (ps *policyStats) publish() {
	var events int64
	for _, v := range ps.n {
		events += v
	}
	if events == ps.events {
		return
	}
	ps.events = events
	for i := range ps.n {
		if ps.pubN[i].Load() != ps.n[i] {
			ps.pubN[i].Store(ps.n[i])
		}
	}
	ps.pubLat.publish(&ps.lat)
	ps.pubBackend.publish(&ps.backend)
}

// maxPolicies bounds the policies a loop counts apart: a client may name
// any id, and each would be a set of series. Past it, requests count as
// policy "other".
const maxPolicies = 256

// Labels of the policy slots that are not a policy id.
const (
	policyNone  = "none"  // requests that did not decode (no policy known)
	policyOther = "other" // policies past maxPolicies
)

// policyTable is a loop's policy slots.
type policyTable struct {
	byID   map[int64]*policyStats
	none   *policyStats // answers to what is not a request of a known policy
	other  *policyStats // nil until needed
	lastID int64        // a one-entry cache: a loop's requests often share a policy
	last   *policyStats
	// The slots, for scrapes: replaced (copied, then stored) when one is
	// added, so a reader never sees the slice grow under it.
	list atomic.Pointer[[]*policyStats]
}

func (t *policyTable) init() {
	t.byID = map[int64]*policyStats{}
	t.none = t.add(policyNone)
}

// of returns policy id's slot, adding it the first time.
func (t *policyTable) of(id int64) *policyStats {
	if t.last != nil && t.lastID == id {
		return t.last
	}
	ps := t.byID[id]
	if ps == nil {
		if len(t.byID) < maxPolicies {
			ps = t.add(strconv.FormatInt(id, 10))
			t.byID[id] = ps
		} else {
			if t.other == nil {
				t.other = t.add(policyOther)
			}
			ps = t.other
		}
	}
	t.lastID, t.last = id, ps
	return ps
}

func (t *policyTable) add(label string) *policyStats {
	ps := &policyStats{label: label}
	var list []*policyStats
	if old := t.list.Load(); old != nil {
		list = append(list, *old...)
	}
	list = append(list, ps)
	t.list.Store(&list)
	return ps
}

// slots returns the published slots. Safe from any goroutine.
func (t *policyTable) slots() []*policyStats {
	if l := t.list.Load(); l != nil {
		return *l
	}
	return nil
}

func (t *policyTable) publish() {
	for _, ps := range t.slots() {
		ps.publish()
	}
}

// policyTotals are a policy's counts summed over the loops, for a scrape.
type policyTotals struct {
	n            [pCount]int64
	lat, backend histo
}

func (pt *policyTotals) add(ps *policyStats, stopped bool) {
	if stopped { // the loops are done: Run's return ordered their writes before this
		for i := range ps.n {
			pt.n[i] += ps.n[i]
		}
		addHisto(&pt.lat, &ps.lat)
		addHisto(&pt.backend, &ps.backend)
		return
	}
	for i := range ps.pubN {
		pt.n[i] += ps.pubN[i].Load()
	}
	addPubHisto(&pt.lat, &ps.pubLat)
	addPubHisto(&pt.backend, &ps.pubBackend)
}

func addHisto(to, h *histo) {
	for i := range h.counts {
		to.counts[i] += h.counts[i]
	}
	to.sum += h.sum
}

func addPubHisto(to *histo, h *pubHisto) {
	for i := range h.counts {
		to.counts[i] += h.counts[i].Load()
	}
	to.sum += h.sum.Load()
}

// count is the number of observations: the sum of the buckets, so that a
// scrape racing a publish still reports a consistent histogram.
func (h *histo) count() uint64 {
	var n int64
	for _, c := range h.counts {
		n += c
	}
	return uint64(n)
}

// cumulative returns the buckets as Prometheus wants them: upper bound in
// seconds to the count of observations at or below it (+Inf left out).
func (h *histo) cumulative() map[float64]uint64 {
	m := make(map[float64]uint64, len(latencyBounds))
	var n int64
	for i, b := range latencyBounds {
		n += h.counts[i]
		m[float64(b)/1e9] = uint64(n)
	}
	return m
}
