package server

import (
	"testing"
	"time"

	"github.com/prism-proxy/prism/codec"
	"github.com/prism-proxy/prism/pool"
)

type closingConn struct {
	fakeConn
	closed bool
}

func (c *closingConn) Close() error { c.closed = true; return nil }

func unitLoop(t *testing.T, cfg Config) (*proxy, *loop) {
	p := &proxy{registry: pool.NewRegistry()}
	p.cfg = cfg
	set := &settings{cfg: p.cfg, lim: newLimits(&p.cfg)}
	p.live.Store(set)
	p.metrics = newMetrics(p)
	p.registry.SetOutlier(pool.Outlier{After: 5, MaxPercent: cfg.MaxEjectedPercent, Probe: cfg.Timeout})
	l := &loop{p: p, links: map[*pool.Backend]*link{}, epoch: time.Now().Add(-time.Hour), lim: set.lim, set: set}
	l.metrics.pols.init()
	return p, l
}

// A data connection whose dial took longer than the stall timeout is taken
// for stalled at the first tick after it opened, before the backend could
// answer: its backend is ejected and the link closed.
func TestSlowDialIsNotAStall(t *testing.T) {
	cfg := Config{Retries: 1, RetryBudget: -1, Loops: 1, MaxMemory: 1 << 40, MaxBackendInflight: 1 << 20,
		MaxConnBuffer: 1 << 30, Timeout: 5 * time.Second, StallTimeout: 50 * time.Millisecond,
		Logger: quiet, MaxClientInflight: 1 << 20, MaxEjectedPercent: 50}
	p, l := unitLoop(t, cfg)
	b1 := &pool.Backend{ID: 1, Policy: 7, Framing: codec.Binary}
	b2 := &pool.Backend{ID: 2, Policy: 7, Framing: codec.Binary}
	p.registry.Register(b1)
	p.registry.Register(b2)
	ic := &inConn{loop: l}
	ic.split.Framing = codec.Binary

	// dispatch's path for a link not yet up: linkDialing, busySince = now.
	l.stamp = l.clock()
	lk := &link{loop: l, backend: b1, linkState: linkState{state: linkDialing}}
	l.links[b1] = lk
	c := l.newCall(ic, 1, 7)
	lk.busySince = l.stamp
	lk.send(c, []byte(`{"type":0,"srcid":1,"privPoliId":7,"payloadsize":1,"payload":"a"}`))

	time.Sleep(80 * time.Millisecond) // the dial takes longer than the stall timeout
	fc := &closingConn{}
	lk.opened(fc)            // OnOpen
	lk.flush()               // the request is written now
	lk.checkStall(l.clock()) // the very next tick
	if b1.State() != pool.Healthy || fc.closed {
		t.Fatalf("backend ejected (state %d) / link closed (%v) right after its dial completed, before it could answer", b1.State(), fc.closed)
	}
}

// With one backend (cap 100%), a retry of a call that failed on it, after
// its ejection ended, makes it Probing with no probe sent.
func TestNoProbeStartedForTheFailedBackend(t *testing.T) {
	cfg := Config{Retries: 1, RetryBudget: -1, Loops: 1, MaxMemory: 1 << 40, MaxBackendInflight: 1 << 20,
		MaxConnBuffer: 1 << 30, Timeout: 5 * time.Second, StallTimeout: 50 * time.Millisecond,
		Logger: quiet, MaxClientInflight: 1 << 20, MaxEjectedPercent: 100}
	p, l := unitLoop(t, cfg)
	b1 := &pool.Backend{ID: 1, Policy: 7, Framing: codec.Binary}
	p.registry.Register(b1)
	if ev := p.registry.Eject(b1, l.clock()-int64(time.Minute)); ev != pool.EjectedNow { // ejected a minute ago: over
		t.Fatalf("eject: %v", ev)
	}
	ic := &inConn{loop: l}
	ic.split.Framing = codec.Binary
	l.stamp = l.clock()
	c := l.newCall(ic, 1, 7)
	c.last = b1 // it just failed on b1 (failAll's retry)
	l.dispatch(c, []byte(`{}`))
	if c.state == callQueued {
		t.Fatal("not answered")
	}
	if b1.State() == pool.Probing {
		t.Fatalf("backend Probing with no probe in flight: it stays out of rotation until the probe deadline, then is ejected again for longer")
	}
}
