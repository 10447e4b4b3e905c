package loadgen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/prism-proxy/prism/client"
	"github.com/prism-proxy/prism/codec"
)

// reportGrace is how long after a second ends the reporter collects it, so
// that connections have handed over that second's latencies.
const reportGrace = 50 * time.Millisecond

// dialParallel bounds the dials in flight at the start, so that a thousand
// connections do not overflow the target's accept queue.
const dialParallel = 64

// run is the state of one Run.
type run struct {
	cfg    Config
	open   bool
	copts  client.Options
	bodies [][]byte // one encoded request per policy

	base      time.Time // run time zero; set before workers start
	measureAt int64     // run time when the measurement starts (end of warmup)
	stopAt    int64     // run time when sending stops; never without Duration
	lastSec   int       // last second of the series; -1: no limit
	limit     int64     // Requests; 0: no limit
	period    float64   // open loop: nanoseconds between requests over all connections

	issued    atomic.Int64 // tickets claimed, when limit > 0
	limitHit  atomic.Bool
	stopping  atomic.Bool // no more sends: duration over, limit reached or ctx done
	cancelled atomic.Bool // ctx ended the run
	abandoned atomic.Bool // in-flight requests are no longer waited for nor counted
	stoppedAt atomic.Int64
	stopOnce  sync.Once
	stopCh    chan struct{} // closed with stopping
	limitCh   chan struct{} // closed with limitHit
	finished  chan struct{} // closed when every worker is done

	ctx       context.Context // for redials; cancelled at stop
	cancelCtx context.CancelFunc

	workers []*worker
	shards  []*shard
	series  []Second
}

// Run generates load as cfg says and returns what it measured. It returns
// ErrConfig (wrapped) for a config it cannot run and ErrConnect (wrapped) when
// no connection could be established. When ctx ends the run early, Run stops
// sending, waits up to a second for the answers in flight, and returns the
// result so far with ctx.Err(). Run may be called from several goroutines.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	r := newRun(cfg)
	conns, err := r.dialAll(ctx)
	if err != nil {
		return nil, err
	}
	r.ctx, r.cancelCtx = context.WithCancel(ctx)
	defer r.cancelCtx()
	r.base = time.Now()
	var wg sync.WaitGroup
	for i, w := range r.workers {
		wg.Go(func() { w.loop(conns[i]) })
	}
	go r.stopper(ctx)
	go r.watchdog()
	reported := make(chan struct{})
	go r.report(reported)
	paced := make(chan struct{})
	clock := newSleeper()
	if r.open {
		go pace(r, clock, paced)
	} else {
		close(paced)
	}
	wg.Wait()
	end := r.now()
	close(r.finished)
	clock.close()
	<-paced
	<-reported
	return r.result(end), ctx.Err()
}

func newRun(cfg Config) *run {
	r := &run{
		cfg:       cfg,
		open:      cfg.Rate > 0,
		measureAt: int64(cfg.Warmup),
		stopAt:    never,
		lastSec:   -1,
		limit:     cfg.Requests,
		period:    1e9 / max(cfg.Rate, 1e-9),
		stopCh:    make(chan struct{}),
		limitCh:   make(chan struct{}),
		finished:  make(chan struct{}),
	}
	if cfg.Duration > 0 {
		r.stopAt = r.measureAt + int64(cfg.Duration)
		r.lastSec = int((int64(cfg.Duration)+second-1)/second) - 1
	}
	payload := strings.Repeat("abcdefghijklmnopqrstuvwxyz", cfg.Size/26+1)[:cfg.Size]
	for _, p := range cfg.Policies {
		r.bodies = append(r.bodies, codec.AppendRequest(nil, cfg.SrcID, p, payload))
	}
	frame := codec.HeaderLen + len(r.bodies[0]) + 64 // a reply is about as long as its request
	r.copts = client.Options{
		Framing:    cfg.Framing,
		MaxFrame:   max(codec.DefaultMaxFrame, 2*frame),
		BufferSize: min(max(2*cfg.Pipeline*frame, 4<<10), 64<<10),
	}
	nShards := min(runtime.GOMAXPROCS(0), cfg.Conns)
	for range nShards {
		r.shards = append(r.shards, newShard(r.open))
	}
	ringLen := 1
	for ringLen < cfg.Pipeline {
		ringLen <<= 1
	}
	for i := range cfg.Conns {
		w := &worker{
			r:      r,
			id:     i,
			target: cfg.Targets[i%len(cfg.Targets)],
			ring:   make([]slot, ringLen),
			mask:   uint64(ringLen - 1),
			space:  make(chan struct{}, 1),
			claim:  int64(min(cfg.Pipeline, 64)),
			pol:    i % len(r.bodies),
		}
		w.batch = batch{sh: r.shards[i%nShards], measureAt: r.measureAt, lastSec: r.lastSec}
		if r.open {
			w.claim = 1
			w.tick = make(chan struct{}, 1)
		}
		r.workers = append(r.workers, w)
	}
	return r
}

// now is the run time: nanoseconds since the start, on the monotonic clock.
func (r *run) now() int64 { return int64(time.Since(r.base)) }

func (r *run) dial(addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(r.ctx, r.cfg.dialTimeout())
	defer cancel()
	return r.cfg.Dial(ctx, "tcp", addr)
}

// dialAll opens every connection before the clock starts. Connections that
// fail are redialed by their workers during the run; if all fail, the run
// cannot start.
func (r *run) dialAll(ctx context.Context) ([]net.Conn, error) {
	r.ctx = ctx
	conns := make([]net.Conn, len(r.workers))
	errs := make([]error, len(r.workers))
	sem := make(chan struct{}, dialParallel)
	var wg sync.WaitGroup
	for i, w := range r.workers {
		sem <- struct{}{}
		wg.Go(func() {
			conns[i], errs[i] = r.dial(w.target)
			<-sem
		})
	}
	wg.Wait()
	ok := 0
	for _, c := range conns {
		if c != nil {
			ok++
		}
	}
	if ok > 0 && ctx.Err() == nil {
		return conns, nil
	}
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("%w: %w", ErrConnect, errors.Join(uniqueErrors(errs)...))
}

// uniqueErrors drops repeats of the same message, so that 32 refused
// connections make one line.
func uniqueErrors(errs []error) []error {
	seen := map[string]bool{}
	var out []error
	for _, err := range errs {
		if err != nil && !seen[err.Error()] {
			seen[err.Error()] = true
			out = append(out, err)
		}
	}
	return out
}

// claimTickets takes up to want of the Requests still to send.
func (r *run) claimTickets(want int64) int64 {
	end := r.issued.Add(want)
	start := end - want
	if start >= r.limit {
		if !r.limitHit.Swap(true) {
			close(r.limitCh) // wakes open-loop writers sleeping until their next request
		}
		return 0
	}
	return min(end, r.limit) - start
}

// stop ends sending.
func (r *run) stop() {
	r.stopOnce.Do(func() {
		r.stoppedAt.Store(r.now())
		r.stopping.Store(true)
		close(r.stopCh)
		r.cancelCtx()
	})
}

// sleep waits for d or the stop, and reports whether it waited the whole d.
func (r *run) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.stopCh:
		return false
	}
}

// stopper ends sending at the end of Duration or when ctx ends; after ctx
// ends it waits a second (at most Timeout) for the answers in flight, then
// abandons them.
func (r *run) stopper(ctx context.Context) {
	var timeUp <-chan time.Time
	if r.stopAt != never {
		t := time.NewTimer(time.Duration(r.stopAt - r.now()))
		defer t.Stop()
		timeUp = t.C
	}
	select {
	case <-timeUp:
		r.stop()
	case <-ctx.Done():
	case <-r.finished:
		return
	}
	select {
	case <-ctx.Done():
	case <-r.finished:
		return
	}
	r.cancelled.Store(true)
	r.stop()
	grace := time.Second
	if r.cfg.Timeout > 0 {
		grace = min(grace, r.cfg.Timeout)
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.finished:
		return
	}
	r.abandoned.Store(true)
	for _, w := range r.workers {
		w.interrupt()
	}
}

// watchdog ends the sessions of connections that had requests in flight and
// no answer for Timeout: a connection's requests count as timed out once it
// has gone that long without progress.
func (r *run) watchdog() {
	timeout := int64(r.cfg.Timeout)
	if timeout <= 0 {
		return
	}
	period := min(max(timeout/4, int64(5*time.Millisecond)), int64(250*time.Millisecond))
	tick := time.NewTicker(time.Duration(period))
	defer tick.Stop()
	type seen struct {
		gen   uint64
		head  uint64
		since int64
	}
	state := make([]seen, len(r.workers))
	for {
		select {
		case <-tick.C:
		case <-r.finished:
			return
		}
		now := r.now()
		for i, w := range r.workers {
			s := &state[i]
			gen := w.gen.Load()
			h, t := w.head.Load(), w.tail.Load()
			if gen != s.gen || h != s.head || h == t {
				*s = seen{gen, h, now}
				continue
			}
			// Progress stopped at most one period before s.since.
			if now-s.since >= timeout+period {
				w.expire(gen)
				s.since = now
			}
		}
	}
}

// counts sums the connections' published counters.
func (r *run) counts() (sent, replies int64, errs map[string]int64) {
	errs = map[string]int64{}
	for _, w := range r.workers {
		sent += w.pubSent.Load()
		replies += w.pubReplies.Load()
		for i := range w.codes {
			if n := w.codes[i].Load(); n > 0 {
				errs[codeNames[i]] += n
			}
		}
		w.otherMu.Lock()
		for k, n := range w.other {
			errs[k] += n
		}
		w.otherMu.Unlock()
	}
	return sent, replies, errs
}

func sumErrors(errs map[string]int64) int64 {
	var n int64
	for _, v := range errs {
		n += v
	}
	return n
}

// report builds the per-second series and calls Config.Progress. It runs
// until the run has finished, then collects what remains.
func (r *run) report(done chan<- struct{}) {
	defer close(done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	h := newSeriesHist()
	sec := 0       // next second of the measurement to collect
	warm := 1      // next whole second of warmup to report
	var errs int64 // errors counted up to the last collected second
	var last Second
	for {
		var at int64
		switch {
		case int64(warm)*second < r.measureAt:
			at = int64(warm) * second
		case r.lastSec >= 0 && sec > r.lastSec:
			at = never // the rest comes at the end
		default:
			at = r.measureAt + int64(sec+1)*second + int64(reportGrace)
		}
		var tick <-chan time.Time
		if at != never {
			timer.Reset(time.Duration(at - r.now()))
			tick = timer.C
		}
		select {
		case <-tick:
		case <-r.finished:
			final := sec
			for _, sh := range r.shards {
				final = max(final, sh.lastSecond()+1)
			}
			for ; sec < final; sec++ {
				last = r.collect(sec, h, &errs)
			}
			r.progress(true, false, last)
			return
		}
		if int64(warm)*second < r.measureAt {
			warm++
			r.progress(false, true, Second{})
			continue
		}
		last = r.collect(sec, h, &errs)
		sec++
		r.progress(false, false, last)
	}
}

// collect makes the series entry of second sec. The errors of a second are
// those published by the time it is collected.
func (r *run) collect(sec int, h *hdrhistogram.Histogram, errs *int64) Second {
	h.Reset()
	for _, sh := range r.shards {
		sh.collect(sec, h)
	}
	s := Second{T: sec + 1, Replies: h.TotalCount()}
	if s.Replies > 0 {
		s.P50 = us(h.ValueAtQuantile(50))
		s.P99 = us(h.ValueAtQuantile(99))
	}
	_, _, m := r.counts()
	total := sumErrors(m)
	s.Errors, *errs = total-*errs, total
	r.series = append(r.series, s)
	return s
}

func (r *run) progress(final, warmup bool, last Second) {
	if r.cfg.Progress == nil {
		return
	}
	p := Progress{Elapsed: time.Duration(r.now()), Warmup: warmup, Final: final, Last: last}
	if !warmup {
		var errs map[string]int64
		p.Sent, p.Replies, errs = r.counts()
		p.Errors = sumErrors(errs)
	}
	r.cfg.Progress(p)
}

func us(ns int64) float64 { return float64(ns) / 1e3 }

// result assembles the Result once every worker is done; end is the run
// time when the last one finished.
func (r *run) result(end int64) *Result {
	cfg := r.cfg
	res := &Result{
		Schema:   Schema,
		Targets:  cfg.Targets,
		Mode:     "closed",
		Conns:    cfg.Conns,
		Pipeline: cfg.Pipeline,
		Rate:     cfg.Rate,
		Size:     cfg.Size,
		Policies: cfg.Policies,
		WarmupS:  cfg.Warmup.Seconds(),
		Series:   r.series,
		lat:      newHist(),
	}
	if r.open {
		res.Mode = "open"
		res.unc = newHist()
	}
	if res.Series == nil {
		res.Series = []Second{}
	}
	res.Sent, res.Replies, res.Errors = r.counts()
	for _, sh := range r.shards {
		res.lat.Merge(sh.lat)
		if res.unc != nil {
			res.unc.Merge(sh.unc)
		}
	}
	res.Latency = latencyOf(res.lat)
	if res.unc != nil {
		l := latencyOf(res.unc)
		res.LatencyUncorrected = &l
	}
	elapsed := end - r.measureAt
	if elapsed > 0 {
		res.DurationS = float64(elapsed) / 1e9
		res.Throughput = float64(res.Replies) / res.DurationS
	}
	// The sending window: Duration, or up to the last request when the
	// Requests ran out first, or up to the stop when ctx cut the run short.
	window := r.stopAt - r.measureAt
	if r.limitHit.Load() {
		var lastSend int64
		for _, w := range r.workers {
			lastSend = max(lastSend, w.lastSend)
		}
		window = lastSend - r.measureAt
		if r.open {
			window += int64(1e9 / cfg.Rate) // the last request's own share
		}
	}
	if r.cancelled.Load() {
		window = min(window, r.stoppedAt.Load()-r.measureAt)
	}
	window = min(window, elapsed)
	if window > 0 {
		res.AchievedRate = float64(res.Sent) / (float64(window) / 1e9)
	}
	return res
}
