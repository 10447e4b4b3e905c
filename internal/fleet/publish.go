package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// publisher puts this proxy's registrations in etcd under its lease. It
// belongs to the publishLoop goroutine.
type publisher struct {
	m        *Member
	lease    clientv3.LeaseID // 0: none, grant one
	ka       <-chan *clientv3.LeaseKeepAliveResponse
	kaCancel context.CancelFunc
	put      map[int64]Entry // what etcd holds under lease, by backend id
}

// publishLoop keeps etcd's copy of the registrations equal to Member.want.
func (m *Member) publishLoop() {
	defer m.wg.Done()
	p := &publisher{m: m, put: map[int64]Entry{}}
	defer func() {
		if p.kaCancel != nil {
			p.kaCancel()
		}
	}()
	fails := 0
	for {
		var retry <-chan time.Time
		if err := p.sync(); err != nil {
			if m.ctx.Err() != nil {
				return
			}
			m.setState(true, false, err)
			fails++
			retry = time.After(backoff(fails))
		} else {
			m.setState(true, true, nil)
			fails = 0
		}
		select {
		case <-m.wake:
		case <-retry:
		case _, ok := <-p.ka:
			if !ok { // expired, or no keep-alive answered for its TTL
				m.cfg.Logger.Warn("fleet: the lease was lost: granting another and putting the local registrations again",
					"lease", int64(p.lease))
				p.dropLease()
			}
		case <-m.ctx.Done():
			return
		}
	}
}

func (p *publisher) dropLease() {
	if p.kaCancel != nil {
		p.kaCancel()
	}
	p.lease, p.ka, p.kaCancel = 0, nil, nil
	p.put = map[int64]Entry{}
}

// sync grants a lease when there is none, then deletes and puts the keys
// that differ from what is wanted.
func (p *publisher) sync() error {
	m := p.m
	cfg := &m.cfg
	if p.lease == 0 {
		ctx, cancel := context.WithTimeout(m.ctx, cfg.Timeout)
		g, err := m.cli.Grant(ctx, int64((cfg.TTL+999_999_999)/1_000_000_000))
		cancel()
		if err != nil {
			return err
		}
		kctx, kcancel := context.WithCancel(m.ctx)
		ka, err := m.cli.KeepAlive(kctx, g.ID)
		if err != nil {
			kcancel()
			return err
		}
		p.lease, p.ka, p.kaCancel = g.ID, ka, kcancel
		m.mu.Lock()
		m.lease = g.ID
		m.mu.Unlock()
		if err := p.dropStale(); err != nil {
			return err
		}
	}
	m.mu.Lock()
	want := make(map[int64]Entry, len(m.want))
	for id, e := range m.want {
		want[id] = e
	}
	m.mu.Unlock()
	for id, e := range p.put {
		if w, ok := want[id]; ok && w.Policy == e.Policy {
			continue
		}
		if err := p.do(clientv3.OpDelete(cfg.key(e, cfg.ProxyID))); err != nil {
			return err
		}
		delete(p.put, id)
	}
	for id, e := range want {
		if p.put[id] == e {
			continue
		}
		v, _ := json.Marshal(e)
		if err := p.do(clientv3.OpPut(cfg.key(e, cfg.ProxyID), string(v), clientv3.WithLease(p.lease))); err != nil {
			return err
		}
		p.put[id] = e
	}
	return nil
}

// dropStale deletes the keys of this proxy's id that an earlier lease
// holds (an earlier process of the same id, or a lease given up on):
// the new lease puts what is still wanted.
func (p *publisher) dropStale() error {
	m := p.m
	ctx, cancel := context.WithTimeout(m.ctx, m.cfg.Timeout)
	defer cancel()
	resp, err := m.cli.Get(ctx, m.cfg.Prefix, clientv3.WithPrefix())
	if err != nil {
		return err
	}
	for _, kv := range resp.Kvs {
		_, _, proxy, ok := m.cfg.parseKey(string(kv.Key))
		if ok && proxy == m.cfg.ProxyID && clientv3.LeaseID(kv.Lease) != p.lease {
			if err := p.do(clientv3.OpDelete(string(kv.Key))); err != nil {
				return err
			}
		}
	}
	return nil
}

// do runs one operation with the Member's timeout; a lease etcd no longer
// knows is dropped, to be granted again.
func (p *publisher) do(op clientv3.Op) error {
	ctx, cancel := context.WithTimeout(p.m.ctx, p.m.cfg.Timeout)
	defer cancel()
	_, err := p.m.cli.Do(ctx, op)
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		p.dropLease()
	}
	return err
}
