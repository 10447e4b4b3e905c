package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/prism-proxy/prism/backend"
	"github.com/prism-proxy/prism/codec"
)

// get fetches path from the admin server and returns its status and body.
func get(t testing.TB, srv *httptest.Server, path string) (int, string) {
	t.Helper()
	resp, err := srv.Client().Get(srv.URL + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

// scrape fetches /metrics and parses it with the Prometheus text parser.
func scrape(t testing.TB, srv *httptest.Server) (map[string]*dto.MetricFamily, []byte) {
	t.Helper()
	code, body := get(t, srv, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d", code)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return mfs, []byte(body)
}

// series returns the metric of family name whose labels include want; nil
// when there is none.
func series(mfs map[string]*dto.MetricFamily, name string, want ...string) *dto.Metric {
	mf := mfs[name]
	if mf == nil {
		return nil
	}
next:
	for _, m := range mf.GetMetric() {
		for i := 0; i+1 < len(want); i += 2 {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == want[i] && lp.GetValue() == want[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		return m
	}
	return nil
}

// value returns a counter's or gauge's value, or a histogram's count.
func value(t testing.TB, mfs map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	m := series(mfs, name, labels...)
	switch {
	case m == nil:
		t.Fatalf("no series %s%v", name, labels)
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	t.Fatalf("%s%v: not a counter, gauge or histogram", name, labels)
	return 0
}

// TestMetricsAgainstTraffic sends known traffic (N requests of policy 7, M
// of policy 8, K of policy 9, which has no backend) and checks what
// /metrics says about it, that the exposition passes promtool's lint, and
// the other admin endpoints along the way.
func TestMetricsAgainstTraffic(t *testing.T) {
	const N, M, K = 300, 200, 50
	p := startProxy(t, Config{Loops: 2, ReadyMinBackends: 1, ReadyPolicies: "7,8"})
	srv := httptest.NewServer(p.AdminHandler())
	t.Cleanup(srv.Close)

	if code, body := get(t, srv, "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "policy 7") {
		t.Errorf("/readyz before backends: %d %q; want 503 naming policy 7", code, body)
	}
	startBackend(t, p, 1, 7, backend.Echo, codec.Binary)
	startBackend(t, p, 2, 7, backend.Echo, codec.Binary)
	if code, body := get(t, srv, "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "policy 8") {
		t.Errorf("/readyz without policy 8: %d %q; want 503 naming policy 8", code, body)
	}
	startBackend(t, p, 3, 8, backend.Echo, codec.Text)
	if code, body := get(t, srv, "/readyz"); code != http.StatusOK {
		t.Errorf("/readyz with both policies: %d %q; want 200", code, body)
	}

	// Two clients, so that both loops are likely to count.
	for _, framing := range []codec.Framing{codec.Binary, codec.Text} {
		c := dial(t, p, framing)
		n := 0
		for _, pc := range [][2]int64{{7, N / 2}, {8, M / 2}, {9, K / 2}} {
			for range pc[1] {
				n++
				if err := c.Send(int64(n), pc[0], "hello"); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
		for range (N + M + K) / 2 {
			a := recv(t, c)
			if a.Type != codec.TypeReply && a.Code != codec.CodeNoBackend {
				t.Fatalf("answer %+v; want a reply or no_backend", a)
			}
		}
	}

	mfs, body := scrape(t, srv)
	checks := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"prism_requests_total", []string{"policy", "7"}, N},
		{"prism_requests_total", []string{"policy", "8"}, M},
		{"prism_requests_total", []string{"policy", "9"}, K},
		{"prism_replies_total", []string{"policy", "7"}, N},
		{"prism_replies_total", []string{"policy", "8"}, M},
		{"prism_replies_total", []string{"policy", "9"}, 0},
		{"prism_errors_total", []string{"policy", "9", "code", codec.CodeNoBackend}, K},
		{"prism_errors_total", []string{"policy", "7", "code", codec.CodeNoBackend}, 0},
		{"prism_errors_total", []string{"policy", "7", "code", codec.CodeTimeout}, 0},
		{"prism_request_duration_seconds", []string{"policy", "7"}, N},
		{"prism_request_duration_seconds", []string{"policy", "8"}, M},
		{"prism_request_duration_seconds", []string{"policy", "9"}, K},
		{"prism_backend_reply_duration_seconds", []string{"policy", "7"}, N},
		{"prism_backend_reply_duration_seconds", []string{"policy", "8"}, M},
		{"prism_backend_reply_duration_seconds", []string{"policy", "9"}, 0},
		{"prism_backend_routed_total", []string{"id", "3", "policy", "8"}, M},
		{"prism_backend_state", []string{"id", "1", "state", "up"}, 1},
		{"prism_backend_state", []string{"id", "1", "state", "ejected"}, 0},
		{"prism_backend_state", []string{"id", "3", "state", "probing"}, 0},
		{"prism_backend_inflight", []string{"id", "1"}, 0},
		{"prism_backend_failures_total", []string{"id", "2"}, 0},
		{"prism_backends", []string{"policy", "7"}, 2},
		{"prism_leases", nil, 3},
		{"prism_inflight", nil, 0},
	}
	for _, c := range checks {
		if got := value(t, mfs, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v; want %v", c.name, c.labels, got, c.want)
		}
	}
	if got := value(t, mfs, "prism_backend_routed_total", "id", "1") + value(t, mfs, "prism_backend_routed_total", "id", "2"); got != N {
		t.Errorf("routed to policy 7's backends: %v; want %v", got, N)
	}
	// Every request is a binary frame of at least its header and JSON.
	for _, name := range []string{"prism_client_received_bytes_total", "prism_client_sent_bytes_total",
		"prism_backend_sent_bytes_total", "prism_backend_received_bytes_total"} {
		if got := value(t, mfs, name); got < (N + M) {
			t.Errorf("%s = %v; want at least %d", name, got, N+M)
		}
	}
	h := series(mfs, "prism_request_duration_seconds", "policy", "7").GetHistogram()
	if b := h.GetBucket(); h.GetSampleSum() <= 0 || len(b) < len(latencyBounds) {
		t.Errorf("request latency of policy 7: sum %v, %d buckets; want > 0 and %d", h.GetSampleSum(), len(b), len(latencyBounds))
	} else if le10 := b[len(latencyBounds)-1]; le10.GetUpperBound() != 10 || le10.GetCumulativeCount() != N {
		t.Errorf("request latency of policy 7: %d at or under %vs; want %d under 10s", le10.GetCumulativeCount(), le10.GetUpperBound(), N)
	}
	// promtool check metrics runs the same linter.
	problems, err := promlint.New(bytes.NewReader(body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, pr := range problems {
		t.Errorf("lint: %s: %s", pr.Metric, pr.Text)
	}

	// The dashboard shows only series that exist.
	dash, err := os.ReadFile("../deploy/grafana/prism.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range regexp.MustCompile(`\b(prism|go|process)_[a-z_]+`).FindAllString(string(dash), -1) {
		if mfs[name] == nil && mfs[strings.TrimSuffix(name, "_bucket")] == nil {
			t.Errorf("deploy/grafana/prism.json uses %s, which /metrics does not have", name)
		}
	}

	var bs []BackendInfo
	_, js := get(t, srv, "/backends")
	if err := json.Unmarshal([]byte(js), &bs); err != nil || len(bs) != 3 {
		t.Fatalf("/backends: %v, %d backends; want 3: %s", err, len(bs), js)
	}
	if !strings.Contains(js, `"failures":0`) || !strings.Contains(js, `"inflight":0`) {
		t.Errorf("/backends has no failures or inflight: %s", js)
	}
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/healthz"} {
		if code, _ := get(t, srv, path); code != http.StatusOK {
			t.Errorf("GET %s: %d; want 200", path, code)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if code, _ := get(t, srv, "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz after shutdown: %d; want 503", code)
	}
	// The final counts stay readable once the loops are gone.
	mfs, _ = scrape(t, srv)
	if got := value(t, mfs, "prism_requests_total", "policy", "7"); got != N {
		t.Errorf("after shutdown: prism_requests_total{policy=7} = %v; want %v", got, N)
	}
}

func TestReadiness(t *testing.T) {
	tests := []struct {
		name     string
		min      int
		policies string
		backends [][2]int64 // id, policy
		want     string     // "" ready; else a substring of the reason
	}{
		{"no requirement", 0, "", nil, ""},
		{"min without backends", 2, "", nil, "no backend registered"},
		{"min met by every policy", 2, "", [][2]int64{{1, 7}, {2, 7}, {3, 8}, {4, 8}}, ""},
		{"min short on one policy", 2, "", [][2]int64{{1, 7}, {2, 7}, {3, 8}}, "policy 8 has 1 backends; needs 2"},
		{"listed policy missing", 0, "7, 9", [][2]int64{{1, 7}}, "policy 9 has 0 backends; needs 1"},
		{"listed policies served", 1, "7", [][2]int64{{1, 7}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := startProxy(t, Config{Loops: 1, ReadyMinBackends: tt.min, ReadyPolicies: tt.policies})
			for _, b := range tt.backends {
				newFakeBackend(t, p, b[0], b[1], nil)
			}
			got := p.NotReady()
			if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
				t.Errorf("NotReady() = %q; want %q", got, tt.want)
			}
		})
	}
}

func TestReadyPoliciesChecked(t *testing.T) {
	if _, err := New(Config{ReadyPolicies: "7,x", Logger: quiet}); err == nil || !strings.Contains(err.Error(), `"x"`) {
		t.Errorf("New with ReadyPolicies 7,x: %v; want an error naming x", err)
	}
}
