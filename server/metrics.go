package server

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/prism-proxy/prism/codec"
	"github.com/prism-proxy/prism/pool"
)

// errorCodes are the protocol's error codes, indexed for per-loop counters.
var errorCodes = [...]string{
	codec.CodeBadRequest, codec.CodeTooLarge, codec.CodeNoBackend, codec.CodeBackendUnavailable,
	codec.CodeTimeout, codec.CodeOverloaded, codec.CodeUnauthorized, codec.CodeShuttingDown,
}

// Indexes of a loop's counters.
const (
	mRequests = iota
	mReplies
	mRetries
	mLate
	mAbandoned
	mDials
	mDialErrors
	mLinksRefused // data connections not opened: no descriptor (fdbudget.go)
	mLinksEvicted // idle data connections closed for a needed one
	mBadReplies
	mEjections
	mEjectRefused
	mReadmissions
	mStalls
	mPanics
	mRetriesRefused
	mHeld // a gauge: bytes held (limits)
	mConns
	mIdleClosed
	mSlowFrames
	mUnanswered
	mClientIn   // bytes of messages read from clients
	mClientOut  // bytes written to clients
	mBackendIn  // bytes of replies read from backends
	mBackendOut // bytes of requests written to backends
	mErrors     // first of len(errorCodes)
	mCount      = mErrors + len(errorCodes)
)

// loopMetrics are one loop's counters. The loop counts with plain adds: an
// atomic add per request is a locked instruction that waits for the store
// buffer to drain, which showed in profiles at 1000 connections (figures in
// BENCHMARKS.md, "What was tried"). It publishes the counts to atomics for
// scrapes and Shutdown at most every publishEvery while busy, and on every
// tick.
type loopMetrics struct {
	n    [mCount]int64        // the loop's own
	pub  [mCount]atomic.Int64 // published copies
	last int64                // loop clock of the last publish
	pols policyTable          // per policy (policystats.go)
	_    [64]byte
}

// publishEvery bounds how stale published counters are while the loop is busy.
const publishEvery = int64(time.Millisecond)

func (m *loopMetrics) publish(now int64) {
	m.last = now
	for i := range m.n {
		if m.pub[i].Load() != m.n[i] {
			m.pub[i].Store(m.n[i])
		}
	}
	m.pols.publish()
}

// countError counts an error answer of code to a request of ps.
func (m *loopMetrics) countError(ps *policyStats, code string) {
	for i, c := range errorCodes {
		if c == code {
			m.n[mErrors+i]++
			ps.n[pErrors+i]++
			return
		}
	}
}

// Metrics aggregates the loops' counters and exports them to Prometheus.
// Safe from any goroutine.
type Metrics struct {
	p      *proxy
	mu     sync.Mutex
	loops  []*loopMetrics
	errLog errorLog // the ticker's (errlog.go)
}

func newMetrics(p *proxy) *Metrics { return &Metrics{p: p} }

func (m *Metrics) addLoop(lm *loopMetrics) {
	m.mu.Lock()
	m.loops = append(m.loops, lm)
	m.mu.Unlock()
}

// Snapshot is a point-in-time sum of the counters.
type Snapshot struct {
	Requests   int64            // requests read from clients
	Replies    int64            // backend replies returned to clients
	Errors     map[string]int64 // error answers by code
	Retries    int64            // requests sent again after their backend failed
	Late       int64            // replies discarded after their request timed out
	Abandoned  int64            // requests whose client left before the answer
	Dials      int64            // data connections opened
	DialErrors int64            // data connections that failed to open
	// Data connections not opened for want of a descriptor (their
	// requests went elsewhere or got overloaded), and idle ones closed to
	// give theirs to a needed one (fdbudget.go).
	LinksRefused, LinksEvicted int64
	BadReplies                 int64 // data connections closed for breaking the protocol
	Ejections                  int64 // backends taken out of rotation
	Refused                    int64 // ejections refused by the policy's cap
	Readmitted                 int64 // ejected backends back after a successful probe
	Stalls                     int64 // data connections found stalled
	Panics                     int64 // requests routed to ejected backends (all of the policy's were)
	NoBudget                   int64 // retries refused by the retry budget
	Held                       int64 // bytes held for requests on their way and replies waiting (MaxMemory)
	Conns                      int64 // inbound connections open (clients and leases)
	// Inbound connections closed at once for being over Config.MaxConns,
	// client connections closed after Config.IdleTimeout, and connections
	// closed for a partial message held past Config.FrameTimeout.
	ConnsRefused, IdleClosed, SlowFrames int64
	Inflight                             int64 // requests not yet answered
	Leases                               int64 // backend registrations held
	// Bytes of messages read from clients and backends (framing
	// included), and bytes written to them.
	ClientBytesIn, ClientBytesOut, BackendBytesIn, BackendBytesOut int64

	stopped bool // the proxy had stopped: the counts are final
}

// Snapshot sums the loops' counters. It asks each loop to publish first
// (waiting for a busy loop at most syncWait), so that it sees what happened
// before the call; once the proxy stopped it reads the final counts.
func (m *Metrics) Snapshot() Snapshot {
	stopped := m.p.syncMetrics()
	s := Snapshot{Errors: map[string]int64{}, stopped: stopped}
	m.p.mu.Lock() // before m.mu: loopOf holds it while it adds a loop
	s.Leases = int64(len(m.p.leases))
	m.p.mu.Unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, l := range m.loops {
		get := func(i int) int64 { return l.pub[i].Load() }
		if stopped { // the loops are done: Run's return ordered their writes before this
			get = func(i int) int64 { return l.n[i] }
		}
		s.Requests += get(mRequests)
		s.Replies += get(mReplies)
		s.Retries += get(mRetries)
		s.Late += get(mLate)
		s.Abandoned += get(mAbandoned)
		s.Dials += get(mDials)
		s.DialErrors += get(mDialErrors)
		s.LinksRefused += get(mLinksRefused)
		s.LinksEvicted += get(mLinksEvicted)
		s.BadReplies += get(mBadReplies)
		s.Ejections += get(mEjections)
		s.Refused += get(mEjectRefused)
		s.Readmitted += get(mReadmissions)
		s.Stalls += get(mStalls)
		s.Panics += get(mPanics)
		s.NoBudget += get(mRetriesRefused)
		s.Held += get(mHeld)
		s.Conns += get(mConns)
		s.IdleClosed += get(mIdleClosed)
		s.SlowFrames += get(mSlowFrames)
		s.Inflight += get(mUnanswered)
		s.ClientBytesIn += get(mClientIn)
		s.ClientBytesOut += get(mClientOut)
		s.BackendBytesIn += get(mBackendIn)
		s.BackendBytesOut += get(mBackendOut)
		for i, c := range errorCodes {
			if n := get(mErrors + i); n > 0 {
				s.Errors[c] += n
			}
		}
	}
	s.ConnsRefused = m.p.refused.Load()
	return s
}

// policies sums the loops' per-policy counts, by policy label. Call it
// after Snapshot (which has the loops publish); stopped is what the
// Snapshot's sync reported.
func (m *Metrics) policies(stopped bool) map[string]*policyTotals {
	out := map[string]*policyTotals{}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, l := range m.loops {
		for _, ps := range l.pols.slots() {
			pt := out[ps.label]
			if pt == nil {
				pt = &policyTotals{}
				out[ps.label] = pt
			}
			pt.add(ps, stopped)
		}
	}
	return out
}

var (
	descRequests  = prometheus.NewDesc("prism_requests_total", "Requests read from clients, by policy (\"none\": not decodable).", []string{"policy"}, nil)
	descReplies   = prometheus.NewDesc("prism_replies_total", "Backend replies returned to clients, by policy.", []string{"policy"}, nil)
	descErrors    = prometheus.NewDesc("prism_errors_total", "Error answers, by policy and code.", []string{"policy", "code"}, nil)
	descLatency   = prometheus.NewDesc("prism_request_duration_seconds", "Time from a request's arrival to its answer (reply or error) being queued for its client, by policy.", []string{"policy"}, nil)
	descBackLat   = prometheus.NewDesc("prism_backend_reply_duration_seconds", "Time from a request being handed to a backend's data connection to its reply, by policy.", []string{"policy"}, nil)
	descRetries   = prometheus.NewDesc("prism_retries_total", "Requests sent again after their backend failed.", nil, nil)
	descLate      = prometheus.NewDesc("prism_late_replies_total", "Replies discarded after their request timed out.", nil, nil)
	descAbandoned = prometheus.NewDesc("prism_abandoned_total", "Requests whose client left before the answer.", nil, nil)
	descDials     = prometheus.NewDesc("prism_backend_dials_total", "Data connections opened to backends.", nil, nil)
	descDialErrs  = prometheus.NewDesc("prism_backend_dial_errors_total", "Data connections that failed to open.", nil, nil)
	descLinksRef  = prometheus.NewDesc("prism_backend_connections_refused_total", "Data connections not opened for want of a file descriptor (the open-files limit): their requests went to another backend or were answered overloaded.", nil, nil)
	descLinksEvi  = prometheus.NewDesc("prism_backend_connections_evicted_total", "Idle data connections closed to give their file descriptor to a needed one.", nil, nil)
	descBadReply  = prometheus.NewDesc("prism_backend_protocol_errors_total", "Data connections closed because the backend broke the protocol (a bad or unasked reply).", nil, nil)
	descEjections = prometheus.NewDesc("prism_backend_ejections_total", "Backends taken out of rotation (outlier ejection).", nil, nil)
	descRefused   = prometheus.NewDesc("prism_backend_ejections_refused_total", "Ejections refused because the policy's share of ejected backends was at its cap.", nil, nil)
	descReadmit   = prometheus.NewDesc("prism_backend_readmissions_total", "Ejected backends readmitted after a successful probe.", nil, nil)
	descStalls    = prometheus.NewDesc("prism_backend_stalls_total", "Data connections found with requests in flight and no reply for the stall timeout.", nil, nil)
	descPanics    = prometheus.NewDesc("prism_panic_routed_total", "Requests routed to an ejected backend because every backend of the policy was ejected.", nil, nil)
	descNoBudget  = prometheus.NewDesc("prism_retries_refused_total", "Retries refused by the retry budget (answered backend_unavailable).", nil, nil)
	descHeld      = prometheus.NewDesc("prism_memory_held_bytes", "Bytes held for requests on their way to backends and replies waiting their turn (bounded by -max-memory).", nil, nil)
	descState     = prometheus.NewDesc("prism_backend_state", "A backend's outlier state: 1 for the state it is in (up, ejected or probing), 0 for the others.", []string{"id", "policy", "state"}, nil)
	descConns     = prometheus.NewDesc("prism_connections", "Inbound connections open (clients and leases).", nil, nil)
	descLeases    = prometheus.NewDesc("prism_leases", "Backend registrations held (lease connections with a backend registered).", nil, nil)
	descConnsRef  = prometheus.NewDesc("prism_connections_refused_total", "Inbound connections closed as they opened: the connection cap (-max-conns) was reached.", nil, nil)
	descIdle      = prometheus.NewDesc("prism_connections_idle_closed_total", "Client connections closed after the idle timeout.", nil, nil)
	descSlowFrame = prometheus.NewDesc("prism_connections_slow_frame_total", "Connections answered bad_request and closed for holding a partial message past the frame timeout.", nil, nil)
	descInflight  = prometheus.NewDesc("prism_inflight", "Requests not yet answered.", nil, nil)
	descBackends  = prometheus.NewDesc("prism_backends", "Backends registered, by policy.", []string{"policy"}, nil)
	descRouted    = prometheus.NewDesc("prism_backend_routed_total", "Requests routed to a backend.", []string{"id", "policy"}, nil)
	descBackFail  = prometheus.NewDesc("prism_backend_failures_total", "Failures of a backend: requests timed out on it, data connections that failed to open, closed with requests in flight or broke the protocol.", []string{"id", "policy"}, nil)
	descBackInfl  = prometheus.NewDesc("prism_backend_inflight", "Requests on a backend's data connections (sent or waiting to be written), not yet replied to.", []string{"id", "policy"}, nil)
	descClientIn  = prometheus.NewDesc("prism_client_received_bytes_total", "Bytes of messages read from clients, framing included.", nil, nil)
	descClientOut = prometheus.NewDesc("prism_client_sent_bytes_total", "Bytes written to clients.", nil, nil)
	descBackIn    = prometheus.NewDesc("prism_backend_received_bytes_total", "Bytes of replies read from backends, framing included.", nil, nil)
	descBackOut   = prometheus.NewDesc("prism_backend_sent_bytes_total", "Bytes of requests written to backends.", nil, nil)
	descRegUp     = prometheus.NewDesc("prism_registry_up", "1 while the fleet registry (etcd) is reachable, 0 while not; absent without -registry.", nil, nil)
	descRegBack   = prometheus.NewDesc("prism_registry_backends", "Registrations of the fleet's other proxies known from the fleet registry (suspects included).", nil, nil)
)

var allDescs = []*prometheus.Desc{descRequests, descReplies, descErrors, descLatency, descBackLat, descRetries, descLate,
	descAbandoned, descDials, descDialErrs, descLinksRef, descLinksEvi, descBadReply, descEjections, descRefused, descReadmit, descStalls,
	descPanics, descNoBudget, descHeld, descState, descConns, descLeases, descConnsRef, descIdle, descSlowFrame,
	descInflight, descBackends, descRouted, descBackFail, descBackInfl, descClientIn, descClientOut, descBackIn, descBackOut, descRegUp, descRegBack}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
}

// Collect implements prometheus.Collector: the counters are read at scrape
// time, so the request path pays only for its loop-local adds.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	s := m.Snapshot()
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	histogram := func(d *prometheus.Desc, h *histo, labels ...string) {
		ch <- prometheus.MustNewConstHistogram(d, h.count(), float64(h.sum)/1e9, h.cumulative(), labels...)
	}
	for label, pt := range m.policies(s.stopped) {
		counter(descRequests, pt.n[pRequests], label)
		counter(descReplies, pt.n[pReplies], label)
		for i, c := range errorCodes {
			counter(descErrors, pt.n[pErrors+i], label, c)
		}
		histogram(descLatency, &pt.lat, label)
		if label != policyNone { // no request of "none" reaches a backend
			histogram(descBackLat, &pt.backend, label)
		}
	}
	counter(descRetries, s.Retries)
	counter(descLate, s.Late)
	counter(descAbandoned, s.Abandoned)
	counter(descDials, s.Dials)
	counter(descDialErrs, s.DialErrors)
	counter(descLinksRef, s.LinksRefused)
	counter(descLinksEvi, s.LinksEvicted)
	counter(descBadReply, s.BadReplies)
	counter(descEjections, s.Ejections)
	counter(descRefused, s.Refused)
	counter(descReadmit, s.Readmitted)
	counter(descStalls, s.Stalls)
	counter(descPanics, s.Panics)
	counter(descNoBudget, s.NoBudget)
	gauge(descConns, s.Conns)
	gauge(descLeases, s.Leases)
	counter(descConnsRef, s.ConnsRefused)
	counter(descIdle, s.IdleClosed)
	counter(descSlowFrame, s.SlowFrames)
	gauge(descInflight, s.Inflight)
	gauge(descHeld, s.Held)
	counter(descClientIn, s.ClientBytesIn)
	counter(descClientOut, s.ClientBytesOut)
	counter(descBackIn, s.BackendBytesIn)
	counter(descBackOut, s.BackendBytesOut)
	perPolicy := map[int64]int64{}
	inflight := m.p.backendInflight()
	for _, b := range m.p.registry.Backends() {
		id, pol := itoa(b.ID), itoa(b.Policy)
		perPolicy[b.Policy]++
		counter(descRouted, int64(b.Routed()), id, pol)
		counter(descBackFail, int64(b.Failures()), id, pol)
		gauge(descBackInfl, int64(inflight[b]), id, pol)
		st := b.State()
		for i, name := range stateNames {
			v := int64(0)
			if int32(i) == st {
				v = 1
			}
			gauge(descState, v, id, pol, name)
		}
	}
	for p, n := range perPolicy {
		gauge(descBackends, n, itoa(p))
	}
	if on, up, _, n := m.p.fleetStatus(); on {
		v := int64(0)
		if up {
			v = 1
		}
		gauge(descRegUp, v)
		gauge(descRegBack, int64(n))
	}
}

// backendInflight counts the requests on each backend's data connections,
// asking each loop (through its task queue: links are the loop's own) and
// waiting for a busy one at most syncWait; a loop that did not answer in
// time is left out. Empty once the proxy stopped.
func (p *proxy) backendInflight() map[*pool.Backend]int {
	out := map[*pool.Backend]int{}
	ctx, cancel := context.WithTimeout(context.Background(), syncWait)
	defer cancel()
	counts, _ := runOnLoops(ctx, p, func(l *loop) map[*pool.Backend]int {
		m := map[*pool.Backend]int{}
		for b, lk := range l.links {
			if n := lk.fifo.Len(); n > 0 {
				m[b] = n
			}
		}
		return m
	})
	for _, m := range counts {
		for b, n := range m {
			out[b] += n
		}
	}
	return out
}
