package fleet

import (
	"context"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// watchLoop runs the watch, starting it again from a Get whenever it
// ends, until the Member stops.
func (m *Member) watchLoop() {
	defer m.wg.Done()
	known := map[string]int64{} // the remote keys handed out, and their revisions
	fails := 0
	for m.ctx.Err() == nil {
		synced, err := m.watchOnce(known)
		if m.ctx.Err() != nil {
			return
		}
		if synced {
			fails = 0
		}
		fails++
		if err != errRestart {
			m.setState(false, false, err)
		}
		m.cfg.Logger.Info("fleet: watch ended: starting again from a fresh read", "reason", err)
		if !m.sleep(backoff(fails - 1)) {
			return
		}
	}
}

// watchOnce reads the prefix, reconciles known with it, and watches from
// the revision after the read until the watch fails; synced reports
// whether the read succeeded.
func (m *Member) watchOnce(known map[string]int64) (synced bool, err error) {
	cfg := &m.cfg
	ctx, cancel := context.WithTimeout(m.ctx, cfg.Timeout)
	resp, err := m.cli.Get(ctx, cfg.Prefix, clientv3.WithPrefix()) // linearizable: the default
	cancel()
	if err != nil {
		return false, err
	}
	m.reconcile(known, resp.Kvs)
	m.setState(false, true, nil)
	rev := resp.Header.Revision
	if cfg.beforeWatch != nil {
		cfg.beforeWatch(rev)
	}
	// WithRequireLeader: a member cut off from its cluster's leader ends
	// the watch instead of serving a stale one.
	wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(m.ctx))
	defer wcancel()
	wch := m.cli.Watch(wctx, cfg.Prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1), clientv3.WithProgressNotify())
	tick := time.NewTicker(cfg.Progress)
	defer tick.Stop()
	last := time.Now()
	for {
		select {
		case wr, ok := <-wch:
			if !ok {
				return true, errClosed
			}
			if wr.CompactRevision != 0 {
				return true, fmt.Errorf("%w: watching from %d, compacted at %d", rpctypes.ErrCompacted, rev+1, wr.CompactRevision)
			}
			if err := wr.Err(); err != nil {
				return true, err
			}
			last = time.Now()
			for _, ev := range wr.Events {
				m.apply(known, ev)
			}
		case <-tick.C:
			if time.Since(last) > time.Duration(cfg.StallAfter)*cfg.Progress {
				return true, errStalled
			}
			rctx, rcancel := context.WithTimeout(wctx, cfg.Timeout)
			_ = m.cli.RequestProgress(rctx) // the answer, or its absence, is what counts
			rcancel()
		case <-m.kick:
			return true, errRestart
		case <-m.ctx.Done():
			return true, m.ctx.Err()
		}
	}
}

// reconcile hands out the difference between known and a full read.
func (m *Member) reconcile(known map[string]int64, kvs []*mvccpb.KeyValue) {
	seen := make(map[string]bool, len(kvs))
	for _, kv := range kvs {
		r, ok := m.cfg.decode(kv.Key, kv.Value, kv.ModRevision)
		if !ok || r.Proxy == m.cfg.ProxyID {
			continue
		}
		seen[r.Key] = true
		if known[r.Key] != r.Rev {
			known[r.Key] = r.Rev
			m.cfg.Put(r)
		}
	}
	for key := range known {
		if !seen[key] {
			delete(known, key)
			m.cfg.Delete(key)
		}
	}
	m.setKnown(len(known))
}

// apply hands out one watch event.
func (m *Member) apply(known map[string]int64, ev *clientv3.Event) {
	key := string(ev.Kv.Key)
	if ev.Type == clientv3.EventTypeDelete {
		if _, ok := known[key]; ok {
			delete(known, key)
			m.cfg.Delete(key)
		}
		m.setKnown(len(known))
		return
	}
	r, ok := m.cfg.decode(ev.Kv.Key, ev.Kv.Value, ev.Kv.ModRevision)
	if !ok || r.Proxy == m.cfg.ProxyID {
		if _, was := known[key]; was { // overwritten with something else
			delete(known, key)
			m.cfg.Delete(key)
			m.setKnown(len(known))
		}
		return
	}
	known[key] = r.Rev
	m.cfg.Put(r)
	m.setKnown(len(known))
}

func (m *Member) setKnown(n int) {
	m.mu.Lock()
	m.known = n
	m.mu.Unlock()
}

// restartWatch ends the running watch: the next starts from a Get. For
// tests.
func (m *Member) restartWatch() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}
