package server

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/prism-proxy/prism/backend"
	"github.com/prism-proxy/prism/codec"
	"github.com/prism-proxy/prism/internal/backendtest"
)

func TestParseBalancing(t *testing.T) {
	for _, tt := range []struct {
		name, def, per string
		want           map[int64]balancer // policy: balancer
		wantErr        bool
	}{
		{"default", "", "", map[int64]balancer{7: balanceRR}, false},
		{"p2c for all", "p2c", "", map[int64]balancer{7: balanceP2C, 8: balanceP2C}, false},
		{"per policy", "rr", "7=p2c, 9=rr", map[int64]balancer{7: balanceP2C, 8: balanceRR, 9: balanceRR}, false},
		{"per policy over p2c", "p2c", "8=rr", map[int64]balancer{7: balanceP2C, 8: balanceRR}, false},
		{"unknown", "lc", "", nil, true},
		{"unknown per policy", "rr", "7=lc", nil, true},
		{"no policy", "rr", "p2c", nil, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			bs, err := parseBalancing(tt.def, tt.per)
			if tt.wantErr {
				if !errors.Is(err, ErrConfig) {
					t.Fatalf("err %v; want ErrConfig", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			p2c := false
			for pol, want := range tt.want {
				if got := bs.of(pol); got != want {
					t.Errorf("policy %d: got %v; want %v", pol, got, want)
				}
				p2c = p2c || want == balanceP2C
			}
			if bs.p2c != p2c {
				t.Errorf("p2c %v; want %v", bs.p2c, p2c)
			}
		})
	}
	if _, err := (Config{Balance: "x"}).Check(); !errors.Is(err, ErrConfig) {
		t.Errorf("Check with Balance x: %v; want ErrConfig", err)
	}
}

// TestBalanceSlowBackend: two backends of a policy, one answering after
// 50 ms. Round robin sends it half of the requests, so the p99 is 50 ms;
// p2c sends it a few (while it has no reply yet it is tried as its
// in-flight count allows, then its latency keeps it out) and the p99
// stays that of the fast one.
func TestBalanceSlowBackend(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	const delay = 50 * time.Millisecond
	for _, tt := range []struct {
		balance            string
		minShare, maxShare float64
		slowP99            bool
	}{
		{"rr", 0.45, 0.55, true},
		{"p2c", 0, 0.05, false},
	} {
		t.Run(tt.balance, func(t *testing.T) {
			p := startProxy(t, Config{Balance: tt.balance})
			startBackend(t, p, 1, 7, backend.Echo, codec.Binary)
			startDelayed(t, p, 2, delay)

			lats, byID := closedLoad(t, p, 8, time.Second)
			if t.Failed() {
				return
			}
			slices.Sort(lats)
			p99 := lats[len(lats)*99/100]
			share := float64(byID[2]) / float64(len(lats))
			t.Logf("%d requests, backends %v, slow share %.3f, p50 %v p99 %v", len(lats), byID, share, lats[len(lats)/2], p99)
			if share < tt.minShare || share > tt.maxShare {
				t.Errorf("slow backend's share %.3f; want %.2f..%.2f", share, tt.minShare, tt.maxShare)
			}
			if got := p99 >= delay; got != tt.slowP99 {
				t.Errorf("p99 %v; want it at least %v: %v", p99, delay, tt.slowP99)
			}
		})
	}
}

// closedLoad runs n clients through p, one request at a time each, for d,
// and returns the latencies and the count of replies by backend id.
func closedLoad(t *testing.T, p *Proxy, n int, d time.Duration) ([]time.Duration, map[int64]int) {
	var mu sync.Mutex
	var lats []time.Duration
	byID := map[int64]int{}
	var wg sync.WaitGroup
	end := time.Now().Add(d)
	for range n {
		c := dial(t, p, codec.Binary)
		wg.Add(1)
		go func() {
			defer wg.Done()
			var m codec.Message
			var mine []time.Duration
			ids := map[int64]int{}
			for time.Now().Before(end) {
				start := time.Now()
				if err := c.Send(1, 7, "x"); err != nil {
					t.Error(err)
					return
				}
				if err := c.Flush(); err != nil {
					t.Error(err)
					return
				}
				if err := c.Recv(&m); err != nil || m.Type != codec.TypeReply {
					t.Errorf("answer %+v, %v; want a reply", m, err)
					return
				}
				mine = append(mine, time.Since(start))
				ids[m.SrcID]++ // a reply comes from its backend's id
			}
			mu.Lock()
			defer mu.Unlock()
			lats = append(lats, mine...)
			for id, n := range ids {
				byID[id] += n
			}
		}()
	}
	wg.Wait()
	return lats, byID
}

// TestP2CIgnoresProxyStall: a stall of the proxy's own loop (a GC pause, a
// paused VM, a loop busy for long) delays every reply that comes meanwhile.
// Taken as the backends' latency, it makes a fast backend that had
// requests in flight look slower than a slow one that had none, for tens
// of seconds (the estimate decays with LatencyDecay): p2c would send the
// slow one most of the traffic. The loop drops the samples it measured
// across its own stall.
func TestP2CIgnoresProxyStall(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	p := startProxy(t, Config{Balance: "p2c", Loops: 1})
	// The fast one takes 2 ms, so that requests are on its link when the
	// loop stalls.
	startDelayed(t, p, 1, 2*time.Millisecond)
	startDelayed(t, p, 2, 100*time.Millisecond)
	share := func(byID map[int64]int) float64 { return float64(byID[2]) / float64(byID[1]+byID[2]) }
	_, before := closedLoad(t, p, 8, 500*time.Millisecond) // both estimates made
	// Stall the loop for 500 ms while requests are in flight.
	go func() {
		time.Sleep(100 * time.Millisecond)
		l := p.p.list[0]
		_ = l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			time.Sleep(500 * time.Millisecond)
			return nil
		}))
	}()
	closedLoad(t, p, 8, 700*time.Millisecond)
	_, after := closedLoad(t, p, 8, time.Second)
	if t.Failed() {
		return
	}
	t.Logf("replies by backend: before the stall %v (slow share %.3f), after it %v (%.3f)", before, share(before), after, share(after))
	// Measured: 0-10 replies of the slow backend in the second after the
	// stall, against 40-70 when the stall's samples were taken (then up
	// to 70% of the clients' time is spent waiting on it).
	if after[2] > 20 {
		t.Errorf("slow backend answered %d requests in the second after the proxy's stall; want at most 20", after[2])
	}
}

// startDelayed starts an echo backend server of policy 7 that answers
// every request delay late, registered with p.
func startDelayed(t *testing.T, p *Proxy, id int64, delay time.Duration) {
	backendtest.Start(t, backend.Config{ID: id, Policy: 7, Proxies: []string{p.Addr()}, Delay: delay, Logger: quiet})
}
