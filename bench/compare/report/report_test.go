package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prism-proxy/prism/bench/compare/results"
)

func synthetic() *results.File {
	f := &results.File{
		Schema: results.Schema,
		Machine: results.Machine{NProc: 2, CPUModel: "Test CPU 9000", Kernel: "6.1.0-test", GoVersion: "go1.26.8",
			Commit: "0123456789abcdef0123", HAProxy: "2.6.12", Nginx: "1.22.1", Date: "2025-01-01T00:00:00Z"},
		Settings: results.Settings{Duration: "10s", Warmup: "2s", Threads: 1, ProxyCPUs: "0-0", LoadCPUs: "1-1",
			IdleConns: 10000, SweepRef: "haproxy", SweepMax: 40000},
		Memory: []results.Memory{{Proxy: "prism", Target: 10000, Held: 10000, FDsIdle: 10010, RSSBeforeKB: 10240, RSSIdleKB: 30720, KBPerConn: 2.048}},
		Notes:  []string{"synthetic"},
	}
	tput := map[string]float64{"direct": 100000, "haproxy": 40000, "prism": 80000}
	for _, size := range []int{64, 4096} {
		for _, p := range []string{"direct", "haproxy", "prism"} {
			c := results.Case{Proxy: p, Case: results.CaseLabel(size, 1, 32), Group: results.GroupMatrix,
				Size: size, Pipeline: 1, Conns: 32, Mode: "closed", Throughput: tput[p] * 64 / float64(size),
				DurationS: 10, Latency: results.Latency{P50: 300, P90: 400, P99: 800, P999: 1500, P9999: 3000}}
			if p != "direct" {
				c.CPUPerMsgUS = 12.5
			}
			if p == "prism" && size == 4096 {
				c.Errors = map[string]int64{"overloaded": 5}
				c.CPUPerMsgUS = 5
			}
			f.Cases = append(f.Cases, c)
		}
	}
	for _, pct := range []int{25, 50, 75} {
		for _, p := range []string{"haproxy", "prism"} {
			f.Cases = append(f.Cases, results.Case{Proxy: p, Case: "sweep", Group: results.GroupSweep, SweepPct: pct,
				Size: 64, Pipeline: 16, Conns: 32, Mode: "open", Rate: 400 * float64(pct), Throughput: 400 * float64(pct),
				DurationS: 10, Latency: results.Latency{P50: 100 * float64(pct), P99: 200 * float64(pct)},
				Errors: map[string]int64{"timeout": int64(pct / 25)}})
		}
	}
	// Sweep labels carry the percentage, as the harness writes them.
	for i := range f.Cases {
		if f.Cases[i].Group == results.GroupSweep {
			f.Cases[i].Case = "sweep " + itoa(f.Cases[i].SweepPct) + "%"
		}
	}
	return f
}

func itoa(n int) string { return rate(float64(n)) }

func TestReport(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "results.json")
	if err := results.Write(in, synthetic()); err != nil {
		t.Fatal(err)
	}
	out, cp := filepath.Join(dir, "out"), filepath.Join(dir, "results")
	if err := run(in, out, cp, "png"); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(out, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(md)
	lines := strings.Split(text, "\n")
	if !strings.HasPrefix(lines[0], "# ") || !strings.Contains(lines[2], "2 CPUs, Test CPU 9000") || !strings.Contains(lines[3], "go1.26.8; commit 0123456789ab") {
		t.Fatalf("report does not start with machine, Go and commit:\n%s", strings.Join(lines[:5], "\n"))
	}
	for _, want := range []string{
		"| 64B/p1/c32 | 100,000 | 80,000 | 40,000 |", // overview: direct, Prism, HAProxy
		"| 4KiB/p1/c32 | 1,563 | 1,250 * | 625 |",    // flagged: errors
		"\\* some requests were answered with errors",
		"### 4KiB/p1/c32: 4KiB payload, pipeline 1, 32 connections",              // per-case heading
		"| Prism | 80,000 | 300 | 800 | 1500 | 12.50 | 0.80× | 2.00× | 0 |",      // ratios
		"| direct (no proxy) | 100,000 | 300 | 800 | 1500 | – | 1.00× | 2.50× |", // no CPU for direct
		"| HAProxy | 75% | 30,000 | 30,000 | 7500 | 15000 | – | – | 3 (timeout 3) |",
		"| Prism | 10000 | 10010 | 10.0 | 30.0 | 2.05 |  |",
		"![Throughput by case (closed loop)](compare-throughput.png)",
		"- synthetic",
		"| 64B/p1/c32 | 12.50 | 12.50 | – | 1.00× (HAProxy) | ≤ 0.80× | **no** |", // CPU goals
		"| 4KiB/p1/c32 | 5.00 | 12.50 | – | 0.40× (HAProxy) | ≤ 0.80× | yes |",
		"| sweep 25% | 5000 | 5000 | 1.00× | yes |", // open-loop p99 against HAProxy's
	} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(text)
	}
	for _, name := range []string{"report.md", "compare-throughput.png", "compare-latency.png", "compare-sweep.png"} {
		for _, d := range []string{out, cp} {
			st, err := os.Stat(filepath.Join(d, name))
			if err != nil || st.Size() < 100 {
				t.Errorf("%s/%s: %v (size %d)", d, name, err, sizeOf(st))
			}
		}
	}
}

func sizeOf(st os.FileInfo) int64 {
	if st == nil {
		return 0
	}
	return st.Size()
}

func TestFormat(t *testing.T) {
	tests := []struct {
		name, got, want string
	}{
		{"rate small", rate(999.4), "999"},
		{"rate thousands", rate(1234567.8), "1,234,568"},
		{"rate none", rate(0), "–"},
		{"us fraction", us(42.25), "42.2"},
		{"us whole", us(1234.5), "1234"},
		{"short", short(250000), "250k"},
		{"short M", short(2e6), "2M"},
		{"short small", short(500), "500"},
		{"ratio", ratio(&results.Case{Throughput: 50}, &results.Case{Throughput: 200}), "0.25×"},
		{"ratio no ref", ratio(&results.Case{Throughput: 50}, nil), "–"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Fatalf("got %q; want %q", tt.got, tt.want)
			}
		})
	}
}

func TestSVG(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "results.json")
	if err := results.Write(in, synthetic()); err != nil {
		t.Fatal(err)
	}
	if err := run(in, dir, "", "svg"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "compare-sweep.svg"))
	if err != nil || !strings.Contains(string(b), "<svg") {
		t.Fatalf("compare-sweep.svg: %v", err)
	}
}
