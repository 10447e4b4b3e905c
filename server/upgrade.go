package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/prism-proxy/prism/codec"
	"github.com/prism-proxy/prism/pool"
)

// Zero-downtime upgrade: a new proxy process binds the same address beside
// this one (every listener is SO_REUSEPORT), and this one hands over.
//
// Handover stops accepting (its listeners leave the port's group: with
// net.ipv4.tcp_migrate_req=1 the connections waiting in their queues move
// to the new process's listeners instead of being reset), then sends every
// client away: a client connection stops being read, gets the answers of
// every request already read, and then a FIN (its write side is shut
// down). A request without an answer when the FIN comes was never read,
// so never forwarded: the client sends it again on a new connection, which
// only the new process accepts. The proxy closes the connection when the
// client closes its end (or after goawayLinger). Backends' leases stay
// open meanwhile, so that requests still in flight are answered by them;
// the leases drop when this process stops, and the backends register again
// (landing on the new process, the only one listening).
//
// The new process must route from its first connection on, before the
// backends register with it: Inherit gives it the registrations of the old
// one, without leases, until the backends' own setups replace them.

// ErrUnsupported is returned by Handover where listeners cannot be taken
// out of their port's group without stopping the engine.
var ErrUnsupported = errors.New("server: not supported on this system")

// goawayLinger bounds how long a client that was sent away may keep its
// connection open after the FIN: then the proxy closes it.
const goawayLinger = 5 * time.Second

// InheritGrace is how long an inherited registration stays in rotation
// without its backend's own setup: a backend that does not register again
// within it (it died during the upgrade) leaves rotation.
const InheritGrace = 10 * time.Second

// Inherit puts backends in rotation before Start, without leases: the
// registrations an older process of an upgrade holds (its Backends). A
// setup of the same id replaces one; one not replaced within InheritGrace
// leaves rotation. Static backends are skipped (the configuration gives
// them), and so are ids that are static here. Safe from any goroutine.
func (p *Proxy) Inherit(backends []BackendInfo) {
	px := p.p
	var held []*pool.Backend
	px.mu.Lock()
	for _, bi := range backends {
		if bi.Static || px.static[bi.ID] != nil || bi.Fleet != "" { // the fleet registry gives those
			continue // static backends come from this process's own configuration
		}
		f := codec.Binary
		if bi.Framing == codec.Text.String() {
			f = codec.Text
		}
		b := &pool.Backend{ID: bi.ID, Policy: bi.Policy, Addr: bi.Addr, Framing: f}
		px.registry.Register(b)
		held = append(held, b)
	}
	px.mu.Unlock()
	if len(held) == 0 {
		return
	}
	px.cfg.Logger.Info("registrations inherited from the older process", "backends", len(held))
	time.AfterFunc(InheritGrace, func() {
		for _, b := range held {
			if px.registry.Remove(b) { // still the one of its id: no setup came
				px.cfg.Logger.Warn("inherited registration expired: the backend did not register again",
					"id", b.ID, "policy", b.Policy, "addr", b.Addr)
			}
		}
	})
}

// Handover stops accepting, sends the clients away once their answers are
// written (see above), and then shuts the proxy down as Shutdown does,
// within ctx. It returns nil when every request read was answered and
// every client closed its connection; after ctx ended, the error of
// Shutdown (and the clients still connected were closed). Call it once
// the process that takes over listens. Safe from any goroutine.
func (p *Proxy) Handover(ctx context.Context) error {
	px := p.p
	select {
	case <-px.booted:
	default:
		return p.Shutdown(ctx)
	}
	px.handover.Store(true)
	if err := stopListening(px.listen, px.regListen); err != nil {
		px.cfg.Logger.Error("handover: cannot stop accepting; shutting down", "err", err)
		return errors.Join(fmt.Errorf("handover: %w", err), p.Shutdown(ctx))
	}
	log := px.cfg.Logger
	began := time.Now()
	log.Info("handover: not accepting; sending clients away once answered")
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	progress := time.NewTicker(time.Second)
	defer progress.Stop()
	for {
		left := px.goaway()
		if left == 0 {
			log.Info("handover: every client left", "elapsed", time.Since(began).Round(time.Millisecond))
			break
		}
		select {
		case <-ctx.Done():
			log.Warn("handover: clients still connected at the deadline", "clients", left)
			return p.Shutdown(ctx)
		case <-px.done:
			return p.Shutdown(ctx)
		case <-progress.C:
			log.Info("handover: waiting for clients", "clients", left, "elapsed", time.Since(began).Round(time.Millisecond))
		case <-tick.C:
		}
	}
	return p.Shutdown(ctx)
}

// goaway has every loop send its clients away (inConn.goAway) and returns
// how many client connections are still open.
func (p *proxy) goaway() int {
	ns, _ := runOnLoops(context.Background(), p, func(l *loop) int {
		n := 0
		for ic := range l.conns {
			if ic.role != roleLease {
				ic.goAway()
				n++
			}
		}
		l.flush()
		return n
	})
	n := 0
	for _, k := range ns {
		n += k
	}
	return n
}

// goAway stops reading the client, and once the answers of what it read
// are written, shuts down the write side: the client sees its answers,
// then EOF. Requests it sent after the last one read are never forwarded.
// On ic's loop.
func (ic *inConn) goAway() {
	if ic.gc == nil {
		return
	}
	now := time.Now()
	if ic.awaySince.IsZero() {
		ic.awaySince = now
		ic.gc.Discard(-1)
	}
	switch {
	case ic.finSent:
		if now.Sub(ic.awaySince) > goawayLinger {
			ic.gc.Close()
		}
	case ic.queue.Len() == 0 && ic.out == nil && ic.gc.OutboundBuffered() == 0:
		if err := unix.Shutdown(ic.gc.Fd(), unix.SHUT_WR); err != nil {
			ic.gc.Close()
			return
		}
		ic.finSent = true
	}
}
