package demo

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prism-proxy/prism/backend"
	"github.com/prism-proxy/prism/server"
)

// Summary is the outcome of a run.
type Summary struct {
	Config      Config // with defaults resolved
	Seed        uint64 // the seed used, to replay the policies and payloads
	ProxyAddr   string // where the proxy listened
	ProxyLoops  int    // the proxy's event loops
	Elapsed     time.Duration
	Interrupted bool // ctx ended before Config.Duration

	Requests     uint64            // requests sent by the clients
	Replies      uint64            // replies received (answers that are not errors)
	Errors       map[string]uint64 // error answers by code
	Violations   uint64            // replies from a server not of the request's policy
	WrongDest    uint64            // replies whose destid is not the client's id
	WrongPayload uint64            // replies whose payload is not the expected one
	Unanswered   uint64            // requests without an answer when a connection failed
	ClientErr    error             // the first connection failure, if any
	Throughput   float64           // replies per second of Elapsed
	Latency      Latency           // of the replies, from send to receipt

	Backends    []BackendCount  // in server id order
	Proxy       server.Snapshot // the proxy's own counters at the end
	ShutdownErr error           // from the proxy's drain or the backends' close
}

// Latency holds percentiles of the request latency.
type Latency struct {
	P50, P90, P99, P999, Max time.Duration
}

// BackendCount is the share of the traffic one backend server answered.
type BackendCount struct {
	ID, Policy int64
	Mode       string  // "echo" or "upper"
	Replies    uint64  // replies from this server that clients received
	Share      float64 // of the replies of its policy, 0..1
	Served     uint64  // requests the server says it answered
}

// Err reports the failed checks: no replies at all, isolation violations,
// wrong replies, or requests left without an answer. Nil means the run passed.
func (s *Summary) Err() error {
	var errs []error
	if s.Replies == 0 {
		errs = append(errs, ErrNoReplies)
	}
	if s.Violations > 0 {
		errs = append(errs, fmt.Errorf("%w: %d", ErrIsolation, s.Violations))
	}
	if n := s.WrongDest + s.WrongPayload; n > 0 {
		errs = append(errs, fmt.Errorf("%w: %d", ErrWrongReply, n))
	}
	if s.Unanswered > 0 {
		errs = append(errs, fmt.Errorf("%w: %d (%v)", ErrUnanswered, s.Unanswered, s.ClientErr))
	}
	return errors.Join(errs...)
}

// collect sums the workers' tallies; they must have returned.
func (s *Summary) collect(workers []*worker, backends []*backend.Server, topo topology) {
	hist := newHistogram()
	perServer := make([]uint64, topo.servers())
	s.Errors = map[string]uint64{}
	for _, w := range workers {
		s.Requests += w.sent.Load()
		s.Replies += w.replies.Load()
		s.Violations += w.violations
		s.WrongDest += w.wrongDest
		s.WrongPayload += w.wrongPayload
		s.Unanswered += w.unanswered
		if s.ClientErr == nil && w.err != nil {
			s.ClientErr = fmt.Errorf("client %d: %w", w.id, w.err)
		}
		for code, n := range w.errCodes {
			s.Errors[code] += n
		}
		for i, n := range w.perServer {
			perServer[i] += n
		}
		hist.Merge(w.hist)
	}
	if s.Elapsed > 0 {
		s.Throughput = float64(s.Replies) / s.Elapsed.Seconds()
	}
	us := func(q float64) time.Duration { return time.Duration(hist.ValueAtQuantile(q)) * time.Microsecond }
	s.Latency = Latency{P50: us(50), P90: us(90), P99: us(99), P999: us(99.9),
		Max: time.Duration(hist.Max()) * time.Microsecond}

	perPolicy := make([]uint64, topo.policies+1)
	for i, n := range perServer {
		perPolicy[topo.policyOf(int64(i+1))] += n
	}
	for i, b := range backends {
		c := BackendCount{ID: b.ID(), Policy: b.Policy(), Mode: topo.modeOf(b.Policy()).String(),
			Replies: perServer[i], Served: b.Served()}
		if total := perPolicy[c.Policy]; total > 0 {
			c.Share = float64(c.Replies) / float64(total)
		}
		s.Backends = append(s.Backends, c)
	}
}

func (s *Summary) headline() string {
	c := s.Config
	return fmt.Sprintf("prism demo: proxy %s (%d loops), %d policies x %d backends, %d clients x %d in flight, payloads up to %d bytes, %v",
		s.ProxyAddr, s.ProxyLoops, c.Policies, c.Backends, c.Clients, c.Pipeline, c.Size, c.Duration)
}

// WriteTo writes the summary as text tables; it implements io.WriterTo.
func (s *Summary) WriteTo(w io.Writer) (int64, error) {
	var b bytes.Buffer
	fmt.Fprintln(&b, s.headline())
	ran := fmtDuration(s.Elapsed)
	if s.Interrupted {
		ran += " (interrupted)"
	}
	fmt.Fprintf(&b, "ran %s, seed %d\n\n", ran, s.Seed)

	row := func(name string, v uint64, note string) {
		line := fmt.Sprintf("%-22s%12s  %s", name, group(v), note)
		fmt.Fprintln(&b, strings.TrimRight(line, " "))
	}
	row("requests", s.Requests, "proxy counted "+group(uint64(s.Proxy.Requests)))
	row("replies", s.Replies, "proxy counted "+group(uint64(s.Proxy.Replies)))
	row("errors", sumErrors(s.Errors), errorsByCode(s.Errors))
	row("isolation violations", s.Violations, "should be 0")
	row("wrong destid", s.WrongDest, "should be 0")
	row("wrong payloads", s.WrongPayload, "should be 0")
	row("unanswered", s.Unanswered, "should be 0")
	row("retries", uint64(s.Proxy.Retries), "by the proxy")
	row("throughput", uint64(s.Throughput+0.5), "msgs/s")

	fmt.Fprintln(&b, "\nlatency")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "p50\tp90\tp99\tp99.9\tmax\t")
	l := s.Latency
	fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n",
		fmtDuration(l.P50), fmtDuration(l.P90), fmtDuration(l.P99), fmtDuration(l.P999), fmtDuration(l.Max))
	tw.Flush()

	fmt.Fprintln(&b, "\nrequests per backend")
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "id\tpolicy\tmode\treplies\tshare\tserved\t")
	for _, c := range s.Backends {
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%.1f%%\t%s\t\n", c.ID, c.Policy, c.Mode, group(c.Replies), 100*c.Share, group(c.Served))
	}
	tw.Flush()

	if s.ClientErr != nil {
		fmt.Fprintf(&b, "\nclient error: %v\n", s.ClientErr)
	}
	if s.ShutdownErr != nil {
		fmt.Fprintf(&b, "\nshutdown: %v\n", s.ShutdownErr)
	}
	if err := s.Err(); err != nil {
		fmt.Fprintf(&b, "\nFAIL: %v\n", err)
	} else {
		fmt.Fprintln(&b, "\nPASS: every reply came from a backend of its policy, to its client, with the expected payload")
	}
	return b.WriteTo(w)
}

// String returns the text WriteTo writes.
func (s *Summary) String() string {
	var b bytes.Buffer
	s.WriteTo(&b)
	return b.String()
}

func sumErrors(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

func errorsByCode(m map[string]uint64) string {
	codes := make([]string, 0, len(m))
	for c := range m {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	out := ""
	for i, c := range codes {
		if i > 0 {
			out += ", "
		}
		out += c + " " + group(m[c])
	}
	return out
}

// group formats n with thousands separators.
func group(n uint64) string {
	s := strconv.FormatUint(n, 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// fmtDuration rounds d to three significant digits, as the histogram holds.
func fmtDuration(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	case d >= 100*time.Millisecond:
		return d.Round(time.Millisecond).String()
	case d >= 10*time.Millisecond:
		return d.Round(100 * time.Microsecond).String()
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	}
	return d.Round(time.Microsecond).String()
}
