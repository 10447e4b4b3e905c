package server

import (
	"time"

	"github.com/prism-proxy/prism/pool"
)

// Outlier ejection, the loop's side (the shared state and its rules are in
// pool/health.go): what counts as a backend's failure or success, stall
// detection, and the log of what changed.
//
// Failures: a request timed out on the backend's data connection; the data
// connection could not be opened, or closed with requests in flight, or
// broke the protocol. A success: a reply. A data connection that has
// requests in flight but gave no reply for StallTimeout ejects its backend
// at once (the cap permitting) and is closed, so that its requests are
// retried on the policy's other backends instead of waiting out their
// timeout.

// backendFailed reports a failure of b.
func (l *loop) backendFailed(b *pool.Backend, why string) {
	l.healthChanged(b, l.p.registry.Failed(b, l.clock()), why)
}

func (l *loop) healthChanged(b *pool.Backend, ev pool.Event, why string) {
	log := l.p.cfg.Logger
	switch ev {
	case pool.EjectedNow:
		l.metrics.n[mEjections]++
		log.Warn("backend ejected", "id", b.ID, "policy", b.Policy, "addr", b.Addr, "reason", why,
			"ejections_in_a_row", b.Ejections())
	case pool.CapRefused:
		l.metrics.n[mEjectRefused]++
		if n := l.metrics.n[mEjectRefused]; n&(n-1) == 0 { // 1, 2, 4, 8…: not a line per failure
			log.Warn("backend failing but not ejected: the policy's share of ejected backends is at its cap",
				"id", b.ID, "policy", b.Policy, "reason", why, "refusals", n)
		}
	case pool.Readmitted:
		l.metrics.n[mReadmissions]++
		log.Info("backend readmitted after a successful probe", "id", b.ID, "policy", b.Policy)
	}
}

// checkStall ejects lk's backend and closes lk when lk has requests in
// flight and no reply came for the stall timeout; whatever the ejection
// cap says, it closes lk once its oldest request waited twice the request
// timeout. Run by the tick.
func (lk *link) checkStall(now int64) {
	l := lk.loop
	if lk.replies != lk.tickReplies {
		lk.tickReplies = lk.replies
		lk.progress = now
	}
	if lk.state != linkUp || lk.fifo.Len() == 0 || lk.failed {
		return
	}
	b := lk.backend
	if front, _ := lk.fifo.Front(); front.deadline+l.lim.timeout <= now {
		// Its oldest request was answered "timeout" a timeout ago and
		// the backend still owes the reply: whatever it is doing, the
		// link's memory is better freed (its later requests are retried).
		lk.failed = true
		l.backendFailed(b, "no reply for twice the request timeout")
		lk.gc.Close()
		return
	}
	if l.lim.stall == 0 || now-max(lk.progress, lk.busySince) < l.lim.stall {
		return
	}
	l.metrics.n[mStalls]++
	why := "no reply for " + time.Duration(l.lim.stall).String()
	if b.State() == pool.Probing {
		l.backendFailed(b, why) // its probe stalled: ejected again
	} else {
		l.healthChanged(b, l.p.registry.Eject(b, now), why)
	}
	if b.State() == pool.Healthy {
		return // the cap refused: its requests wait for their timeout
	}
	lk.failed = true // counted: its close is not another failure
	lk.gc.Close()    // OnClose retries its calls elsewhere
}
