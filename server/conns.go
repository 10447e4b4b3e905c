package server

import "github.com/prism-proxy/prism/codec"

// Idle and slow inbound connections. A timer or goroutine per connection
// would cost on every request (resetting it) and per connection; instead
// every read stamps the connection from the loop's clock of that read
// (loop.stamp, read once per read anyway), and the tick scans the loop's
// inbound connections (loop.conns) every limits.connScan: at most once a
// second, O(connections) with nothing on the request path.

// scanConns closes the connections idle past Config.IdleTimeout and
// answers and closes those holding a partial message past
// Config.FrameTimeout.
func (l *loop) scanConns(now int64) {
	lim := &l.lim
	for ic := range l.conns {
		if ic.gc == nil {
			continue
		}
		if ic.closing {
			if ic.queue.Len() == 0 && ic.awaySince.IsZero() {
				ic.linger(now) // its FIN once written, its close once lingered
			}
			continue
		}
		switch {
		case l.held > lim.loopBytes && ic.inbound > maxPartialOverBudget:
			ic.overBudget() // over the memory share: what waits unparsed goes first
		case lim.frame > 0 && ic.partialSince != 0 && now-ic.partialSince > lim.frame:
			// The framing is known (a partial message has bytes), so the
			// answer can be framed; fatal sends it after the requests
			// already queued. srcid 0: the message has none yet.
			l.metrics.n[mSlowFrames]++
			ic.partialSince = 0
			ic.fatal(codec.CodeBadRequest, "incomplete message for too long")
		case lim.idle > 0 && ic.backend == nil && ic.queue.Len() == 0 && now-ic.lastRead > lim.idle:
			// Nothing to answer, and the protocol has no message the
			// proxy sends unasked: just close.
			l.metrics.n[mIdleClosed]++
			ic.closing = true
			ic.gc.Close()
		}
	}
}
