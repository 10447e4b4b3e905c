package fleet

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/prism-proxy/prism/internal/etcdtest"
)

// table records what a Member hands out.
type table struct {
	mu sync.Mutex
	m  map[string]Remote
}

func (tb *table) put(r Remote) {
	tb.mu.Lock()
	tb.m[r.Key] = r
	tb.mu.Unlock()
}

func (tb *table) del(key string) {
	tb.mu.Lock()
	delete(tb.m, key)
	tb.mu.Unlock()
}

// ids lists the backend ids in the table, as "id@addr" sorted by key.
func (tb *table) has(id int64, addr string) bool {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	for _, r := range tb.m {
		if r.ID == id && r.Addr == addr {
			return true
		}
	}
	return false
}

func (tb *table) len() int {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return len(tb.m)
}

func startMember(t testing.TB, e *etcdtest.Etcd, id string, tweak func(*Config)) (*Member, *table) {
	t.Helper()
	tb := &table{m: map[string]Remote{}}
	cfg := Config{
		Endpoints: []string{e.Endpoint}, ProxyID: id, TTL: 2 * time.Second,
		Progress: 200 * time.Millisecond, Timeout: time.Second,
		Put: tb.put, Delete: tb.del,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	m, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	t.Cleanup(func() { once.Do(m.Close) })
	return m, tb
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s: not so", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func entry(id int64, port int) Entry {
	return Entry{ID: id, Policy: 7, Addr: fmt.Sprintf("127.0.0.1:%d", port), Framing: "binary"}
}

func TestPublishWatchWithdraw(t *testing.T) {
	e := etcdtest.Start(t)
	a, ta := startMember(t, e, "a", nil)
	_, tb := startMember(t, e, "b", nil)
	a.Publish(entry(1, 9101))
	waitFor(t, 5*time.Second, "b sees a's backend 1", func() bool { return tb.has(1, "127.0.0.1:9101") })
	if ta.len() != 0 {
		t.Errorf("a's own entries handed to a: got %d; want 0", ta.len())
	}
	a.Publish(entry(1, 9102)) // the same id again: replaces
	waitFor(t, 5*time.Second, "b sees the new address", func() bool { return tb.has(1, "127.0.0.1:9102") && tb.len() == 1 })
	a.Withdraw(entry(1, 9102))
	waitFor(t, 5*time.Second, "b drops backend 1", func() bool { return tb.len() == 0 })
}

// A watch that starts from a compacted revision fails with ErrCompacted;
// the Member must read again and see what changed meanwhile.
func TestCompactionRecovers(t *testing.T) {
	e := etcdtest.Start(t)
	a, _ := startMember(t, e, "a", nil)
	a.Publish(entry(1, 9101))
	cli := e.Client()
	var once sync.Once
	compacted := make(chan struct{})
	_, tb := startMember(t, e, "b", func(c *Config) {
		c.beforeWatch = func(rev int64) {
			once.Do(func() {
				// Between the read and the watch: a change, then a
				// compaction past the revision the watch starts from.
				r, err := cli.Put(context.Background(), DefaultPrefix+"7/2/c", `{"addr":"127.0.0.1:9202","framing":"binary","policy":7,"id":2}`)
				if err == nil {
					err = e.Compact(r.Header.Revision)
				}
				if err != nil {
					t.Error(err)
				}
				close(compacted)
			})
		}
	})
	<-compacted
	waitFor(t, 5*time.Second, "b sees backend 2 (put before the compaction) through a fresh read",
		func() bool { return tb.has(2, "127.0.0.1:9202") && tb.has(1, "127.0.0.1:9101") })
}

// A watch restarted (as after a stall) reconciles: a delete missed while
// it was down is applied from the fresh read.
func TestWatchRestartReconciles(t *testing.T) {
	e := etcdtest.Start(t)
	a, _ := startMember(t, e, "a", nil)
	b, tb := startMember(t, e, "b", nil)
	a.Publish(entry(1, 9101))
	a.Publish(entry(2, 9102))
	waitFor(t, 5*time.Second, "b sees 1 and 2", func() bool { return tb.len() == 2 })
	b.restartWatch()
	a.Withdraw(entry(1, 9101))
	waitFor(t, 5*time.Second, "b drops 1", func() bool { return tb.len() == 1 && tb.has(2, "127.0.0.1:9102") })
}

// etcd dies and comes back: the table stays, the status says so, and the
// registrations are put again.
func TestEtcdDownAndBack(t *testing.T) {
	e := etcdtest.Start(t)
	a, _ := startMember(t, e, "a", nil)
	b, tb := startMember(t, e, "b", nil)
	a.Publish(entry(1, 9101))
	waitFor(t, 5*time.Second, "b sees 1", func() bool { return tb.has(1, "127.0.0.1:9101") })
	e.Kill()
	waitFor(t, 5*time.Second, "b reports etcd down", func() bool { up, _, _ := b.Status(); return !up })
	if _, why, _ := b.Status(); why == "" {
		t.Error("down without a reason")
	}
	time.Sleep(3 * time.Second) // past the TTL: a's lease is lost on its side
	if !tb.has(1, "127.0.0.1:9101") {
		t.Fatal("the table lost backend 1 while etcd was down")
	}
	a.Publish(entry(2, 9102)) // while down: put once it is back
	e.Restart()
	waitFor(t, 10*time.Second, "b up again with 1 and 2", func() bool {
		up, _, _ := b.Status()
		return up && tb.has(1, "127.0.0.1:9101") && tb.has(2, "127.0.0.1:9102")
	})
	waitFor(t, 5*time.Second, "a up again", func() bool { up, _, _ := a.Status(); return up })
	// a's keys are under a live lease again: they outlive the old TTL.
	time.Sleep(3 * time.Second)
	if !tb.has(1, "127.0.0.1:9101") || !tb.has(2, "127.0.0.1:9102") {
		t.Errorf("a's registrations were not put again under a live lease")
	}
}

// A proxy that dies without revoking: its keys expire with its lease.
func TestLeaseExpiresOnDeath(t *testing.T) {
	e := etcdtest.Start(t)
	a, _ := startMember(t, e, "a", nil)
	_, tb := startMember(t, e, "b", nil)
	a.Publish(entry(1, 9101))
	waitFor(t, 5*time.Second, "b sees 1", func() bool { return tb.len() == 1 })
	a.Abandon()
	began := time.Now()
	waitFor(t, 6*time.Second, "b drops a's entries", func() bool { return tb.len() == 0 })
	if d := time.Since(began); d < time.Second {
		t.Errorf("dropped after %v: before the TTL could expire (revoked?)", d)
	}
}

// Keys of an earlier process of the same proxy id are replaced.
func TestStaleOwnKeysDropped(t *testing.T) {
	e := etcdtest.Start(t)
	cli := e.Client()
	l, err := cli.Grant(context.Background(), 60)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(context.Background(), DefaultPrefix+"7/5/a", `{"addr":"127.0.0.1:1","framing":"binary","policy":7,"id":5}`, clientv3.WithLease(l.ID)); err != nil {
		t.Fatal(err)
	}
	_, tb := startMember(t, e, "b", nil)
	waitFor(t, 5*time.Second, "b sees the stale key", func() bool { return tb.len() == 1 })
	startMember(t, e, "a", nil)
	waitFor(t, 5*time.Second, "a's restart drops its stale key", func() bool { return tb.len() == 0 })
}
