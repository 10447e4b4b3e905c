package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/term"

	"github.com/prism-proxy/prism/backend"
	"github.com/prism-proxy/prism/client"
	"github.com/prism-proxy/prism/server"
)

// Errors of a run whose checks failed, joined in the error Run returns.
var (
	ErrNoReplies  = errors.New("demo: no replies")
	ErrIsolation  = errors.New("demo: replies from a backend of another policy")
	ErrWrongReply = errors.New("demo: replies with a wrong destid or payload")
	ErrUnanswered = errors.New("demo: requests left unanswered")
)

const (
	startTimeout    = 10 * time.Second // proxy up and every backend registered
	shutdownTimeout = 2 * time.Second  // the proxy's graceful drain at the end
	payloadPool     = 4096
)

// Run starts a proxy and its backends on loopback, runs the clients for
// cfg.Duration or until ctx ends, checks every answer, writes progress to
// stderr and the summary to stdout, and shuts everything down.
//
// The Summary is non-nil once the clients ran, even when an error is
// returned. The error is a setup failure, an ErrConfig, or, after a run that
// completed, the failed checks (see Summary.Err). Safe to call concurrently.
func Run(ctx context.Context, cfg Config, stdout, stderr io.Writer) (*Summary, error) {
	cfg, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	prog := progressMode(cfg, stderr)
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	topo := topology{policies: cfg.Policies, backends: cfg.Backends}

	d, err := startDeployment(ctx, cfg, topo)
	if err != nil {
		return nil, err
	}
	defer d.close()

	rng := rand.New(rand.NewPCG(seed, 0))
	pl := newPayloads(rng, payloadPool, cfg.Size)
	stop := new(atomic.Bool)
	workers := make([]*worker, cfg.Clients)
	for i := range workers {
		dctx, cancel := context.WithTimeout(ctx, startTimeout)
		conn, err := client.Dial(dctx, d.proxy.Addr())
		cancel()
		if err != nil {
			for _, w := range workers[:i] {
				w.conn.Close()
			}
			return nil, fmt.Errorf("demo: client %d: %w", i+1, err)
		}
		workers[i] = &worker{
			id: int64(1001 + i), conn: conn, topo: topo, pl: pl,
			rng: rand.New(rand.NewPCG(seed, uint64(i+1))), pipeline: cfg.Pipeline, stop: stop,
			hist: newHistogram(), perServer: make([]uint64, topo.servers()), errCodes: map[string]uint64{},
		}
	}

	sum := &Summary{
		Config: cfg, Seed: seed, ProxyAddr: d.proxy.Addr(), ProxyLoops: d.proxy.Config().Loops,
	}
	fmt.Fprintf(progressOut(prog, stderr), "prism demo: proxy %s up, %d backends registered; %d clients sending for %v (interrupt to stop early)\n",
		d.proxy.Addr(), len(d.backends), cfg.Clients, cfg.Duration)

	runCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	// Stop sending at the end; the answers still due must come within the
	// proxy's request timeout, so a read past it means a lost answer.
	drain := d.proxy.Config().Timeout + time.Second
	stopSending := context.AfterFunc(runCtx, func() {
		stop.Store(true)
		deadline := time.Now().Add(drain)
		for _, w := range workers {
			w.conn.NetConn().SetReadDeadline(deadline)
		}
	})
	defer stopSending()

	start := time.Now()
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runWorker(w)
		}()
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	reportProgress(prog, cfg.ProgressEvery, stderr, start, workers, done)
	sum.Elapsed = time.Since(start)
	sum.Interrupted = ctx.Err() != nil
	for _, w := range workers {
		w.conn.Close()
	}
	sum.Proxy = d.proxy.Metrics().Snapshot()
	sum.collect(workers, d.backends, topo)
	sum.ShutdownErr = d.close()

	if _, err := sum.WriteTo(stdout); err != nil {
		return sum, fmt.Errorf("demo: writing the summary: %w", err)
	}
	return sum, sum.Err()
}

// progressMode resolves ProgressAuto by looking at stderr.
func progressMode(cfg Config, stderr io.Writer) Progress {
	if cfg.Progress != ProgressAuto {
		return cfg.Progress
	}
	if f, ok := stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return ProgressLive
	}
	return ProgressLines
}

func progressOut(p Progress, stderr io.Writer) io.Writer {
	if p == ProgressOff {
		return io.Discard
	}
	return stderr
}

// deployment is the proxy and the backends of a run.
type deployment struct {
	proxy    *server.Proxy
	backends []*backend.Server
	once     sync.Once
	err      error
}

// startDeployment starts the proxy and the backends and waits until every
// backend is registered.
func startDeployment(ctx context.Context, cfg Config, topo topology) (*deployment, error) {
	p, err := server.New(server.Config{Listen: "127.0.0.1:0", Loops: cfg.Loops, Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("demo: proxy: %w", err)
	}
	if err := p.Start(); err != nil {
		return nil, fmt.Errorf("demo: proxy: %w", err)
	}
	d := &deployment{proxy: p}
	for id := int64(1); id <= int64(topo.servers()); id++ {
		policy := topo.policyOf(id)
		b, err := backend.New(backend.Config{
			ID: id, Policy: policy, Proxies: []string{p.Addr()}, Mode: topo.modeOf(policy), Logger: cfg.Logger,
		})
		if err == nil {
			err = b.Start()
		}
		if err != nil {
			d.close()
			return nil, fmt.Errorf("demo: backend %d: %w", id, err)
		}
		d.backends = append(d.backends, b)
	}
	wctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	for _, b := range d.backends {
		if err := b.WaitRegistered(wctx); err != nil {
			d.close()
			return nil, fmt.Errorf("demo: backend %d did not register: %w", b.ID(), err)
		}
	}
	return d, nil
}

// close stops the backends, then shuts the proxy down gracefully; once. The
// clients are done by then, and closing the backends first spares them
// registering again with a proxy that went away.
func (d *deployment) close() error {
	d.once.Do(func() {
		var errs []error
		for _, b := range d.backends {
			if err := b.Close(); err != nil {
				errs = append(errs, fmt.Errorf("backend %d close: %w", b.ID(), err))
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		if err := d.proxy.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("proxy shutdown: %w", err))
		}
		d.err = errors.Join(errs...)
	})
	return d.err
}
