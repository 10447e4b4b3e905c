package server

import "time"

// limits are the thresholds the loops test on the request path, derived
// once from the configuration so that the rules live in one place.
type limits struct {
	timeout int64 // Config.Timeout in loop-clock nanoseconds
	retries int   // Config.Retries
	stall   int64 // Config.StallTimeout; 0: off

	// The retry budget, in hundredths of a retry: each request earns
	// retryEarn (Config.RetryBudget), a retry spends retryCost, and what
	// is banked fades over retryWindow, so the budget is a share of the
	// requests of about the last retryWindow (as Finagle's RetryBudget);
	// a loop starts with retryStart and earns retryFloor per second
	// regardless of its traffic.
	retryEarn, retryStart, retryFloor int64
	// Inbound connections are scanned every connScan for idleness (idle,
	// clients only) and partial frames held too long (frame); 0: off.
	idle     int64
	frame    int64
	connScan int64

	// A client is read while it has fewer than clientInflight requests
	// unanswered and fewer than clientBytes of requests in flight, replies
	// held and answers unsent together (its replies, about the size of its
	// requests, then fit in its socket's backlog); past outClose of
	// unsent answers it is closed (it does not read), and what it sends
	// past connBuffer while paused is answered "overloaded" (inConn.shed).
	// A loop stops reading its clients while it holds loopBytes
	// (Config.MaxMemory / Loops) of link chunks and held replies. A link
	// past linkBytes of chunks counts as pressured, past twice that as
	// full.
	clientInflight int
	clientBytes    int
	connBuffer     int
	outClose       int
	loopBytes      int64
	linkBytes      int

	// A link holding linkPressured requests, or backlogPressured bytes the
	// socket has not taken, is passed over for its policy's others; with
	// all of them pressured a request goes to it anyway and its client
	// waits, unless the link holds linkRefuse requests (then "overloaded").
	// Waiting clients go once it is below linkRelieved requests and
	// backlogRelieved bytes: well below the limits, so that they do not
	// all find it pressured again after one request each.
	linkPressured    int
	linkRefuse       int
	linkRelieved     int
	backlogPressured int
	backlogRelieved  int

	// Config's, copied here so that a loop reads them from its own
	// snapshot (Reload changes them).
	maxFrame    int
	dialTimeout time.Duration
	downFor     int64
	bal         balancing // Config.Balance and BalancePolicy

	// A loop whose tick is tickLate overdue was not running as it should
	// (the process paused, or the loop busy): the replies it reads then
	// waited for it, not for their backend (loop.sampleOK).
	tickLate int64
}

// tickSlack is how late a loop's tick may run before the loop counts as
// stalled: well above scheduling noise on a busy machine, well below the
// stalls that matter (a paused VM, a long GC pause).
const tickSlack = 20 * time.Millisecond

// connScanEvery is how often the loops look for idle and slow connections:
// every second, or a quarter of the shorter timeout when that is less (as
// in tests), so that a connection lives at most a second past its timeout.
func connScanEvery(idle, frame time.Duration) time.Duration {
	every := time.Second
	for _, d := range []time.Duration{idle, frame} {
		if d > 0 {
			every = min(every, max(d/4, time.Millisecond))
		}
	}
	return every
}

func newLimits(cfg *Config) limits {
	bal, _ := parseBalancing(cfg.Balance, cfg.BalancePolicy) // resolve checked it
	return limits{
		timeout:          int64(cfg.Timeout),
		retries:          cfg.Retries,
		retryEarn:        int64(cfg.RetryBudget),
		retryStart:       retryCost * minRetriesPerSecond * int64(retryWindow/time.Second),
		retryFloor:       retryCost * minRetriesPerSecond,
		stall:            max(int64(cfg.StallTimeout), 0),
		idle:             max(int64(cfg.IdleTimeout), 0),
		frame:            max(int64(cfg.FrameTimeout), 0),
		connScan:         int64(connScanEvery(cfg.IdleTimeout, cfg.FrameTimeout)),
		clientInflight:   cfg.MaxClientInflight,
		connBuffer:       cfg.MaxConnBuffer,
		clientBytes:      cfg.MaxConnBuffer,
		outClose:         2 * cfg.MaxConnBuffer,
		loopBytes:        cfg.MaxMemory / int64(cfg.Loops),
		linkBytes:        int(min(cfg.MaxMemory/int64(cfg.Loops)/4, 64<<20)),
		linkPressured:    cfg.MaxBackendInflight,
		linkRefuse:       2 * cfg.MaxBackendInflight,
		linkRelieved:     cfg.MaxBackendInflight / 2,
		backlogPressured: cfg.MaxConnBuffer / 2,
		backlogRelieved:  cfg.MaxConnBuffer / 4,
		maxFrame:         cfg.MaxFrame,
		dialTimeout:      cfg.DialTimeout,
		downFor:          int64(cfg.DownFor),
		bal:              bal,
		tickLate:         int64(tickInterval(cfg.Timeout) + tickSlack),
	}
}

// The retry budget's fixed parts: a retry costs retryCost (percent units);
// deposits fade over retryWindow; a loop earns minRetriesPerSecond
// whatever its traffic, so that a quiet loop can still retry.
const (
	retryCost           = 100
	retryWindow         = 10 * time.Second
	minRetriesPerSecond = 10
)
