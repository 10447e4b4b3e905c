package server

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prism-proxy/prism/codec"
)

// logBuffer captures a JSON log for a test.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// records returns the log's lines whose message starts with msg, decoded.
func (b *logBuffer) records(t testing.TB, msg string) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if m, _ := rec["msg"].(string); strings.HasPrefix(m, msg) {
			out = append(out, rec)
		}
	}
	return out
}

// TestErrorSummary: requests answered with errors make one summary line
// per interval, with the counts by code and policy, not a line each.
func TestErrorSummary(t *testing.T) {
	var logs logBuffer
	p := startProxy(t, Config{
		ErrorLogEvery: 2 * time.Second, // the requests below all fall in the first
		Logger:        slog.New(slog.NewJSONHandler(&logs, nil)),
	})
	c := dial(t, p, codec.Binary)
	const bad, unserved = 40, 25
	for range bad {
		if err := c.SendRaw([]byte(`{"type":0,"srcid":1}`)); err != nil {
			t.Fatal(err)
		}
	}
	for range unserved {
		if err := c.Send(1, 7, "x"); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	for i := range bad + unserved {
		want := codec.CodeBadRequest
		if i >= bad {
			want = codec.CodeNoBackend
		}
		if a := recv(t, c); a.Code != want {
			t.Fatalf("answer %d: code %q; want %q", i, a.Code, want)
		}
	}
	const msg = "requests answered with errors"
	var recs []map[string]any
	waitFor(t, "the error summary", 10*time.Second, func() bool {
		recs = logs.records(t, msg)
		return len(recs) > 0
	})
	if len(recs) != 1 {
		t.Fatalf("%d summary lines; want 1: %v", len(recs), recs)
	}
	r := recs[0]
	for k, want := range map[string]any{
		"level": "WARN", "total": float64(bad + unserved),
		codec.CodeBadRequest: float64(bad), codec.CodeNoBackend: float64(unserved),
		"policies": "none:bad_request=40 7:no_backend=25",
	} {
		if r[k] != want {
			t.Errorf("summary %s = %v; want %v (line %v)", k, r[k], want, r)
		}
	}
	if _, ok := r[codec.CodeTimeout]; ok {
		t.Errorf("summary has timeout, which did not happen: %v", r)
	}
	// Nothing new: no line the next interval; new errors: a line with them only.
	if a := roundTrip(t, c, 1, 8, "y"); a.Code != codec.CodeNoBackend {
		t.Fatalf("code %q; want no_backend", a.Code)
	}
	waitFor(t, "the second summary", 10*time.Second, func() bool {
		recs = logs.records(t, msg)
		return len(recs) > 1
	})
	if r := recs[1]; r["total"] != float64(1) || r["policies"] != "8:no_backend=1" {
		t.Errorf("second summary %v; want total 1, policies 8:no_backend=1", r)
	}
}

// TestBadSetupLoggedOnce: invalid setups are answered bad_request each, but
// logged once per lease, with the peer.
func TestBadSetupLoggedOnce(t *testing.T) {
	var logs logBuffer
	p := startProxy(t, Config{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	c := dial(t, p, codec.Binary)
	for range 3 {
		if err := c.SendRaw([]byte(`{"type":1,"id":4,"privPolyId":7,"listenport":0}`)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if a := recv(t, c); a.Code != codec.CodeBadRequest {
			t.Fatalf("code %q; want bad_request", a.Code)
		}
	}
	recs := logs.records(t, "setup refused: bad_request")
	if len(recs) != 1 || recs[0]["id"] != float64(4) || recs[0]["peer"] == nil {
		t.Errorf("logged %v; want one line with id 4 and the peer", recs)
	}
}
