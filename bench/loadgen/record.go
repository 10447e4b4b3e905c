package loadgen

import (
	"math"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/prism-proxy/prism/codec"
)

// Outcome codes of the load generator itself, beside the protocol's.
const (
	// CodeConnError counts requests lost because their connection failed
	// before they were answered, and failed dials during the measurement.
	CodeConnError = "conn_error"
	// CodeBadReply counts answers that are neither a reply nor an error
	// message, and answers that arrive with no request in flight.
	CodeBadReply = "bad_reply"
)

// codeNames are the error codes counted without a map: the protocol's, then
// the generator's own. The index is the code's slot in worker.codes.
var codeNames = [...]string{
	codec.CodeBadRequest,
	codec.CodeTooLarge,
	codec.CodeNoBackend,
	codec.CodeBackendUnavailable,
	codec.CodeTimeout, // also the generator's own, see Config.Timeout
	codec.CodeOverloaded,
	codec.CodeUnauthorized,
	codec.CodeShuttingDown,
	CodeConnError,
	CodeBadReply,
}

const (
	numCodes      = len(codeNames)
	codeTimeout   = 4
	codeConnError = 8
	codeBadReply  = 9
	codeOther     = -1 // a code outside codeNames: counted in a map
)

func codeIndex(code string) int {
	for i := range codeConnError {
		if codeNames[i] == code {
			return i
		}
	}
	return codeOther
}

// Histogram geometry. Latencies are recorded in nanoseconds, clamped to
// histMax; totals keep three significant digits, the per-second histograms of
// the series two, which keeps them at a few tens of KiB.
const (
	histMax      = int64(time.Hour)
	histDigits   = 3
	seriesDigits = 2
	nSlots       = 4   // per-second histograms a shard keeps open
	batchLen     = 256 // latencies a connection gathers before taking a shard's lock
	second       = int64(time.Second)
	never        = int64(math.MaxInt64)
)

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(1, histMax, histDigits) }

func newSeriesHist() *hdrhistogram.Histogram { return hdrhistogram.New(1, histMax, seriesDigits) }

func clampNs(v int64) int64 {
	if v < 0 {
		return 0
	}
	if v > histMax {
		return histMax
	}
	return v
}

// shard holds histograms that several connections record into, under mu.
// The reporter collects one second at a time from slots.
type shard struct {
	mu    sync.Mutex
	lat   *hdrhistogram.Histogram // corrected (open loop) or service (closed loop) latency
	unc   *hdrhistogram.Histogram // uncorrected latency; nil in closed loop
	slots [nSlots]*hdrhistogram.Histogram
	next  int // the first second the reporter has not collected
	last  int // the highest second recorded, -1 before any
}

func newShard(open bool) *shard {
	sh := &shard{lat: newHist(), last: -1}
	if open {
		sh.unc = newHist()
	}
	for i := range sh.slots {
		sh.slots[i] = newSeriesHist()
	}
	return sh
}

// add records a batch's latencies and empties it.
func (sh *shard) add(b *batch) {
	sh.mu.Lock()
	sec := b.sec
	// A batch that arrives after its second was collected counts in the
	// first open one; one far ahead of the reporter in the last open one.
	sec = max(sec, sh.next)
	sec = min(sec, sh.next+nSlots-1)
	sh.last = max(sh.last, sec)
	slot := sh.slots[sec%nSlots]
	for _, e := range b.v[:b.n] {
		c := clampNs(e.corr)
		sh.lat.RecordValue(c)
		slot.RecordValue(c)
		if sh.unc != nil {
			sh.unc.RecordValue(clampNs(e.unc))
		}
	}
	sh.mu.Unlock()
	b.n = 0
}

// collect merges second sec into h, once.
func (sh *shard) collect(sec int, h *hdrhistogram.Histogram) {
	sh.mu.Lock()
	if sec >= sh.next {
		s := sh.slots[sec%nSlots]
		h.Merge(s)
		s.Reset()
		sh.next = sec + 1
	}
	sh.mu.Unlock()
}

func (sh *shard) lastSecond() int {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.last
}

type latPair struct{ corr, unc int64 }

// batch gathers one connection's latencies of one second of the measurement
// until it is full or the second is over. Owned by the goroutine that reads
// the connection's answers.
type batch struct {
	sh        *shard
	measureAt int64 // run time when the measurement starts
	lastSec   int   // latencies after it count in it (a Duration run's drain); -1: no limit
	n         int
	sec       int
	end       int64 // run time when sec ends; 0 before the first latency
	v         [batchLen]latPair
}

// add records the latencies of an answer that arrived at run time now.
func (b *batch) add(corr, unc, now int64) {
	if now >= b.end || b.n == len(b.v) {
		b.roll(now)
	}
	b.v[b.n] = latPair{corr, unc}
	b.n++
}

// roll hands the batch to the shard and, when now is past the batch's
// second, moves to now's.
func (b *batch) roll(now int64) {
	if b.n > 0 {
		b.sh.add(b)
	}
	if now < b.end {
		return
	}
	sec := int((now - b.measureAt) / second)
	if b.lastSec >= 0 && sec >= b.lastSec {
		b.sec, b.end = b.lastSec, never
		return
	}
	b.sec, b.end = sec, b.measureAt+int64(sec+1)*second
}

// flushStale hands the batch over if its second is over, so the reporter
// sees it even when the connection goes quiet.
func (b *batch) flushStale(now int64) {
	if b.n > 0 && now >= b.end {
		b.sh.add(b)
	}
}

// flush hands over whatever the batch holds.
func (b *batch) flush() {
	if b.n > 0 {
		b.sh.add(b)
	}
}
