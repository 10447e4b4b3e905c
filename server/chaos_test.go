package server

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/prism-proxy/prism/backend"
	"github.com/prism-proxy/prism/client"
	"github.com/prism-proxy/prism/codec"
)

var (
	chaosDuration = flag.Duration("chaos.duration", 0, "how long TestChaos injects faults under load (0: 5s, 2s with -short)")
	chaosSeed     = flag.Uint64("chaos.seed", 0, "seed of TestChaos's and TestSoak's faults (0: from the clock)")
	soakDuration  = flag.Duration("soak.duration", 0, "run TestSoak this long (0: skip it)")
	soakEvery     = flag.Duration("soak.every", 10*time.Second, "TestSoak: a line of RSS, goroutines and fds this often")
)

// The chaos rig: a real proxy, chaosPolicies policies of chaosPerPolicy
// backends each (ids policy*100+n; odd policies echo, even ones upper-case),
// half of them gnet backend.Servers and half chaosBackends in plain net
// code, and clients pipelining requests whose answers are each checked.
const (
	chaosPolicies  = 3
	chaosPerPolicy = 3
	chaosNoPolicy  = 99 // no backend serves it: no_backend
	chaosClients   = 6
	chaosDepth     = 8 // requests in flight per client
)

// TestChaos kills, stalls, restarts and re-registers backends, and makes
// some send bad replies, while clients pipeline requests. Every request
// must get exactly one answer, its own: the right reply from a backend of
// its policy, or a protocol error. Afterwards nothing leaks: goroutines and
// file descriptors are back where they were.
func TestChaos(t *testing.T) {
	d := *chaosDuration
	if d == 0 {
		d = 5 * time.Second
		if testing.Short() {
			d = 2 * time.Second
		}
	}
	ignore := goleak.IgnoreCurrent()
	fdsBefore := countFDs(t)

	r := newRig(t)
	r.run(d, 40*time.Millisecond, 150*time.Millisecond, nil)
	r.report()
	r.shutdown()
	t.Logf("proxy at %s (port %04X)", r.p.Addr(), r.p.p.addrPort())

	goleak.VerifyNone(t, ignore, goleak.IgnoreTopFunction("github.com/panjf2000/ants/v2.(*goWorker).run.func1"))
	waitFDs(t, fdsBefore, 8)
}

// TestSoak runs the rig under steady load with a fault every second or so
// for -soak.duration, logging RSS, goroutines and fds every -soak.every.
// Bound: the peak RSS of the run's last quarter may not exceed 1.5 times
// the peak of its first quarter plus 32 MiB (memory that keeps growing
// under a steady load is a leak, not a working set); and once everything
// is shut down, goroutines and fds are back to where they were.
func TestSoak(t *testing.T) {
	if *soakDuration == 0 {
		t.Skip("run with -soak.duration=5m (and -timeout above it)")
	}
	ignore := goleak.IgnoreCurrent()
	fdsBefore := countFDs(t)
	r := newRig(t)
	type sample struct {
		at          time.Duration
		rss         int64
		gor, fds    int
		sent, answd int64
	}
	var samples []sample
	start := time.Now()
	every := max(*soakEvery, 100*time.Millisecond)
	r.run(*soakDuration, 500*time.Millisecond, 2*time.Second, func(stop <-chan struct{}) {
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			s := sample{time.Since(start).Round(time.Second), rssBytes(t), runtime.NumGoroutine(), countFDs(t),
				r.sent.Load(), r.answered.Load()}
			samples = append(samples, s)
			t.Logf("soak %6v  rss %4d MiB  goroutines %4d  fds %4d  sent %9d  answered %9d",
				s.at, s.rss>>20, s.gor, s.fds, s.sent, s.answd)
		}
	})
	r.report()
	r.shutdown()
	goleak.VerifyNone(t, ignore, goleak.IgnoreTopFunction("github.com/panjf2000/ants/v2.(*goWorker).run.func1"))
	waitFDs(t, fdsBefore, 8)
	if len(samples) < 4 {
		t.Logf("%d samples: too few to judge RSS growth (make -soak.every smaller)", len(samples))
		return
	}
	q := len(samples) / 4
	peak := func(ss []sample) int64 {
		var m int64
		for _, s := range ss {
			m = max(m, s.rss)
		}
		return m
	}
	first, last := peak(samples[:q]), peak(samples[len(samples)-q:])
	bound := first*3/2 + 32<<20
	t.Logf("RSS peak: first quarter %d MiB, last quarter %d MiB (bound %d MiB)", first>>20, last>>20, bound>>20)
	if last > bound {
		t.Errorf("RSS grew from %d MiB to %d MiB under a steady load; bound %d MiB", first>>20, last>>20, bound>>20)
	}
}

// rig is a proxy, its backends, its clients and the chaos that hits them.
type rig struct {
	t     *testing.T
	p     *Proxy
	seed  uint64
	slots []*slot

	sent, answered atomic.Int64
	mu             sync.Mutex
	kinds          map[string]int64 // answers by kind: "reply" or the error code
	faults         map[string]int64 // faults injected by kind
	failures       int
}

// slot is one backend id: a gnet server or a chaosBackend, replaced by a
// new one (same id, new port) when it restarts.
type slot struct {
	id, policy int64
	real       *backend.Server
	fake       *chaosBackend
	restore    func() // undoes the current fault; nil when healthy
	until      time.Time
}

func upperPolicy(policy int64) bool { return policy%2 == 0 }

func newRig(t *testing.T) *rig {
	seed := *chaosSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (rerun with -chaos.seed=%d)", seed, seed)
	p := startProxy(t, Config{Loops: 2, Timeout: time.Second, StallTimeout: 150 * time.Millisecond,
		EjectTime: 100 * time.Millisecond, EjectMaxTime: time.Second, DialTimeout: 500 * time.Millisecond,
		DownFor: 200 * time.Millisecond})
	r := &rig{t: t, p: p, seed: seed, kinds: map[string]int64{}, faults: map[string]int64{}}
	for pol := int64(1); pol <= chaosPolicies; pol++ {
		for n := int64(1); n <= chaosPerPolicy; n++ {
			s := &slot{id: pol*100 + n, policy: pol}
			var err error
			if n%2 == 1 {
				s.fake, err = startChaosBackend(p.Addr(), s.id, pol)
			} else {
				s.real, err = startRealBackend(p.Addr(), s.id, pol)
			}
			if err != nil {
				t.Fatal(err)
			}
			r.slots = append(r.slots, s)
		}
	}
	waitFor(t, "every backend registered", 5*time.Second, func() bool {
		return len(p.Backends()) == chaosPolicies*chaosPerPolicy
	})
	return r
}

func (p *proxy) addrPort() int {
	_, port, _ := net.SplitHostPort(p.addr)
	n, _ := strconv.Atoi(port)
	return n
}

func startRealBackend(proxy string, id, policy int64) (*backend.Server, error) {
	mode := backend.Echo
	if upperPolicy(policy) {
		mode = backend.Upper
	}
	b, err := backend.New(backend.Config{ID: id, Policy: policy, Proxies: []string{proxy}, Mode: mode,
		Logger: quiet, Retry: 100 * time.Millisecond})
	if err != nil {
		return nil, err
	}
	if err := b.Start(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.WaitRegistered(ctx); err != nil {
		b.Close()
		return nil, fmt.Errorf("backend %d did not register: %w", id, err)
	}
	return b, nil
}

// fail records a failure without stopping the test (it runs on the
// clients' goroutines); the first ones are printed.
func (r *rig) fail(format string, args ...any) {
	r.mu.Lock()
	r.failures++
	n := r.failures
	r.mu.Unlock()
	if n <= 10 {
		r.t.Errorf("seed %d: "+format, append([]any{r.seed}, args...)...)
	}
}

func (r *rig) count(m map[string]int64, kind string) {
	r.mu.Lock()
	m[kind]++
	r.mu.Unlock()
}

// run loads the proxy for d with a fault every faultEvery on average, each
// lasting up to faultFor, and watch running beside it (for the soak's
// samples) until the load stops. When it returns every fault is undone and
// every request sent was answered, or the test failed.
func (r *rig) run(d, faultEvery, faultFor time.Duration, watch func(stop <-chan struct{})) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range chaosClients {
		wg.Add(1)
		go r.runClient(&wg, stop, i)
	}
	chaosDone := make(chan struct{})
	go r.chaos(stop, chaosDone, faultEvery, faultFor)
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		if watch != nil {
			watch(stop)
		}
	}()
	time.Sleep(d) // the run's length, not a condition
	close(stop)
	<-chaosDone
	<-watchDone
	wg.Wait()
	if s, a := r.sent.Load(), r.answered.Load(); s != a {
		r.t.Errorf("seed %d: %d requests sent, %d answered", r.seed, s, a)
	}
}

// runClient pipelines requests, chaosDepth in flight, each with its own
// srcid and payload, and checks every answer against the request at the
// head of its queue (a connection's answers come in request order).
func (r *rig) runClient(wg *sync.WaitGroup, stop <-chan struct{}, idx int) {
	defer wg.Done()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	c, err := client.Dial(ctx, r.p.Addr())
	cancel()
	if err != nil {
		r.fail("client %d: %v", idx, err)
		return
	}
	defer c.Close()
	rnd := rand.New(rand.NewPCG(r.seed, uint64(idx)))
	type pending struct {
		srcid, policy int64
		payload       string
	}
	q := make(chan pending, chaosDepth)
	recvDone := make(chan struct{})
	go func() { // the receiver
		defer close(recvDone)
		var m codec.Message
		for want := range q {
			c.NetConn().SetReadDeadline(time.Now().Add(r.p.Config().Timeout + 5*time.Second))
			if err := c.Recv(&m); err != nil {
				r.fail("client %d: no answer to srcid %d (policy %d): %v", idx, want.srcid, want.policy, err)
				c.Close()
				for range q { // the sender stops at its next write
				}
				return
			}
			r.answered.Add(1)
			r.check(idx, want.srcid, want.policy, want.payload, &m)
		}
	}()
	for seq := int64(0); ; seq++ {
		select {
		case <-stop:
		default:
			pol := int64(rnd.IntN(chaosPolicies) + 1)
			if rnd.IntN(100) == 0 {
				pol = chaosNoPolicy
			}
			w := pending{int64(idx+1)<<32 | seq, pol, fmt.Sprintf("c%d-r%d-%x", idx, seq, rnd.Uint32())}
			if len(q) == cap(q) {
				c.Flush() // the receiver waits for these
			}
			q <- w
			r.sent.Add(1)
			if c.Send(w.srcid, w.policy, w.payload) != nil || (rnd.IntN(4) == 0 && c.Flush() != nil) {
				break // the receiver failed and closed the connection
			}
			continue
		}
		break
	}
	c.Flush()
	close(q)
	<-recvDone
}

// check judges one answer: its own reply, or a protocol error for it.
func (r *rig) check(idx int, srcid, policy int64, payload string, m *codec.Message) {
	switch m.Type {
	case codec.TypeReply:
		want := payload
		if upperPolicy(policy) {
			want = strings.ToUpper(payload)
		}
		switch {
		case m.DestID != srcid:
			r.fail("client %d: srcid %d answered by a reply for destid %d (another request's)", idx, srcid, m.DestID)
		case m.Payload != want:
			r.fail("client %d: srcid %d: reply payload %q; want %q", idx, srcid, m.Payload, want)
		case m.SrcID/100 != policy || m.SrcID%100 < 1 || m.SrcID%100 > chaosPerPolicy:
			r.fail("client %d: srcid %d of policy %d answered by server %d of another policy", idx, srcid, policy, m.SrcID)
		default:
			r.count(r.kinds, "reply")
			return
		}
	case codec.TypeError:
		code := string([]byte(m.Code))
		switch {
		case m.DestID != srcid:
			r.fail("client %d: srcid %d answered by an error for destid %d", idx, srcid, m.DestID)
		case policy == chaosNoPolicy && code != codec.CodeNoBackend:
			r.fail("client %d: srcid %d of an unserved policy: %s; want no_backend", idx, srcid, code)
		case code == codec.CodeBackendUnavailable, code == codec.CodeTimeout, code == codec.CodeOverloaded,
			code == codec.CodeNoBackend:
			r.count(r.kinds, code)
			return
		default:
			r.fail("client %d: srcid %d: error %s (%s)", idx, srcid, code, m.Error)
		}
	default:
		r.fail("client %d: srcid %d answered by a message of type %d", idx, srcid, m.Type)
	}
	r.count(r.kinds, "wrong")
}

// chaos injects a fault every faultEvery on average, at most one at a time
// per policy so that each keeps a backend, until stop; then it undoes the
// faults still on.
func (r *rig) chaos(stop <-chan struct{}, done chan<- struct{}, faultEvery, faultFor time.Duration) {
	defer close(done)
	rnd := rand.New(rand.NewPCG(r.seed, 1<<40))
	for {
		select {
		case <-stop:
			for _, s := range r.slots {
				if s.restore != nil {
					s.restore()
					s.restore = nil
				}
			}
			return
		case <-time.After(time.Duration(rnd.Int64N(int64(2 * faultEvery)))):
		}
		now := time.Now()
		faulted := map[int64]bool{}
		for _, s := range r.slots {
			if s.restore != nil && now.After(s.until) {
				s.restore()
				s.restore = nil
			}
			if s.restore != nil {
				faulted[s.policy] = true
			}
		}
		s := r.slots[rnd.IntN(len(r.slots))]
		if faulted[s.policy] {
			continue
		}
		s.until = now.Add(time.Duration(rnd.Int64N(int64(faultFor))) + faultFor/4)
		r.inject(s, rnd)
	}
}

// inject puts one fault on s, setting s.restore when it lasts.
func (r *rig) inject(s *slot, rnd *rand.Rand) {
	addr := r.p.Addr()
	if s.real != nil {
		if rnd.IntN(3) == 0 { // re-registered: a new server with the same id on a new port, then the old one stops
			r.count(r.faults, "reregister")
			nb, err := startRealBackend(addr, s.id, s.policy)
			if err != nil {
				r.fail("restart of backend %d: %v", s.id, err)
				return
			}
			s.real.Close()
			s.real = nb
			return
		}
		r.count(r.faults, "kill")
		s.real.Close()
		s.restore = func() {
			r.count(r.faults, "restart")
			nb, err := startRealBackend(addr, s.id, s.policy)
			if err != nil {
				r.fail("restart of backend %d: %v", s.id, err)
				return
			}
			s.real = nb
		}
		return
	}
	fb := s.fake
	restart := func() {
		r.count(r.faults, "restart")
		nb, err := startChaosBackend(addr, s.id, s.policy)
		if err != nil {
			r.fail("restart of backend %d: %v", s.id, err)
			return
		}
		s.fake = nb
	}
	switch rnd.IntN(5) {
	case 0:
		r.count(r.faults, "kill")
		fb.kill()
		s.restore = restart
	case 1:
		r.count(r.faults, "reregister")
		nb, err := startChaosBackend(addr, s.id, s.policy)
		if err != nil {
			r.fail("re-registration of backend %d: %v", s.id, err)
			return
		}
		fb.kill()
		s.fake = nb
	case 2:
		r.count(r.faults, "stall")
		fb.stall(true)
		s.restore = func() { fb.stall(false) }
	default:
		bad := badReply(rnd.IntN(3) + 1)
		r.count(r.faults, "bad reply: "+bad.String())
		fb.bad.Store(int32(bad))
		s.restore = func() { fb.bad.Store(0) }
	}
}

func (r *rig) report() {
	t := r.t
	r.mu.Lock()
	defer r.mu.Unlock()
	t.Logf("requests sent %d, answered %d", r.sent.Load(), r.answered.Load())
	for _, k := range slices.Sorted(mapKeys(r.kinds)) {
		t.Logf("  answers %-20s %8d", k, r.kinds[k])
	}
	for _, k := range slices.Sorted(mapKeys(r.faults)) {
		t.Logf("  faults  %-20s %8d", k, r.faults[k])
	}
	s := r.p.Metrics().Snapshot()
	t.Logf("  proxy: retries %d, bad replies %d, ejections %d (refused %d), stalls %d, readmitted %d, panics %d, late %d, dials %d (failed %d)",
		s.Retries, s.BadReplies, s.Ejections, s.Refused, s.Stalls, s.Readmitted, s.Panics, s.Late, s.Dials, s.DialErrors)
	if r.kinds["reply"] < r.sent.Load()/2 {
		t.Errorf("only %d of %d requests got a reply: the rig measures errors, not the proxy", r.kinds["reply"], r.sent.Load())
	}
}

func mapKeys(m map[string]int64) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// shutdown stops the proxy and every backend, so that leaks can be checked.
func (r *rig) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.p.Shutdown(ctx); err != nil {
		r.t.Errorf("proxy shutdown: %v", err)
	}
	for _, s := range r.slots {
		if s.real != nil {
			s.real.Close()
		}
		if s.fake != nil {
			s.fake.kill()
		}
	}
}

// badReply is how a chaosBackend breaks the protocol.
type badReply int32

const (
	goodReply  badReply = iota
	wrongDest           // a reply for another request
	notJSON             // bytes that are no JSON
	forgedType          // an error message (type 3) instead of a reply
)

func (b badReply) String() string {
	return [...]string{"none", "wrong destid", "not JSON", "type 3"}[b]
}

// chaosBackend is a backend in plain net code that a fault can kill (its
// listener, lease and data connections closed at once), stall (it stops
// reading and answering, as under SIGSTOP) or make answer badly.
type chaosBackend struct {
	id, policy int64
	ln         net.Listener
	lease      net.Conn
	bad        atomic.Int32 // a badReply

	mu    sync.Mutex
	conns map[net.Conn]bool
	gate  chan struct{} // closed unless stalled
	dead  bool
	wg    sync.WaitGroup
}

func startChaosBackend(proxy string, id, policy int64) (*chaosBackend, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	fb := &chaosBackend{id: id, policy: policy, ln: ln, conns: map[net.Conn]bool{}, gate: make(chan struct{})}
	close(fb.gate)
	fb.wg.Add(1)
	go fb.accept()
	lease, err := registerLease(proxy, id, policy, ln.Addr().(*net.TCPAddr).Port)
	if err != nil {
		fb.kill()
		return nil, err
	}
	fb.lease = lease
	return fb, nil
}

// registerLease sends a setup and returns the lease once acknowledged.
func registerLease(proxy string, id, policy int64, port int) (net.Conn, error) {
	nc, err := net.DialTimeout("tcp", proxy, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c := client.New(nc, client.Options{BufferSize: 4096})
	c.SendRaw(codec.AppendSetup(nil, id, policy, port, ""))
	var m codec.Message
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	err = c.Flush()
	if err == nil {
		err = c.Recv(&m)
	}
	if err != nil || m.Type != codec.TypeAck {
		nc.Close()
		return nil, fmt.Errorf("setup of backend %d: %+v %v", id, m, err)
	}
	nc.SetDeadline(time.Time{})
	return nc, nil
}

func (fb *chaosBackend) accept() {
	defer fb.wg.Done()
	for {
		nc, err := fb.ln.Accept()
		if err != nil {
			return
		}
		fb.mu.Lock()
		if fb.dead {
			fb.mu.Unlock()
			nc.Close()
			return
		}
		fb.conns[nc] = true
		fb.wg.Add(1)
		fb.mu.Unlock()
		go fb.serve(nc)
	}
}

// serve answers one data connection's requests in order, flushing when no
// more requests are buffered.
func (fb *chaosBackend) serve(nc net.Conn) {
	defer fb.wg.Done()
	defer func() {
		fb.mu.Lock()
		delete(fb.conns, nc)
		fb.mu.Unlock()
		nc.Close()
	}()
	c := client.New(nc, client.Options{})
	var m codec.Message
	var out []byte
	for {
		fb.mu.Lock()
		gate := fb.gate
		fb.mu.Unlock()
		<-gate // stalled: neither read nor answer
		if err := c.Recv(&m); err != nil {
			return
		}
		payload := string(m.Payload)
		if upperPolicy(fb.policy) {
			payload = strings.ToUpper(payload)
		}
		switch badReply(fb.bad.Load()) {
		case goodReply:
			out = codec.AppendReply(out[:0], fb.id, m.SrcID, payload)
		case wrongDest:
			out = codec.AppendReply(out[:0], fb.id, m.SrcID+1, payload)
		case notJSON:
			out = append(out[:0], "not json"...)
		case forgedType:
			out = codec.AppendError(out[:0], m.SrcID, codec.CodeOverloaded, "forged")
		}
		if c.SendRaw(out) != nil {
			return
		}
		if c.Buffered() == 0 && c.Flush() != nil {
			return
		}
	}
}

// stall stops (true) or resumes (false) the reading and answering of every
// data connection.
func (fb *chaosBackend) stall(on bool) {
	fb.mu.Lock()
	defer fb.mu.Unlock()
	select {
	case <-fb.gate:
		if on {
			fb.gate = make(chan struct{})
		}
	default:
		if !on {
			close(fb.gate)
		}
	}
}

// kill closes the listener, the lease and every data connection, and
// returns once the backend's goroutines are done.
func (fb *chaosBackend) kill() {
	fb.mu.Lock()
	fb.dead = true
	fb.ln.Close()
	if fb.lease != nil {
		fb.lease.Close()
	}
	for nc := range fb.conns {
		nc.Close()
	}
	fb.mu.Unlock()
	fb.stall(false) // a stalled connection goes on to find its socket closed
	fb.wg.Wait()
}

// countFDs counts the process's open file descriptors.
func countFDs(t testing.TB) int {
	t.Helper()
	return len(openFDs(t))
}

// openFDs maps the process's open file descriptors to what they are.
func openFDs(t testing.TB) map[string]string {
	t.Helper()
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	fds := make(map[string]string, len(es))
	for _, e := range es {
		target, _ := os.Readlink("/proc/self/fd/" + e.Name())
		fds[e.Name()] = target
		if inode, ok := strings.CutPrefix(target, "socket:["); ok {
			fds[e.Name()] += " " + socketInfo(strings.TrimSuffix(inode, "]"))
		}
	}
	return fds
}

// socketInfo finds a socket's line in /proc/self/net (tcp: local and
// remote address in hex, state), for the log of a leak.
func socketInfo(inode string) string {
	for _, f := range []string{"tcp", "tcp6", "unix"} {
		b, _ := os.ReadFile("/proc/self/net/" + f)
		for _, line := range strings.Split(string(b), "\n") {
			fields := strings.Fields(line)
			if slices.Contains(fields, inode) {
				return f + " " + strings.Join(fields[:min(len(fields), 4)], " ")
			}
		}
	}
	return "(unknown)"
}

// waitFDs waits until no more fds are open than before, and fails when
// more than margin stay open; the extra ones are logged.
func waitFDs(t testing.TB, before, margin int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		fds := openFDs(t)
		n := len(fds)
		if n <= before || time.Now().After(deadline) {
			t.Logf("fds: %d before, %d after", before, n)
			if n > before {
				t.Logf("open fds: %v", fds)
			}
			if n > before+margin {
				t.Fatalf("fds: %d before, %d after: a leak", before, n)
			}
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// rssBytes reads VmRSS from /proc/self/status.
func rssBytes(t testing.TB) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc/self/status: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kb int64
			if _, err := fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), &kb); err == nil {
				return kb << 10
			}
		}
	}
	t.Error("no VmRSS in /proc/self/status")
	return 0
}
