// Package fleet shares backend registrations between the proxies of a
// fleet through etcd. A Member publishes this proxy's registrations (its
// leases) under keys bound to one etcd lease of the proxy's, kept alive
// while the proxy lives, and watches every proxy's keys, handing the
// others' to the caller as they change. It does not route, hold the
// registry or judge a backend's health: the caller (package server) does,
// and decides how fast a removal takes effect.
//
// The keys (Prefix defaults to /prism/backends/):
//
//	/prism/backends/<policy>/<backend id>/<proxy id>  →  {"addr","framing","policy","id"}
//
// A key lives while the setup connection it stands for is open on that
// proxy: it is put on the setup, deleted when the connection closes, and
// expires with the proxy's lease (TTL) when the proxy dies without
// deleting it.
//
//	m, err := fleet.Start(fleet.Config{Endpoints: []string{"10.0.0.1:2379"}, ProxyID: "p1",
//		Put: onPut, Delete: onDelete})
//	m.Publish(fleet.Entry{ID: 1, Policy: 7, Addr: "10.0.0.5:9101", Framing: "binary"})
//	defer m.Close()
//
// The watch starts from a linearizable Get of the prefix and watches from
// the revision after it. When the watch breaks, is compacted past, or
// stalls (neither an event nor a progress notification for StallAfter
// progress intervals: the Member asks for progress every Progress), it is
// dropped and the Member starts again from a Get, reconciling what it
// handed out with what the Get found (Delete for keys gone, Put for keys
// new or changed). While etcd cannot be reached the Member retries, with
// a back-off up to a few seconds, and reports it (Status); the caller's
// table stays as it was. When etcd answers again the Member grants a new
// lease if its own expired and puts its registrations again.
package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Entry is one registration as stored in etcd: the JSON value of its key.
type Entry struct {
	Addr    string `json:"addr"`    // the backend's data address, host:port
	Framing string `json:"framing"` // "binary" or "text"
	Policy  int64  `json:"policy"`
	ID      int64  `json:"id"`
}

// Remote is an entry published by another proxy of the fleet.
type Remote struct {
	Entry
	Key   string // its etcd key
	Proxy string // the proxy that holds its setup connection
	Rev   int64  // etcd's ModRevision of the key: a newer put has a larger one
}

// Config configures a Member. Zero values take the defaults given.
type Config struct {
	// Endpoints are etcd's client addresses (host:port). Required.
	Endpoints []string
	// ProxyID names this proxy in its keys; it must be unique in the fleet
	// and contain no '/'. Required.
	ProxyID string
	// Prefix is where the keys live. Zero: "/prism/backends/".
	Prefix string
	// TTL is the lease's: how long the keys of a proxy that died without
	// deleting them live on. Zero: 10s. etcd rounds it up to seconds.
	TTL time.Duration
	// Progress is how often the watch is asked for a progress
	// notification. Zero: 2s.
	Progress time.Duration
	// StallAfter is how many Progress intervals without an event or a
	// progress notification make the watch count as stalled. Zero: 3.
	StallAfter int
	// Timeout bounds a dial and each request to etcd. Zero: 2s.
	Timeout time.Duration
	// Put and Delete receive the changes of the other proxies' entries,
	// from the Member's own goroutine, one at a time. Required.
	Put    func(Remote)
	Delete func(key string)
	// Logger receives the Member's log. Nil: slog.Default().
	Logger *slog.Logger

	// beforeWatch, when set (tests), runs between the Get and the Watch.
	beforeWatch func(rev int64)
}

// Errors of a Member.
var (
	ErrConfig  = errors.New("fleet: bad configuration")
	errStalled = errors.New("fleet: watch stalled: no event nor progress notification")
	errClosed  = errors.New("fleet: watch channel closed")
	errRestart = errors.New("fleet: watch restarted")
)

// DefaultPrefix is the prefix of the keys when Config.Prefix is empty.
const DefaultPrefix = "/prism/backends/"

func (c Config) resolve() (Config, error) {
	if len(c.Endpoints) == 0 {
		return c, fmt.Errorf("%w: no etcd endpoint", ErrConfig)
	}
	if c.ProxyID == "" || strings.Contains(c.ProxyID, "/") {
		return c, fmt.Errorf("%w: proxy id %q: must be non-empty without '/'", ErrConfig, c.ProxyID)
	}
	if c.Put == nil || c.Delete == nil {
		return c, fmt.Errorf("%w: Put and Delete are required", ErrConfig)
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if !strings.HasSuffix(c.Prefix, "/") {
		c.Prefix += "/"
	}
	if c.TTL <= 0 {
		c.TTL = 10 * time.Second
	}
	if c.Progress <= 0 {
		c.Progress = 2 * time.Second
	}
	if c.StallAfter <= 0 {
		c.StallAfter = 3
	}
	if c.Timeout <= 0 {
		c.Timeout = 2 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// Member is this proxy's part in the fleet. Its methods are safe from any
// goroutine.
type Member struct {
	cfg    Config
	cli    *clientv3.Client
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	wake   chan struct{} // the publisher has work
	kick   chan struct{} // tests: restart the watch

	mu      sync.Mutex
	want    map[int64]Entry // this proxy's registrations, by backend id
	watchOK bool
	pubOK   bool
	why     string    // the last failure, while not up
	since   time.Time // when it went down
	lease   clientv3.LeaseID
	known   int // remote keys handed out
}

// Start connects to etcd (lazily: an unreachable etcd is retried, not an
// error) and starts publishing and watching.
func Start(cfg Config) (*Member, error) {
	cfg, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            cfg.Endpoints,
		DialTimeout:          cfg.Timeout,
		DialKeepAliveTime:    cfg.Timeout,
		DialKeepAliveTimeout: cfg.Timeout,
		Logger:               zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("fleet: etcd client: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Member{
		cfg: cfg, cli: cli, ctx: ctx, cancel: cancel,
		wake: make(chan struct{}, 1), kick: make(chan struct{}, 1),
		want: map[int64]Entry{}, why: "not connected yet", since: time.Now(),
	}
	m.wg.Add(2)
	go m.publishLoop()
	go m.watchLoop()
	return m, nil
}

// Key returns the etcd key of e published by proxy.
func (c *Config) key(e Entry, proxy string) string {
	return c.Prefix + strconv.FormatInt(e.Policy, 10) + "/" + strconv.FormatInt(e.ID, 10) + "/" + proxy
}

// Publish puts e in etcd as this proxy's registration of e.ID, in place of
// any earlier one of the id. It returns at once; the put is retried until
// etcd takes it.
func (m *Member) Publish(e Entry) {
	m.mu.Lock()
	m.want[e.ID] = e
	m.mu.Unlock()
	m.poke()
}

// Withdraw deletes this proxy's registration e, unless a newer Publish of
// its id replaced it.
func (m *Member) Withdraw(e Entry) {
	m.mu.Lock()
	if m.want[e.ID] == e {
		delete(m.want, e.ID)
	}
	m.mu.Unlock()
	m.poke()
}

func (m *Member) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// Status reports whether etcd is reachable (the watch runs and the
// registrations are in place) and, when it is not, why and since when.
func (m *Member) Status() (up bool, why string, since time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.watchOK && m.pubOK {
		return true, "", time.Time{}
	}
	return false, m.why, m.since
}

// Known returns how many entries of other proxies the Member handed out
// (Put and not Deleted since).
func (m *Member) Known() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.known
}

// setState records the publisher's (pub) or the watcher's health and
// logs a change of the whole.
func (m *Member) setState(pub, ok bool, err error) {
	m.mu.Lock()
	was := m.watchOK && m.pubOK
	if pub {
		m.pubOK = ok
	} else {
		m.watchOK = ok
	}
	now := m.watchOK && m.pubOK
	if !ok && err != nil {
		m.why = "etcd: " + err.Error()
		if was {
			m.since = time.Now()
		}
	}
	why := m.why
	m.mu.Unlock()
	switch {
	case was && !now:
		m.cfg.Logger.Warn("fleet registry unreachable: serving with the last known table and local registrations",
			"reason", why)
	case !was && now:
		m.cfg.Logger.Info("fleet registry up", "endpoints", strings.Join(m.cfg.Endpoints, ","))
	}
}

// Close deletes this proxy's keys (it revokes its lease) and stops.
func (m *Member) Close() {
	m.stop(true)
}

// Abandon stops without revoking the lease: the keys expire with it, as
// when the proxy's process is killed. For tests of that.
func (m *Member) Abandon() { m.stop(false) }

func (m *Member) stop(revoke bool) {
	m.cancel()
	m.wg.Wait()
	if revoke && m.lease != 0 {
		ctx, cancel := context.WithTimeout(context.Background(), m.cfg.Timeout)
		_, err := m.cli.Revoke(ctx, m.lease)
		cancel()
		if err != nil {
			m.cfg.Logger.Warn("fleet: the lease could not be revoked: this proxy's keys expire with it",
				"ttl", m.cfg.TTL, "err", err)
		}
	}
	m.cli.Close()
}

// backoff returns the wait after the n-th failure in a row.
func backoff(n int) time.Duration {
	d := 100 * time.Millisecond << min(n, 6)
	return min(d, 5*time.Second)
}

// sleep waits d or until the Member stops; it reports whether to go on.
func (m *Member) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-m.ctx.Done():
		return false
	}
}

// parseKey splits key into policy, backend id and proxy id.
func (c *Config) parseKey(key string) (policy, id int64, proxy string, ok bool) {
	rest, found := strings.CutPrefix(key, c.Prefix)
	parts := strings.Split(rest, "/")
	if !found || len(parts) != 3 || parts[2] == "" {
		return 0, 0, "", false
	}
	policy, err1 := strconv.ParseInt(parts[0], 10, 64)
	id, err2 := strconv.ParseInt(parts[1], 10, 64)
	return policy, id, parts[2], err1 == nil && err2 == nil
}

// decode reads a key and its value as a Remote; ok is false for a key or
// value that is not one (skipped, with a debug line).
func (c *Config) decode(key, value []byte, rev int64) (r Remote, ok bool) {
	policy, id, proxy, ok := c.parseKey(string(key))
	if ok {
		ok = json.Unmarshal(value, &r.Entry) == nil && r.Policy == policy && r.ID == id && r.Addr != ""
	}
	if !ok {
		c.Logger.Debug("fleet: skipping a key that is not a registration", "key", string(key))
		return r, false
	}
	r.Key, r.Proxy, r.Rev = string(key), proxy, rev
	return r, true
}
