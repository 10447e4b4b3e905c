package server

// The descriptor budget. gnet stops a loop, and with it the engine, when
// accept fails with EMFILE (eventloop_unix.go accept: any error but
// EAGAIN, EINTR, ECONNRESET and ECONNABORTED ends the loop), so the proxy
// must never let its descriptors reach the open-files limit. Peers can make
// it open three kinds at will, each bounded: inbound connections by
// Config.MaxConns, below the limit less a reserve; backend data links
// (one per backend per loop, as backends register) by what the limit
// leaves after the inbound cap (linkBudget: a request for a backend with
// no link and no room for one takes the room of an idle link, or is
// answered "overloaded"; each loop has its share); admin
// connections by AdminMaxConns.

// AdminMaxConns caps the admin endpoint's connections open at once (more
// wait in its listen queue): a flood of them must not take the
// descriptors the proxy's loops need.
const AdminMaxConns = 16

// fdFixed is the descriptors the proxy holds besides inbound connections
// and backend links: standard streams, the listener, a poller and its
// eventfd per loop plus the acceptor's, a doorbell (two ends) per loop,
// the Go runtime's poller, the admin listener and its connections, the
// registry's connections, and log files. Generous: a descriptor too many
// here costs one connection, one too few can stop the engine.
func fdFixed(loops int) int { return 32 + AdminMaxConns + 4*loops }

// linkMin is the descriptors kept for backend links whatever MaxConns
// says: a proxy that cannot open a link serves nobody.
func linkMin(loops int) int { return 8 * loops }

// linkBudget is the descriptors backend links may hold under an
// open-files limit of limit (0: unknown) with maxConns inbound
// connections: what fdFixed, the inbound cap and the accept margin leave.
// A link holds two while its dial is handed to gnet (gnet duplicates the
// socket), one once open.
func linkBudget(limit, loops, maxConns int) int64 {
	if limit <= 0 || limit > maxLimit {
		limit = maxLimit
	}
	return int64(limit - fdFixed(loops) - maxConns - acceptMargin(limit))
}

// acceptMargin is room for connections gnet accepts while the cap is
// reached: with several loops its acceptor drains the listen queue in a
// burst and hands each connection to a loop, which refuses it in OnOpen
// only afterwards, so several can hold a descriptor at once. A flood test
// (cmd/prism) measures it.
func acceptMargin(limit int) int { return max(16, limit/16) }

// maxLimit bounds the limit the budget works with: RLIM_INFINITY, or a
// limit beyond what any kernel table holds, means "no practical limit".
const maxLimit = 1 << 24

// connBudget returns the default and the largest MaxConns for an
// open-files limit of limit (0: unknown) and loops event loops. The largest
// keeps fdFixed, acceptMargin and linkMin free; the default keeps a quarter of what
// remains after fdFixed, which leaves room for backend data links (one
// per backend per loop: about 8 backends with 2 loops at a limit of 256,
// about 1800 at 20000) besides the accept margin.
func connBudget(limit, loops int) (def, most int) {
	if limit <= 0 || limit > maxLimit {
		limit = maxLimit
	}
	avail := limit - fdFixed(loops)
	most = avail - acceptMargin(limit) - linkMin(loops)
	def = min(avail-avail/4, most)
	return def, most // most < 1: the limit is too low to serve at all
}

// evictIdleLink makes room for a dial (two descriptors) by closing this
// loop's least recently busy links that have nothing in flight and nothing
// to write: false, closing none, when there are not enough of them. Their
// descriptors count as free at once, though gnet closes them after the
// callbacks of this poll: at most maxEvicting of a loop's are closing at a
// time, which the accept margin covers.
func (l *loop) evictIdleLink() bool {
	need := 2 - l.linkRoom
	if need > int64(maxEvicting-l.evicting) {
		return false
	}
	var idle [2]*link // the least recently busy first
	for _, lk := range l.links {
		if lk.state != linkUp || lk.gc == nil || lk.fifo.Len() > 0 || lk.unsentBytes > 0 {
			continue
		}
		switch {
		case idle[0] == nil || lk.busySince < idle[0].busySince:
			idle[0], idle[1] = lk, idle[0]
		case idle[1] == nil || lk.busySince < idle[1].busySince:
			idle[1] = lk
		}
	}
	for i := range need {
		if idle[i] == nil {
			return false // not enough: close none
		}
	}
	for _, lk := range idle[:need] {
		delete(l.links, lk.backend) // a later request for it dials afresh
		lk.releaseFDs(lk.fds)
		lk.evicted = true
		l.evicting++
		lk.gc.Close()
		l.metrics.n[mLinksEvicted]++
	}
	return true
}

// maxEvicting bounds a loop's evicted links gnet has not closed yet.
const maxEvicting = 2
