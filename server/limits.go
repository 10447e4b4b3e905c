package server

// limits are the thresholds the loops test on the request path, derived
// once from the configuration so that the rules live in one place.
type limits struct {
	timeout int64 // Config.Timeout in loop-clock nanoseconds
	retries int   // Config.Retries

	// The retry budget, in hundredths of a retry: each request earns
	// retryEarn (Config.RetryBudget), a retry spends retryCost; a loop
	// banks at most retryBank, and gets retryFloor per second regardless.
	retryEarn, retryBank, retryFloor int64
	stall                            int64 // Config.StallTimeout; 0: off

	// A client is read while it has fewer than clientInflight requests
	// unanswered and fewer than clientOutPause bytes of answers unsent;
	// past connBuffer (unread requests or unsent answers) it is closed.
	clientInflight int
	clientOutPause int
	connBuffer     int

	// Memory, in bytes. A client is not read while its requests in flight
	// and replies held reach clientBytes, nor while its loop holds
	// loopBytes (Config.MaxMemory / Loops) of link chunks and held
	// replies: backpressure. A link past linkBytes of chunks counts as
	// pressured, past twice that as full.
	clientBytes int
	loopBytes   int64
	linkBytes   int

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
}

func newLimits(cfg *Config) limits {
	return limits{
		timeout:          int64(cfg.Timeout),
		retries:          cfg.Retries,
		retryEarn:        int64(cfg.RetryBudget),
		retryBank:        retryCost * maxBankedRetries,
		retryFloor:       retryCost * minRetriesPerSecond,
		stall:            max(int64(cfg.StallTimeout), 0),
		clientInflight:   cfg.MaxClientInflight,
		clientOutPause:   cfg.MaxConnBuffer / 2,
		connBuffer:       cfg.MaxConnBuffer,
		clientBytes:      cfg.MaxConnBuffer,
		loopBytes:        cfg.MaxMemory / int64(cfg.Loops),
		linkBytes:        int(min(cfg.MaxMemory/int64(cfg.Loops)/4, 64<<20)),
		linkPressured:    cfg.MaxBackendInflight,
		linkRefuse:       2 * cfg.MaxBackendInflight,
		linkRelieved:     cfg.MaxBackendInflight / 2,
		backlogPressured: cfg.MaxConnBuffer / 2,
		backlogRelieved:  cfg.MaxConnBuffer / 4,
	}
}

// The retry budget's fixed parts: a retry costs retryCost (percent units),
// a loop banks at most maxBankedRetries and earns minRetriesPerSecond
// whatever its traffic, so that a quiet loop can still retry.
const (
	retryCost           = 100
	maxBankedRetries    = 100
	minRetriesPerSecond = 10
)
