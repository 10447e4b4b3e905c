package loadgen

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Schema names the JSON document that WriteJSON writes. Other tools parse it:
// fields may be added under a new schema name, never renamed.
const Schema = "prism-bench/v1"

// ShortfallWarning is the fraction of the target rate below which an
// open-loop run's achieved rate earns a warning.
const ShortfallWarning = 0.95

// Result is what a run measured. Counts and latencies cover the measurement
// only (after Warmup). Latencies are those of replies (type 2); answers that
// are errors are counted, not timed. Its methods only read it, so they may be
// called from several goroutines at once.
type Result struct {
	Schema   string   `json:"schema"`
	Targets  []string `json:"targets"`
	Mode     string   `json:"mode"` // "closed" or "open"
	Conns    int      `json:"conns"`
	Pipeline int      `json:"pipeline"` // closed loop: depth; open loop: cap per connection
	Rate     float64  `json:"rate"`     // target rate; 0 in closed loop
	Size     int      `json:"size"`
	Policies []int64  `json:"policies"`
	// DurationS is the measured time: from the end of warmup until the
	// last answer was in (or given up on).
	DurationS float64 `json:"duration_s"`
	WarmupS   float64 `json:"warmup_s"`
	Sent      int64   `json:"sent"`
	Replies   int64   `json:"replies"`
	// Errors counts the requests that got no reply, by code: the proxy's
	// error codes, "timeout" (also given by the generator to requests it
	// stopped waiting for, see Config.Timeout), "conn_error" and
	// "bad_reply". Never nil.
	Errors     map[string]int64 `json:"errors"`
	Throughput float64          `json:"throughput"` // replies per second of DurationS
	// AchievedRate is requests sent per second of the sending window.
	AchievedRate float64 `json:"achieved_rate"`
	// Latency is, in open loop, counted from when each request should have
	// been sent (corrected for coordinated omission); in closed loop, from
	// when it was sent.
	Latency Latency `json:"latency_us"`
	// LatencyUncorrected is the open loop's latency from the actual send;
	// nil in closed loop.
	LatencyUncorrected *Latency `json:"latency_uncorrected_us,omitempty"`
	// Series has one entry per second of the measurement.
	Series []Second `json:"series"`

	lat *hdrhistogram.Histogram // Latency's histogram, in nanoseconds
	unc *hdrhistogram.Histogram // LatencyUncorrected's, or nil
}

// Latency summarises a latency distribution, in microseconds.
type Latency struct {
	Min   float64 `json:"min"`
	Mean  float64 `json:"mean"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p999"`
	P9999 float64 `json:"p9999"`
	Max   float64 `json:"max"`
}

// Second is one second of the measurement. Its latencies are those of
// Result.Latency, with two significant digits.
type Second struct {
	T       int     `json:"t"` // seconds since the measurement started, at the second's end
	Replies int64   `json:"replies"`
	Errors  int64   `json:"errors"`
	P50     float64 `json:"p50_us"`
	P99     float64 `json:"p99_us"`
}

func latencyOf(h *hdrhistogram.Histogram) Latency {
	if h.TotalCount() == 0 {
		return Latency{}
	}
	return Latency{
		Min:   us(h.Min()),
		Mean:  h.Mean() / 1e3,
		P50:   us(h.ValueAtQuantile(50)),
		P90:   us(h.ValueAtQuantile(90)),
		P99:   us(h.ValueAtQuantile(99)),
		P999:  us(h.ValueAtQuantile(99.9)),
		P9999: us(h.ValueAtQuantile(99.99)),
		Max:   us(h.Max()),
	}
}

// ErrorCount is the sum of Errors.
func (r *Result) ErrorCount() int64 { return sumErrors(r.Errors) }

// WriteJSON writes the result as one JSON document (schema prism-bench/v1)
// and a newline.
func (r *Result) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	return enc.Encode(r)
}

// WriteHgrm writes the percentile spectrum of Latency (corrected, in open
// loop) in HdrHistogram's .hgrm text format, values in milliseconds, as
// wrk2 --latency and HdrHistogram's plotter use.
func (r *Result) WriteHgrm(w io.Writer) error {
	h := r.lat
	if h == nil {
		h = newHist()
	}
	_, err := h.PercentilesPrint(w, 5, 1e6)
	return err
}

// Warnings are the caveats about the run that a reader of its figures
// should see: an open loop that fell short of its target rate, a run with
// no replies.
func (r *Result) Warnings() []string {
	var ws []string
	if r.Mode == "open" && r.Rate > 0 && r.AchievedRate < ShortfallWarning*r.Rate {
		ws = append(ws, fmt.Sprintf("achieved rate %.0f/s is %.0f%% of the target %.0f/s: the generator or the target could not keep up (corrected latencies include the wait)",
			r.AchievedRate, 100*r.AchievedRate/r.Rate, r.Rate))
	}
	if r.Replies == 0 {
		ws = append(ws, "no replies")
	}
	return ws
}

// WriteSummary writes the result for people.
func (r *Result) WriteSummary(w io.Writer) error {
	var b strings.Builder
	b.WriteString(header(r.Mode == "open", r.Rate, r.Conns, r.Pipeline, r.Size, r.Policies, r.Targets))
	b.WriteByte('\n')
	fmt.Fprintf(&b, "  %.2fs measured after %.2fs warmup: %d sent, %d replies, %d errors\n",
		r.DurationS, r.WarmupS, r.Sent, r.Replies, r.ErrorCount())
	fmt.Fprintf(&b, "  throughput  %.1f msgs/s", r.Throughput)
	if r.Mode == "open" {
		fmt.Fprintf(&b, "   achieved rate %.1f req/s (target %.0f)", r.AchievedRate, r.Rate)
	}
	b.WriteString("\n\n")
	fmt.Fprintf(&b, "  %-12s %9s %9s %9s %9s %9s %9s %9s %9s\n", "latency", "min", "p50", "p90", "p99", "p99.9", "p99.99", "max", "mean")
	row := func(name string, l Latency) {
		fmt.Fprintf(&b, "  %-12s", name)
		for _, v := range []float64{l.Min, l.P50, l.P90, l.P99, l.P999, l.P9999, l.Max, l.Mean} {
			fmt.Fprintf(&b, " %9s", fmtUS(v))
		}
		b.WriteByte('\n')
	}
	if r.LatencyUncorrected != nil {
		row("corrected", r.Latency)
		row("uncorrected", *r.LatencyUncorrected)
	} else {
		row("service", r.Latency)
	}
	if len(r.Errors) > 0 {
		codes := make([]string, 0, len(r.Errors))
		for c := range r.Errors {
			codes = append(codes, c)
		}
		sort.Strings(codes)
		b.WriteString("\n  errors:")
		for _, c := range codes {
			fmt.Fprintf(&b, " %s=%d", c, r.Errors[c])
		}
		b.WriteByte('\n')
	}
	for _, ws := range r.Warnings() {
		fmt.Fprintf(&b, "\n  warning: %s\n", ws)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// fmtUS writes a latency in microseconds with a unit that keeps it short.
func fmtUS(v float64) string {
	switch {
	case v < 1000:
		return strconv.FormatFloat(v, 'f', 1, 64) + "µs"
	case v < 1e6:
		return strconv.FormatFloat(v/1e3, 'f', 2, 64) + "ms"
	}
	return strconv.FormatFloat(v/1e6, 'f', 2, 64) + "s"
}

// FormatProgress renders p as the one-line live view that `prism bench`
// rewrites on a terminal.
func FormatProgress(p Progress) string {
	if p.Warmup {
		return fmt.Sprintf("[%5.1fs] warming up", p.Elapsed.Seconds())
	}
	s := fmt.Sprintf("[%5.1fs] sent %d  replies %d  errors %d", p.Elapsed.Seconds(), p.Sent, p.Replies, p.Errors)
	if p.Last.T > 0 {
		s += fmt.Sprintf("  | second %d: %d msgs/s  p50 %s  p99 %s", p.Last.T, p.Last.Replies, fmtUS(p.Last.P50), fmtUS(p.Last.P99))
	}
	return s
}

// header is the first line of the summary: the load and where it goes.
func header(open bool, rate float64, conns, pipeline, size int, policies []int64, targets []string) string {
	var b strings.Builder
	pol := make([]string, len(policies))
	for i, p := range policies {
		pol[i] = strconv.FormatInt(p, 10)
	}
	if open {
		fmt.Fprintf(&b, "open loop at %.0f req/s over %d conns (at most %d in flight each)", rate, conns, pipeline)
	} else {
		fmt.Fprintf(&b, "closed loop, %d conns × %d in flight", conns, pipeline)
	}
	fmt.Fprintf(&b, ", %d-byte payloads, policy %s → %s", size, strings.Join(pol, ","), strings.Join(targets, ","))
	return b.String()
}

// Header is the first line of the summary a run of c would print (its
// defaults resolved), and how long it measures, for printing at the
// start. The error is Run's for an invalid c.
func (c Config) Header() (string, error) {
	c, err := c.resolve()
	if err != nil {
		return "", err
	}
	h := header(c.Rate > 0, c.Rate, c.Conns, c.Pipeline, c.Size, c.Policies, c.Targets)
	if c.Requests > 0 {
		return fmt.Sprintf("%s: %d requests", h, c.Requests), nil
	}
	return fmt.Sprintf("%s: %v after %v warmup", h, c.Duration, c.Warmup), nil
}
