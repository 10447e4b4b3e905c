package demo

import (
	"bytes"
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prism-proxy/prism/codec"
)

// TestRun runs a short demo over loopback and checks the summary: traffic,
// no violations, every backend used, round-robin balance within each
// policy, and the report's headings.
func TestRun(t *testing.T) {
	var stdout, stderr bytes.Buffer
	cfg := Config{
		Duration: time.Second, Clients: 4, Pipeline: 8, Policies: 3, Backends: 2, Loops: 2,
		Progress: ProgressLines, ProgressEvery: 100 * time.Millisecond, Seed: 1,
	}
	sum, err := Run(context.Background(), cfg, &stdout, &stderr)
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, stdout.String())
	}
	if sum.Replies == 0 {
		t.Fatal("got 0 replies; want some")
	}
	for _, c := range []struct {
		name string
		n    uint64
	}{
		{"violations", sum.Violations}, {"wrong destid", sum.WrongDest},
		{"wrong payloads", sum.WrongPayload}, {"unanswered", sum.Unanswered},
	} {
		if c.n != 0 {
			t.Errorf("%s = %d; want 0", c.name, c.n)
		}
	}
	if got := sum.Replies + sumErrors(sum.Errors); got != sum.Requests {
		t.Errorf("replies+errors = %d; want requests %d", got, sum.Requests)
	}
	if uint64(sum.Proxy.Requests) != sum.Requests {
		t.Errorf("proxy counted %d requests; clients sent %d", sum.Proxy.Requests, sum.Requests)
	}
	if len(sum.Backends) != cfg.Policies*cfg.Backends {
		t.Fatalf("got %d backends in the summary; want %d", len(sum.Backends), cfg.Policies*cfg.Backends)
	}
	for _, b := range sum.Backends {
		if b.Replies == 0 {
			t.Errorf("backend %d (policy %d) answered no request", b.ID, b.Policy)
		}
		if want := 1 / float64(cfg.Backends); math.Abs(b.Share-want) > 0.1 {
			t.Errorf("backend %d has %.1f%% of policy %d; want %.1f%% ± 10", b.ID, 100*b.Share, b.Policy, 100*want)
		}
		if wantMode := []string{"upper", "echo"}[b.Policy%2]; b.Mode != wantMode {
			t.Errorf("backend %d of policy %d mode %q; want %q", b.ID, b.Policy, b.Mode, wantMode)
		}
	}
	if sum.Latency.P50 <= 0 || sum.Latency.Max < sum.Latency.P99 {
		t.Errorf("latency %+v; want 0 < p50 and p99 <= max", sum.Latency)
	}
	out := stdout.String()
	for _, h := range []string{"prism demo:", "requests", "replies", "errors", "isolation violations",
		"wrong payloads", "throughput", "msgs/s", "latency", "p50", "p99.9", "requests per backend",
		"policy", "share", "upper", "echo", "PASS"} {
		if !strings.Contains(out, h) {
			t.Errorf("summary lacks %q:\n%s", h, out)
		}
	}
	if !strings.Contains(stderr.String(), "msgs/s") || strings.Contains(stderr.String(), "\r") {
		t.Errorf("progress lines: got %q; want plain lines with rates", stderr.String())
	}
}

// cancelOnReplies cancels a run once a progress line shows replies.
type cancelOnReplies struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	cancel context.CancelFunc
}

var repliesRE = regexp.MustCompile(`replies ([1-9][0-9,]*)`)

func (c *cancelOnReplies) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if repliesRE.Match(p) {
		c.cancel()
	}
	return c.buf.Write(p)
}

func TestRunInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stderr := &cancelOnReplies{cancel: cancel}
	var stdout bytes.Buffer
	cfg := Config{
		Duration: time.Minute, Clients: 2, Pipeline: 4, Policies: 2, Backends: 1, Loops: 1,
		Progress: ProgressLines, ProgressEvery: 20 * time.Millisecond,
	}
	start := time.Now()
	sum, err := Run(ctx, cfg, &stdout, stderr)
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, stdout.String())
	}
	if !sum.Interrupted || time.Since(start) > 30*time.Second {
		t.Fatalf("interrupted = %v after %v; want a run cut short", sum.Interrupted, time.Since(start))
	}
	if !strings.Contains(stdout.String(), "(interrupted)") {
		t.Errorf("summary does not say it was interrupted:\n%s", stdout.String())
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"negative duration", Config{Duration: -time.Second}},
		{"negative clients", Config{Clients: -1}},
		{"negative pipeline", Config{Pipeline: -1}},
		{"negative policies", Config{Policies: -1}},
		{"negative backends", Config{Backends: -1}},
		{"negative size", Config{Size: -1}},
		{"size too large", Config{Size: maxSize + 1}},
		{"unknown progress", Config{Progress: ProgressOff + 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sum, err := Run(context.Background(), tt.cfg, &bytes.Buffer{}, &bytes.Buffer{})
			if !errors.Is(err, ErrConfig) || sum != nil {
				t.Fatalf("got %v, %v; want nil, ErrConfig", sum, err)
			}
		})
	}
}

func TestSummaryErr(t *testing.T) {
	tests := []struct {
		name string
		sum  Summary
		want []error
	}{
		{"pass", Summary{Replies: 10}, nil},
		{"no replies", Summary{}, []error{ErrNoReplies}},
		{"isolation", Summary{Replies: 10, Violations: 1}, []error{ErrIsolation}},
		{"wrong destid", Summary{Replies: 10, WrongDest: 1}, []error{ErrWrongReply}},
		{"wrong payload", Summary{Replies: 10, WrongPayload: 2}, []error{ErrWrongReply}},
		{"unanswered", Summary{Replies: 10, Unanswered: 3}, []error{ErrUnanswered}},
		{"several", Summary{Violations: 1, WrongPayload: 1}, []error{ErrNoReplies, ErrIsolation, ErrWrongReply}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.sum.Err()
			if (err == nil) != (tt.want == nil) {
				t.Fatalf("Err() = %v; want %v", err, tt.want)
			}
			for _, w := range tt.want {
				if !errors.Is(err, w) {
					t.Errorf("Err() = %v; want it to wrap %v", err, w)
				}
			}
			if got := tt.sum.String(); (err == nil) != strings.Contains(got, "PASS") {
				t.Errorf("summary verdict does not match Err() = %v:\n%s", err, got)
			}
		})
	}
}

func TestPayloadSizes(t *testing.T) {
	for _, size := range []int{1, 3, 4, 5, 256} {
		pl := newPayloads(rand.New(rand.NewPCG(1, 2)), 200, size)
		for i, p := range pl.text {
			if n := len(p); n < min(4, size) || n > size {
				t.Fatalf("size %d: payload %d has %d bytes; want %d..%d", size, i, n, min(4, size), size)
			}
			if pl.upper[i] != strings.ToUpper(p) {
				t.Fatalf("size %d: upper[%d] = %q; want %q", size, i, pl.upper[i], strings.ToUpper(p))
			}
		}
	}
}

func TestGroup(t *testing.T) {
	for _, tt := range []struct {
		n    uint64
		want string
	}{{0, "0"}, {999, "999"}, {1000, "1,000"}, {1234567, "1,234,567"}} {
		if got := group(tt.n); got != tt.want {
			t.Errorf("group(%d) = %q; want %q", tt.n, got, tt.want)
		}
	}
}

// TestCheck shows the checker catches what the demo exists to catch.
func TestCheck(t *testing.T) {
	pl := &payloads{text: []string{"héllo"}, upper: []string{"HÉLLO"}}
	reply := func(srcid, destid int64, payload string) codec.Message {
		return codec.Message{Type: codec.TypeReply, SrcID: srcid, DestID: destid, Payload: payload, PayloadSize: int64(len(payload))}
	}
	tests := []struct {
		name                      string
		policy                    int64 // of the request
		m                         codec.Message
		violations, dest, payload uint64
		errCode                   string
	}{
		{"echo ok", 1, reply(2, 1001, "héllo"), 0, 0, 0, ""},
		{"upper ok", 2, reply(3, 1001, "HÉLLO"), 0, 0, 0, ""},
		{"other policy", 1, reply(5, 1001, "héllo"), 1, 0, 0, ""},
		{"unknown server", 1, reply(99, 1001, "héllo"), 1, 0, 0, ""},
		{"wrong destid", 3, reply(6, 1002, "héllo"), 0, 1, 0, ""},
		{"not upper-cased", 2, reply(4, 1001, "héllo"), 0, 0, 1, ""},
		{"wrong payloadsize", 1, codec.Message{Type: codec.TypeReply, SrcID: 1, DestID: 1001, Payload: "héllo", PayloadSize: 5}, 0, 0, 1, ""},
		{"error", 1, codec.Message{Type: codec.TypeError, DestID: 1001, Code: "timeout"}, 0, 0, 0, "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &worker{id: 1001, topo: topology{policies: 3, backends: 2}, pl: pl,
				hist: newHistogram(), perServer: make([]uint64, 6), errCodes: map[string]uint64{}}
			w.check(&tt.m, pending{policy: tt.policy, sent: time.Now()})
			if w.violations != tt.violations || w.wrongDest != tt.dest || w.wrongPayload != tt.payload {
				t.Errorf("violations, wrong destid, wrong payload = %d, %d, %d; want %d, %d, %d",
					w.violations, w.wrongDest, w.wrongPayload, tt.violations, tt.dest, tt.payload)
			}
			if tt.errCode != "" && w.errCodes[tt.errCode] != 1 {
				t.Errorf("error codes %v; want %s counted once", w.errCodes, tt.errCode)
			}
		})
	}
}

func TestSummaryErrorsByCode(t *testing.T) {
	s := &Summary{Replies: 1, Errors: map[string]uint64{"timeout": 2, "no_backend": 1000}}
	if got, want := s.String(), "1,002  no_backend 1,000, timeout 2"; !strings.Contains(got, want) {
		t.Errorf("summary lacks %q:\n%s", want, got)
	}
}
