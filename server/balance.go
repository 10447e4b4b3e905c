package server

import (
	"fmt"
	"strconv"
	"strings"
)

// balancer is how dispatch chooses among a policy's backends.
type balancer uint8

const (
	balanceRR  balancer = iota // round robin (pool.Policy.NextExcept): exact shares
	balanceP2C                 // power of two choices (pool.Policy.NextP2C)
)

func (b balancer) String() string {
	if b == balanceP2C {
		return "p2c"
	}
	return "rr"
}

func parseBalancer(s string) (balancer, error) {
	switch strings.TrimSpace(s) {
	case "", "rr":
		return balanceRR, nil
	case "p2c":
		return balanceP2C, nil
	}
	return 0, fmt.Errorf("balancer %q is not rr or p2c", s)
}

// balancing is Config.Balance and Config.BalancePolicy, parsed: the
// balancer of each policy. Immutable once built (loops share the map).
type balancing struct {
	def balancer
	per map[int64]balancer // nil: every policy takes def
	p2c bool               // some policy uses p2c: replies feed the latency estimates
}

// of returns policy's balancer.
func (bs *balancing) of(policy int64) balancer {
	if bs.per != nil {
		if b, ok := bs.per[policy]; ok {
			return b
		}
	}
	return bs.def
}

// parseBalancing parses Balance ("rr", "p2c") and BalancePolicy
// ("7=p2c,8=rr").
func parseBalancing(def, per string) (balancing, error) {
	var bs balancing
	var err error
	if bs.def, err = parseBalancer(def); err != nil {
		return bs, badValue("Balance", "balance", strconv.Quote(def), err.Error())
	}
	bs.p2c = bs.def == balanceP2C
	for _, f := range strings.Split(per, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		pol, name, ok := strings.Cut(f, "=")
		id, perr := strconv.ParseInt(strings.TrimSpace(pol), 10, 64)
		if !ok || perr != nil {
			return bs, badValue("BalancePolicy", "balance-policy", strconv.Quote(per), strconv.Quote(f)+" is not policy=rr or policy=p2c")
		}
		b, err := parseBalancer(name)
		if err != nil {
			return bs, badValue("BalancePolicy", "balance-policy", strconv.Quote(per), err.Error())
		}
		if bs.per == nil {
			bs.per = map[int64]balancer{}
		}
		bs.per[id] = b
		bs.p2c = bs.p2c || b == balanceP2C
	}
	return bs, nil
}

// sampleOK reports whether c's reply time, read now, is its backend's
// latency, for p2c's estimate. It is not when the loop itself stalled
// meanwhile (the process paused for a GC or a VM, or the loop was busy for
// long): the reply waited in the socket for the loop. Taken as the
// backend's, such a sample makes every backend that had requests in
// flight look as slow as the stall, and a slow backend that had none the
// fastest, for tens of seconds (pool.LatencyDecay): p2c would send it most
// of the traffic. A stall shows as a late tick: the tick that comes late
// marks the calls sent before it (samplesFrom), and until it comes the
// loop knows it is overdue.
func (l *loop) sampleOK(c *call) bool {
	return c.sent >= l.samplesFrom && l.stamp-l.lastTick <= l.lim.tickLate
}
