package server

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/prism-proxy/prism/codec"
)

// errorCodes are the protocol's error codes, indexed for per-loop counters.
var errorCodes = [...]string{
	codec.CodeBadRequest, codec.CodeTooLarge, codec.CodeNoBackend, codec.CodeBackendUnavailable,
	codec.CodeTimeout, codec.CodeOverloaded, codec.CodeUnauthorized, codec.CodeShuttingDown,
}

// loopMetrics are one loop's counters: written by the loop only, each on the
// loop's own cache lines, read by scrapes.
type loopMetrics struct {
	requests, replies, retries, late, abandoned atomic.Int64
	dials, dialErrors, conns                    atomic.Int64
	errors                                      [len(errorCodes)]atomic.Int64
	_                                           [64]byte
}

func (m *loopMetrics) countError(code string) {
	for i, c := range errorCodes {
		if c == code {
			m.errors[i].Add(1)
			return
		}
	}
}

// Metrics aggregates the loops' counters and exports them to Prometheus.
// Safe from any goroutine.
type Metrics struct {
	p     *Proxy
	mu    sync.Mutex
	loops []*loopMetrics
}

func newMetrics(p *Proxy) *Metrics { return &Metrics{p: p} }

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
	Conns      int64            // inbound connections open (clients and leases)
	Inflight   int64            // requests not yet answered
}

// Snapshot sums the loops' counters.
func (m *Metrics) Snapshot() Snapshot {
	s := Snapshot{Errors: map[string]int64{}}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, l := range m.loops {
		s.Requests += l.requests.Load()
		s.Replies += l.replies.Load()
		s.Retries += l.retries.Load()
		s.Late += l.late.Load()
		s.Abandoned += l.abandoned.Load()
		s.Dials += l.dials.Load()
		s.DialErrors += l.dialErrors.Load()
		s.Conns += l.conns.Load()
		for i, c := range errorCodes {
			if n := l.errors[i].Load(); n > 0 {
				s.Errors[c] += n
			}
		}
	}
	s.Inflight = m.p.unanswered()
	return s
}

var (
	descRequests  = prometheus.NewDesc("prism_requests_total", "Requests read from clients.", nil, nil)
	descReplies   = prometheus.NewDesc("prism_replies_total", "Backend replies returned to clients.", nil, nil)
	descErrors    = prometheus.NewDesc("prism_errors_total", "Error answers, by code.", []string{"code"}, nil)
	descRetries   = prometheus.NewDesc("prism_retries_total", "Requests sent again after their backend failed.", nil, nil)
	descLate      = prometheus.NewDesc("prism_late_replies_total", "Replies discarded after their request timed out.", nil, nil)
	descAbandoned = prometheus.NewDesc("prism_abandoned_total", "Requests whose client left before the answer.", nil, nil)
	descDials     = prometheus.NewDesc("prism_backend_dials_total", "Data connections opened to backends.", nil, nil)
	descDialErrs  = prometheus.NewDesc("prism_backend_dial_errors_total", "Data connections that failed to open.", nil, nil)
	descConns     = prometheus.NewDesc("prism_connections", "Inbound connections open (clients and leases).", nil, nil)
	descInflight  = prometheus.NewDesc("prism_inflight", "Requests not yet answered.", nil, nil)
	descBackends  = prometheus.NewDesc("prism_backends", "Backends in rotation, by policy.", []string{"policy"}, nil)
	descRouted    = prometheus.NewDesc("prism_backend_routed_total", "Requests routed to a backend.", []string{"id", "policy"}, nil)
)

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRequests, descReplies, descErrors, descRetries, descLate,
		descAbandoned, descDials, descDialErrs, descConns, descInflight, descBackends, descRouted} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: the counters are read at scrape
// time, so the request path pays only for its loop-local atomic adds.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	s := m.Snapshot()
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	counter(descRequests, s.Requests)
	counter(descReplies, s.Replies)
	for _, c := range errorCodes {
		counter(descErrors, s.Errors[c], c)
	}
	counter(descRetries, s.Retries)
	counter(descLate, s.Late)
	counter(descAbandoned, s.Abandoned)
	counter(descDials, s.Dials)
	counter(descDialErrs, s.DialErrors)
	gauge(descConns, s.Conns)
	gauge(descInflight, s.Inflight)
	perPolicy := map[int64]int64{}
	for _, b := range m.p.registry.Backends() {
		perPolicy[b.Policy]++
		counter(descRouted, int64(b.Routed()), itoa(b.ID), itoa(b.Policy))
	}
	for p, n := range perPolicy {
		gauge(descBackends, n, itoa(p))
	}
}
