package loadgen

import (
	"sync"
	"time"
)

// minPacerWait is the shortest sleep of the pacer: at high rates it wakes at
// most this often and releases every request that fell due meanwhile.
const minPacerWait = 50 * time.Microsecond

// sleeper is the pacer's clock. Go's timers wake up to a millisecond late on
// an idle machine (the poller waits in milliseconds), which in open loop
// would add that much to every corrected latency; on Linux a timerfd in the
// poller wakes within tens of microseconds.
type sleeper interface {
	// sleep waits for d and reports false once the sleeper is closed.
	sleep(d time.Duration) bool
	// close ends the current and all later sleeps. Safe from any goroutine.
	close()
}

// pace is the open loop's pacer goroutine. The run's schedule is one request
// every 1/Rate seconds, request g going to connection g%Conns; the pacer
// wakes each connection's writer when one of its requests falls due. A
// writer that cannot send at once (its connection is full or being redialed)
// keeps its due requests and sends them when it can, so a lost wake-up loses
// nothing.
func pace(r *run, clock sleeper, done chan<- struct{}) {
	defer close(done)
	defer clock.close()
	conns := int64(len(r.workers))
	var g int64
	for {
		now := r.now()
		due := r.due(g)
		if due > now {
			if !clock.sleep(max(time.Duration(due-now), minPacerWait)) {
				return
			}
			now = r.now()
		}
		if r.stopping.Load() || due >= r.stopAt || r.limitHit.Load() {
			return
		}
		for ; r.due(g) <= now; g++ {
			w := r.workers[g%conns]
			select {
			case w.tick <- struct{}{}:
			default:
			}
		}
	}
}

// due is when request g of the run's schedule should be sent, in run
// nanoseconds.
func (r *run) due(g int64) int64 { return int64(float64(g) * r.period) }

// timerSleeper is the portable sleeper.
type timerSleeper struct {
	t    *time.Timer
	done chan struct{}
	once sync.Once
}

func newTimerSleeper() *timerSleeper {
	s := &timerSleeper{t: time.NewTimer(time.Hour), done: make(chan struct{})}
	s.t.Stop()
	return s
}

func (s *timerSleeper) sleep(d time.Duration) bool {
	s.t.Reset(d)
	select {
	case <-s.t.C:
		return true
	case <-s.done:
		return false
	}
}

func (s *timerSleeper) close() { s.once.Do(func() { close(s.done) }) }
