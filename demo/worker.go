package demo

import (
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/prism-proxy/prism/backend"
	"github.com/prism-proxy/prism/client"
	"github.com/prism-proxy/prism/codec"
)

// Latencies are recorded in microseconds, up to a minute.
const (
	histMin    = 1
	histMax    = int64(time.Minute / time.Microsecond)
	histDigits = 3
)

func newHistogram() *hdrhistogram.Histogram { return hdrhistogram.New(histMin, histMax, histDigits) }

// topology is what the demo knows about the deployment: which policy and
// mode each server id has. Read-only once built.
type topology struct {
	policies int
	backends int // per policy
}

func (t topology) servers() int { return t.policies * t.backends }

// policyOf returns the policy of server id, or 0 for an id the demo did not start.
func (t topology) policyOf(id int64) int64 {
	if id < 1 || id > int64(t.servers()) {
		return 0
	}
	return (id-1)/int64(t.backends) + 1
}

// modeOf is the mode of the backends of policy p.
func (t topology) modeOf(p int64) backend.Mode {
	if p%2 == 0 {
		return backend.Upper
	}
	return backend.Echo
}

// payloads is a read-only pool of random payloads and their upper-cased
// forms, so that the send loop allocates nothing.
type payloads struct {
	text, upper []string
}

// payloadAlphabet is mostly lower-case letters (which upper-casing changes),
// with characters that JSON must escape and some UTF-8.
const payloadAlphabet = "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz0123456789 .,-_\"\\/\n\téü€"

func newPayloads(r *rand.Rand, n, size int) *payloads {
	alphabet := []rune(payloadAlphabet)
	lo := min(4, size)
	p := &payloads{text: make([]string, n), upper: make([]string, n)}
	var b strings.Builder
	for i := range n {
		want := lo + r.IntN(size-lo+1)
		b.Reset()
		for b.Len() < want {
			ch := alphabet[r.IntN(len(alphabet))]
			if b.Len()+len(string(ch)) > want {
				ch = 'x' // fill the last bytes with ASCII to hit the size exactly
			}
			b.WriteRune(ch)
		}
		p.text[i] = b.String()
		p.upper[i] = strings.ToUpper(p.text[i])
	}
	return p
}

// pending is a request waiting for its answer.
type pending struct {
	policy int64
	index  int // into payloads
	sent   time.Time
}

// worker is one client connection and its tallies. The atomics are read by
// the progress reporter while the worker runs; the other fields belong to
// the worker's goroutine until it returned.
type worker struct {
	id       int64
	conn     *client.Conn
	topo     topology
	pl       *payloads
	rng      *rand.Rand
	pipeline int
	stop     *atomic.Bool

	sent, replies, errors, bad atomic.Uint64

	hist         *hdrhistogram.Histogram
	perServer    []uint64 // replies by server id-1
	errCodes     map[string]uint64
	violations   uint64
	wrongDest    uint64
	wrongPayload uint64
	unanswered   uint64
	err          error
}

// runWorker keeps w.pipeline requests in flight until stop is set, then
// reads the answers still due.
func runWorker(w *worker) {
	ring := make([]pending, w.pipeline)
	head, n := 0, 0
	var m codec.Message
	for {
		for n < len(ring) && !w.stop.Load() {
			p := pending{policy: 1 + w.rng.Int64N(int64(w.topo.policies)), index: w.rng.IntN(len(w.pl.text))}
			if err := w.conn.Send(w.id, p.policy, w.pl.text[p.index]); err != nil {
				w.fail(err, n)
				return
			}
			p.sent = time.Now()
			ring[(head+n)%len(ring)] = p
			n++
			w.sent.Add(1)
		}
		if n == 0 {
			return
		}
		if w.conn.Buffered() == 0 { // about to block: send what is buffered
			if err := w.conn.Flush(); err != nil {
				w.fail(err, n)
				return
			}
		}
		if err := w.conn.Recv(&m); err != nil {
			w.fail(err, n)
			return
		}
		w.check(&m, ring[head])
		head = (head + 1) % len(ring)
		n--
	}
}

func (w *worker) fail(err error, inflight int) {
	w.err = err
	w.unanswered += uint64(inflight)
}

// check tallies the answer m to request p.
func (w *worker) check(m *codec.Message, p pending) {
	switch m.Type {
	case codec.TypeReply:
	case codec.TypeError:
		w.errors.Add(1)
		w.countError(m.Code)
		return
	default:
		w.errors.Add(1)
		w.countError("unexpected_message")
		return
	}
	w.replies.Add(1)
	us := int64(time.Since(p.sent) / time.Microsecond)
	_ = w.hist.RecordValue(min(max(us, histMin), histMax))

	bad := false
	policy := w.topo.policyOf(m.SrcID)
	if policy != 0 {
		w.perServer[m.SrcID-1]++
	}
	if policy != p.policy {
		w.violations++
		bad = true
	}
	if m.DestID != w.id {
		w.wrongDest++
		bad = true
	}
	if policy == 0 {
		policy = p.policy
	}
	want := w.pl.text[p.index]
	if w.topo.modeOf(policy) == backend.Upper {
		want = w.pl.upper[p.index]
	}
	if m.Payload != want || m.PayloadSize != int64(len(m.Payload)) {
		w.wrongPayload++
		bad = true
	}
	if bad {
		w.bad.Add(1)
	}
}

// countError counts an error code; m.Code aliases the connection's buffer,
// so a new key is copied.
func (w *worker) countError(code string) {
	if _, ok := w.errCodes[code]; ok {
		w.errCodes[code]++
		return
	}
	w.errCodes[strings.Clone(code)] = 1
}
