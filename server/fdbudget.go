package server

// The descriptor budget. gnet's acceptor stops the whole engine when
// accept fails with EMFILE (acceptor_unix.go: any error but EAGAIN, EINTR,
// ECONNRESET and ECONNABORTED ends the main reactor), so the proxy must
// never let its descriptors reach the open-files limit. Inbound
// connections are the only descriptors a peer can make it open at will:
// Config.MaxConns caps them, below the limit less a reserve.

// fdFixed is the descriptors the proxy holds besides inbound connections
// and backend links: standard streams, the listener, a poller and its
// eventfd per loop plus the acceptor's, a doorbell (two ends) per loop,
// the Go runtime's poller, the admin listener and its few connections,
// and log files. Generous: a descriptor too many here costs one
// connection, one too few can stop the engine.
func fdFixed(loops int) int { return 32 + 4*loops }

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
// keeps fdFixed and acceptMargin free; the default keeps a quarter of what
// remains after fdFixed, which leaves room for backend data links (one
// per backend per loop: about 20 backends with 2 loops at a limit of 256,
// about 1800 at 20000) besides the accept margin.
func connBudget(limit, loops int) (def, most int) {
	if limit <= 0 || limit > maxLimit {
		limit = maxLimit
	}
	avail := limit - fdFixed(loops)
	most = avail - acceptMargin(limit)
	def = min(avail-avail/4, most)
	return def, most // most < 1: the limit is too low to serve at all
}
