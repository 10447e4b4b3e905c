package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prism-proxy/prism/codec"
)

func mustRun(tb testing.TB, cfg Config) *Result {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	res, err := Run(ctx, cfg)
	if err != nil {
		tb.Fatalf("Run: %v", err)
	}
	return res
}

func TestClosedLoopCounts(t *testing.T) {
	srv := (&echoServer{}).start(t)
	res := mustRun(t, Config{Targets: []string{srv.addr}, Conns: 4, Pipeline: 8, Requests: 2000, Warmup: -1})
	if res.Sent != 2000 || res.Replies != 2000 || len(res.Errors) != 0 {
		t.Fatalf("sent %d replies %d errors %v; want 2000 2000 none", res.Sent, res.Replies, res.Errors)
	}
	if got := srv.requests.Load(); got != 2000 {
		t.Fatalf("server read %d requests; want 2000", got)
	}
	if res.Mode != "closed" || res.LatencyUncorrected != nil {
		t.Fatalf("mode %q uncorrected %v; want closed, nil", res.Mode, res.LatencyUncorrected)
	}
	l := res.Latency
	if !(0 < l.Min && l.Min <= l.P50 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.P999 && l.P999 <= l.P9999 && l.P9999 <= l.Max) {
		t.Fatalf("latency not ordered: %+v", l)
	}
	if res.lat.TotalCount() != 2000 {
		t.Fatalf("histogram holds %d; want 2000", res.lat.TotalCount())
	}
	if res.Throughput <= 0 || res.DurationS <= 0 {
		t.Fatalf("throughput %v duration %v", res.Throughput, res.DurationS)
	}
}

func TestClosedLoopDuration(t *testing.T) {
	srv := (&echoServer{}).start(t)
	res := mustRun(t, Config{Targets: []string{srv.addr}, Conns: 4, Pipeline: 4, Duration: 500 * time.Millisecond, Warmup: -1})
	if res.DurationS < 0.5 || res.DurationS > 1 {
		t.Fatalf("duration_s %v; want about 0.5", res.DurationS)
	}
	if res.Replies == 0 || res.Replies != res.Sent || len(res.Errors) != 0 {
		t.Fatalf("sent %d replies %d errors %v; want every request answered", res.Sent, res.Replies, res.Errors)
	}
	if len(res.Series) != 1 || res.Series[0].Replies != res.Replies {
		t.Fatalf("series %+v; want one (partial) second with all %d replies", res.Series, res.Replies)
	}
}

func TestOpenLoopRequests(t *testing.T) {
	srv := (&echoServer{}).start(t)
	start := time.Now()
	res := mustRun(t, Config{Targets: []string{srv.addr}, Conns: 3, Rate: 2000, Requests: 300, Warmup: -1})
	if res.Sent != 300 || res.Replies != 300 {
		t.Fatalf("sent %d replies %d; want 300 300", res.Sent, res.Replies)
	}
	if res.AchievedRate < 1700 || res.AchievedRate > 2300 {
		t.Fatalf("achieved rate %.0f; want about 2000", res.AchievedRate)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("300 requests at 2000/s took %v", d)
	}
}

func TestPipelineDepth(t *testing.T) {
	srv := (&echoServer{delay: 2 * time.Millisecond}).start(t)
	const conns, depth = 3, 4
	res := mustRun(t, Config{Targets: []string{srv.addr}, Conns: conns, Pipeline: depth, Requests: 240, Warmup: -1})
	if res.Replies != 240 {
		t.Fatalf("replies %d; want 240", res.Replies)
	}
	if got := srv.maxInflight.Load(); got > conns*depth {
		t.Fatalf("server saw %d requests in flight; want at most %d", got, conns*depth)
	}
	if got := srv.maxPerConn.Load(); got != depth {
		t.Fatalf("server saw at most %d in flight on a connection; want %d", got, depth)
	}
	// The server holds each reply 2ms, so a connection cannot do better
	// than depth requests per 2ms.
	if minDur := float64(240) / (conns * depth) * 0.002; res.DurationS < minDur*0.9 {
		t.Fatalf("run took %.3fs; pipelining %d deep cannot beat %.3fs", res.DurationS, depth, minDur)
	}
}

func TestErrorsByCode(t *testing.T) {
	srv := (&echoServer{errEvery: 10}).start(t)
	res := mustRun(t, Config{Targets: []string{srv.addr}, Conns: 2, Pipeline: 4, Requests: 1000, Warmup: -1})
	if res.Sent != 1000 || res.Replies != 900 || res.Errors[codec.CodeOverloaded] != 100 || len(res.Errors) != 1 {
		t.Fatalf("sent %d replies %d errors %v; want 1000 900 {overloaded:100}", res.Sent, res.Replies, res.Errors)
	}
	if res.lat.TotalCount() != 900 {
		t.Fatalf("histogram holds %d; want the 900 replies", res.lat.TotalCount())
	}
}

func TestConnErrorRedials(t *testing.T) {
	srv := (&echoServer{closeAfter: 50}).start(t)
	res := mustRun(t, Config{Targets: []string{srv.addr}, Conns: 2, Pipeline: 4, Requests: 600, Warmup: -1})
	lost := res.Errors[CodeConnError]
	if res.Sent != 600 || lost == 0 || res.Replies+lost != 600 || len(res.Errors) != 1 {
		t.Fatalf("sent %d replies %d errors %v; want 600 sent, some conn_error, the rest replies", res.Sent, res.Replies, res.Errors)
	}
	if got := srv.accepted.Load(); got < 3 {
		t.Fatalf("server accepted %d connections; want a redial (3)", got)
	}
}

func TestTimeoutRedials(t *testing.T) {
	srv := (&echoServer{stallAt: 20, stallFor: time.Minute}).start(t)
	start := time.Now()
	res := mustRun(t, Config{Targets: []string{srv.addr}, Conns: 1, Pipeline: 2, Requests: 100, Warmup: -1, Timeout: 100 * time.Millisecond})
	timeouts := res.Errors[codec.CodeTimeout]
	if timeouts == 0 || res.Replies+timeouts != 100 || len(res.Errors) != 1 {
		t.Fatalf("replies %d errors %v; want some timeouts, the rest replies", res.Replies, res.Errors)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("run took %v; the stall should be cut at ~100ms", d)
	}
	if srv.accepted.Load() < 2 {
		t.Fatalf("no redial after the timeout")
	}
}

func TestWarmupNotCounted(t *testing.T) {
	srv := (&echoServer{}).start(t)
	res := mustRun(t, Config{Targets: []string{srv.addr}, Conns: 2, Pipeline: 2, Requests: 300, Warmup: 100 * time.Millisecond})
	if res.Sent != 300 || res.Replies != 300 {
		t.Fatalf("sent %d replies %d; want 300 300", res.Sent, res.Replies)
	}
	if got := srv.requests.Load(); got <= 300 {
		t.Fatalf("server read %d requests; want more than the 300 measured (warmup)", got)
	}
	if res.WarmupS != 0.1 {
		t.Fatalf("warmup_s %v; want 0.1", res.WarmupS)
	}
}

func TestTextFramingPoliciesTargets(t *testing.T) {
	a, b := (&echoServer{}).start(t), (&echoServer{}).start(t)
	res := mustRun(t, Config{
		Targets: []string{a.addr, b.addr}, Conns: 4, Pipeline: 4, Requests: 400, Warmup: -1,
		Policies: []int64{7, 8}, Framing: codec.Text, Size: 10, SrcID: 42,
	})
	if res.Replies != 400 || len(res.Errors) != 0 {
		t.Fatalf("replies %d errors %v; want 400, none", res.Replies, res.Errors)
	}
	if a.requests.Load() == 0 || b.requests.Load() == 0 || a.requests.Load()+b.requests.Load() != 400 {
		t.Fatalf("targets got %d and %d requests; want both some, 400 in all", a.requests.Load(), b.requests.Load())
	}
	pa, pb := a.policyCounts(), b.policyCounts()
	p7, p8 := pa[7]+pb[7], pa[8]+pb[8]
	if p7+p8 != 400 || p7-p8 > 4 || p8-p7 > 4 {
		t.Fatalf("policy 7: %d, policy 8: %d; want about 200 each", p7, p8)
	}
}

func TestOpenLoopPacing(t *testing.T) {
	srv := (&echoServer{}).start(t)
	var calls atomic.Int32
	const rate = 2000
	res := mustRun(t, Config{
		Targets: []string{srv.addr}, Conns: 4, Rate: rate, Duration: time.Second, Warmup: -1,
		Progress: func(Progress) { calls.Add(1) },
	})
	if res.Mode != "open" || res.LatencyUncorrected == nil {
		t.Fatalf("mode %q uncorrected %v; want open with uncorrected latency", res.Mode, res.LatencyUncorrected)
	}
	if res.AchievedRate < 0.85*rate || res.AchievedRate > 1.15*rate {
		t.Fatalf("achieved rate %.0f; want about %d", res.AchievedRate, rate)
	}
	if res.Sent < 0.85*rate || res.Sent > 1.15*rate || res.Replies != res.Sent {
		t.Fatalf("sent %d replies %d; want about %d, all answered", res.Sent, res.Replies, rate)
	}
	if len(res.Series) != 1 || res.Series[0].T != 1 || res.Series[0].Replies != res.Replies {
		t.Fatalf("series %+v; want one second holding the %d replies", res.Series, res.Replies)
	}
	if calls.Load() == 0 {
		t.Fatal("Progress never called")
	}
	checkJSON(t, res)
	checkHgrm(t, res)
	var sum bytes.Buffer
	res.WriteSummary(&sum)
	for _, want := range []string{"open loop", "corrected", "uncorrected", "msgs/s"} {
		if !strings.Contains(sum.String(), want) {
			t.Fatalf("summary lacks %q:\n%s", want, sum.String())
		}
	}
}

// TestCoordinatedOmission stalls one connection's replies once for 300ms.
// With one request in flight per connection (wrk2's model), the requests due
// during the stall wait to be sent: their corrected latency counts the wait,
// their uncorrected latency does not.
func TestCoordinatedOmission(t *testing.T) {
	const stall = 300 * time.Millisecond
	srv := (&echoServer{stallAt: 100, stallFor: stall}).start(t)
	res := mustRun(t, Config{Targets: []string{srv.addr}, Conns: 2, Pipeline: 1, Rate: 1000, Duration: time.Second, Warmup: -1})
	if len(res.Errors) != 0 {
		t.Fatalf("errors %v", res.Errors)
	}
	c, u := res.Latency, *res.LatencyUncorrected
	t.Logf("corrected %+v", c)
	t.Logf("uncorrected %+v", u)
	if c.Max < 0.95*float64(stall.Microseconds()) {
		t.Fatalf("corrected max %.0fµs; want at least the %v stall", c.Max, stall)
	}
	if c.P90 < 20000 {
		t.Fatalf("corrected p90 %.0fµs; want the ~15%% of requests due during the stall to show", c.P90)
	}
	if u.P50 > 20000 || u.P90 > 20000 {
		t.Fatalf("uncorrected p50 %.0fµs p90 %.0fµs; want them low", u.P50, u.P90)
	}
	if u.Max < 0.95*float64(stall.Microseconds()) {
		t.Fatalf("uncorrected max %.0fµs; want the stalled request itself", u.Max)
	}
}

func TestShortfallWarning(t *testing.T) {
	res := &Result{Mode: "open", Rate: 1000, AchievedRate: 800, Replies: 1, Errors: map[string]int64{}}
	var b bytes.Buffer
	res.WriteSummary(&b)
	if !strings.Contains(b.String(), "warning: achieved rate 800/s is 80% of the target 1000/s") {
		t.Fatalf("no shortfall warning:\n%s", b.String())
	}
	res.AchievedRate = 990
	if ws := res.Warnings(); len(ws) != 0 {
		t.Fatalf("warnings %q at 99%% of the target", ws)
	}
}

func TestClosedLoopJSON(t *testing.T) {
	srv := (&echoServer{}).start(t)
	res := mustRun(t, Config{Targets: []string{srv.addr}, Conns: 2, Pipeline: 2, Requests: 100, Warmup: -1, Policies: []int64{7}})
	m := checkJSON(t, res)
	if v, ok := m["latency_uncorrected_us"]; ok && v != nil {
		t.Fatalf("closed loop has latency_uncorrected_us %v", v)
	}
	if m["mode"] != "closed" || m["conns"] != 2.0 || m["pipeline"] != 2.0 || m["sent"] != 100.0 {
		t.Fatalf("document %v", m)
	}
	checkHgrm(t, res)
}

// checkJSON checks the document has exactly the schema's keys.
func checkJSON(t *testing.T, res *Result) map[string]any {
	t.Helper()
	var buf bytes.Buffer
	if err := res.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatalf("%v in %s", err, buf.Bytes())
	}
	want := []string{"schema", "targets", "mode", "conns", "pipeline", "rate", "size", "policies",
		"duration_s", "warmup_s", "sent", "replies", "errors", "throughput", "achieved_rate", "latency_us", "series"}
	if res.Mode == "open" {
		want = append(want, "latency_uncorrected_us")
	}
	if got := sortedKeys(m); strings.Join(got, " ") != strings.Join(sorted(want), " ") {
		t.Fatalf("keys %v; want %v", got, sorted(want))
	}
	if m["schema"] != "prism-bench/v1" {
		t.Fatalf("schema %v", m["schema"])
	}
	latKeys := "max mean min p50 p90 p99 p999 p9999"
	for _, k := range []string{"latency_us", "latency_uncorrected_us"} {
		if l, ok := m[k].(map[string]any); ok {
			if got := strings.Join(sortedKeys(l), " "); got != latKeys {
				t.Fatalf("%s keys %s; want %s", k, got, latKeys)
			}
		}
	}
	if _, ok := m["errors"].(map[string]any); !ok {
		t.Fatalf("errors is %T; want an object", m["errors"])
	}
	series, ok := m["series"].([]any)
	if !ok {
		t.Fatalf("series is %T; want an array", m["series"])
	}
	for _, s := range series {
		if got := strings.Join(sortedKeys(s.(map[string]any)), " "); got != "errors p50_us p99_us replies t" {
			t.Fatalf("series entry keys %s", got)
		}
	}
	return m
}

func sortedKeys(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return sorted(ks)
}

func sorted(s []string) []string {
	s = append([]string(nil), s...)
	sort.Strings(s)
	return s
}

// checkHgrm parses the .hgrm output: value, percentile, total count and
// 1/(1-percentile) columns, then the footer.
func checkHgrm(t *testing.T, res *Result) {
	t.Helper()
	var buf bytes.Buffer
	if err := res.WriteHgrm(&buf); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(&buf)
	var rows int
	var lastValue, lastPct float64
	var lastCount int64
	var footer bool
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "Value"):
		case strings.HasPrefix(line, "#[Mean"):
			footer = true
		case strings.HasPrefix(line, "#["):
		default:
			f := strings.Fields(line)
			if len(f) != 4 {
				t.Fatalf("hgrm row %q", line)
			}
			v, err1 := strconv.ParseFloat(f[0], 64)
			p, err2 := strconv.ParseFloat(f[1], 64)
			n, err3 := strconv.ParseInt(f[2], 10, 64)
			if err := errors.Join(err1, err2, err3); err != nil {
				t.Fatalf("hgrm row %q: %v", line, err)
			}
			if v < lastValue || p < lastPct || n < lastCount {
				t.Fatalf("hgrm row %q goes backwards", line)
			}
			lastValue, lastPct, lastCount = v, p, n
			rows++
		}
	}
	if rows < 2 || lastPct != 1 || lastCount != res.Replies || !footer {
		t.Fatalf("hgrm: %d rows, last percentile %v count %d (want 1, %d), footer %v", rows, lastPct, lastCount, res.Replies, footer)
	}
	// Values are milliseconds: the last row is the maximum.
	if want := res.Latency.Max / 1e3; lastValue < want*0.99 || lastValue > want*1.01 {
		t.Fatalf("hgrm max %vms; want %vms", lastValue, want)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no targets", Config{}},
		{"empty target", Config{Targets: []string{""}}},
		{"negative conns", Config{Targets: []string{"x:1"}, Conns: -1}},
		{"negative rate", Config{Targets: []string{"x:1"}, Rate: -5}},
		{"negative pipeline", Config{Targets: []string{"x:1"}, Pipeline: -1}},
		{"negative requests", Config{Targets: []string{"x:1"}, Requests: -1}},
		{"negative duration", Config{Targets: []string{"x:1"}, Duration: -time.Second}},
		{"huge size", Config{Targets: []string{"x:1"}, Size: 1 << 30}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Run(context.Background(), tt.cfg); !errors.Is(err, ErrConfig) {
				t.Fatalf("err = %v; want ErrConfig", err)
			}
		})
	}
}

func TestConnectFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	res, err := Run(context.Background(), Config{Targets: []string{addr}, Conns: 3, Requests: 10})
	if !errors.Is(err, ErrConnect) || res != nil {
		t.Fatalf("Run = %v, %v; want nil, ErrConnect", res, err)
	}
}

func TestCancel(t *testing.T) {
	srv := (&echoServer{}).start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { // cancel once the load is flowing
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for deadline := time.Now().Add(10 * time.Second); srv.requests.Load() < 500 && time.Now().Before(deadline); {
			<-tick.C
		}
		cancel()
	}()
	start := time.Now()
	res, err := Run(ctx, Config{Targets: []string{srv.addr}, Conns: 2, Pipeline: 2, Duration: time.Minute, Warmup: -1})
	if !errors.Is(err, context.Canceled) || res == nil {
		t.Fatalf("Run = %v, %v; want a result and context.Canceled", res, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Run returned %v after the start; want soon after the cancel", d)
	}
	if res.Replies == 0 || res.Sent != res.Replies || len(res.Errors) != 0 {
		t.Fatalf("sent %d replies %d errors %v; want the in-flight requests answered", res.Sent, res.Replies, res.Errors)
	}
}
