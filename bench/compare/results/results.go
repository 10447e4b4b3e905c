// Package results owns the file format of the comparison harness: the
// per-case records that bench/compare/harness writes, the combined
// results.json that bench/compare/report reads, and the subset of
// `prism bench -json` output (schema prism-bench/v1) that both need.
//
// It does no measuring and no rendering.
//
//	f, err := results.Load("bench/out/results.json")
//	for _, c := range f.Cases { fmt.Println(c.Proxy, c.Case, c.Throughput) }
package results

import (
	"encoding/json"
	"fmt"
	"github.com/prism-proxy/prism/bench/loadgen"
	"os"
	"strings"
)

// Schema names the format of results.json.
const Schema = "prism-compare/v1"

// Groups of cases.
const (
	GroupMatrix = "matrix" // closed loop, the payload × pipeline × conns matrix
	GroupSweep  = "sweep"  // open loop at a fraction of a reference maximum
)

// Proxy names as the harness writes them, in the order reports show them.
var Proxies = []string{"direct", "prism", "haproxy", "nginx", "naive"}

// File is results.json.
type File struct {
	Schema   string   `json:"schema"`
	Machine  Machine  `json:"machine"`
	Settings Settings `json:"settings"`
	Cases    []Case   `json:"cases"`
	Memory   []Memory `json:"memory"`
	Notes    []string `json:"notes,omitempty"`
}

// Machine records where the figures were measured.
type Machine struct {
	NProc     int    `json:"nproc"`
	CPUModel  string `json:"cpu_model"`
	Kernel    string `json:"kernel"`
	GoVersion string `json:"go_version"`
	Commit    string `json:"commit"`
	Dirty     bool   `json:"dirty"` // the work tree had uncommitted changes
	HAProxy   string `json:"haproxy_version"`
	Nginx     string `json:"nginx_version"`
	Date      string `json:"date"` // RFC 3339, UTC
}

// Settings records how the run was made.
type Settings struct {
	Duration  string   `json:"duration"` // per case, after warmup
	Warmup    string   `json:"warmup"`
	Quick     bool     `json:"quick"`
	Threads   int      `json:"threads"`    // proxy threads, loops or workers
	ProxyCPUs string   `json:"proxy_cpus"` // taskset list for the proxies
	LoadCPUs  string   `json:"load_cpus"`  // taskset list for load generator and backends
	IdleConns int      `json:"idle_conns"` // the memory case's target
	Proxies   []string `json:"proxies"`
	SweepRef  string   `json:"sweep_ref"` // proxy whose maximum the sweep rates are fractions of
	SweepMax  float64  `json:"sweep_max"` // that maximum, msgs/s
	// SweepPipeline caps the requests in flight per connection in the sweep.
	SweepPipeline int `json:"sweep_pipeline"`
}

// Case is one measurement of one proxy, written by `harness case`.
type Case struct {
	Proxy    string `json:"proxy"`
	Case     string `json:"case"`  // label: "64B/p1/c32", "sweep 25%"
	Group    string `json:"group"` // GroupMatrix or GroupSweep
	SweepPct int    `json:"sweep_pct,omitempty"`

	Size     int     `json:"size"`
	Pipeline int     `json:"pipeline"`
	Conns    int     `json:"conns"`
	Rate     float64 `json:"rate"` // target msgs/s; 0 in closed loop
	Mode     string  `json:"mode"`

	Sent         int64            `json:"sent"`
	Replies      int64            `json:"replies"`
	Errors       map[string]int64 `json:"errors,omitempty"`
	Throughput   float64          `json:"throughput"`
	AchievedRate float64          `json:"achieved_rate"`
	DurationS    float64          `json:"duration_s"`
	Latency      Latency          `json:"latency_us"`

	// ProxyCPUS is the proxy processes' user+system CPU seconds between the
	// end of warmup and the end of the run, over CPUWindowS wall seconds.
	ProxyCPUS  float64 `json:"proxy_cpu_s"`
	CPUWindowS float64 `json:"cpu_window_s"`
	// CPUPerMsgUS is ProxyCPUS per reply of the window, in µs; 0 with no proxy.
	CPUPerMsgUS float64 `json:"cpu_us_per_msg"`
	// LoadgenCPUS is the load generator's own CPU seconds, warmup included.
	LoadgenCPUS float64 `json:"loadgen_cpu_s"`

	Bench json.RawMessage `json:"bench"` // the load generator's output, verbatim
}

// ErrorCount is the sum of Errors.
func (c *Case) ErrorCount() int64 {
	var n int64
	for _, v := range c.Errors {
		n += v
	}
	return n
}

// Latency holds latency statistics in microseconds: the load generator's own.
type Latency = loadgen.Latency

// Memory is the idle-connection memory case of one proxy.
type Memory struct {
	Proxy       string  `json:"proxy"`
	Target      int     `json:"target"` // connections asked for
	Held        int     `json:"held"`   // connections the client side established
	FDsBefore   int     `json:"proxy_fds_before"`
	FDsIdle     int     `json:"proxy_fds_idle"` // open files of the proxy processes with them held
	RSSBeforeKB int64   `json:"rss_before_kb"`
	RSSIdleKB   int64   `json:"rss_idle_kb"`
	KBPerConn   float64 `json:"kb_per_conn"` // (RSSIdleKB-RSSBeforeKB)/Held
	Note        string  `json:"note,omitempty"`
}

// Bench is the part of a `prism bench -json` report the harness reads.
type Bench struct {
	Schema       string           `json:"schema"`
	Targets      []string         `json:"targets"`
	Mode         string           `json:"mode"`
	Conns        int              `json:"conns"`
	Pipeline     int              `json:"pipeline"`
	Rate         float64          `json:"rate"`
	Size         int              `json:"size"`
	DurationS    float64          `json:"duration_s"`
	WarmupS      float64          `json:"warmup_s"`
	Sent         int64            `json:"sent"`
	Replies      int64            `json:"replies"`
	Errors       map[string]int64 `json:"errors"`
	Throughput   float64          `json:"throughput"`
	AchievedRate float64          `json:"achieved_rate"`
	Latency      Latency          `json:"latency_us"`
}

// BenchSchema is the schema the harness understands.
const BenchSchema = "prism-bench/v1"

// ParseBench decodes a load generator report.
func ParseBench(b []byte) (Bench, error) {
	var r Bench
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("results: bench output: %w", err)
	}
	if r.Schema != BenchSchema {
		return r, fmt.Errorf("results: bench output has schema %q; want %q", r.Schema, BenchSchema)
	}
	return r, nil
}

// CaseLabel is the label of a matrix case: "64B/p1/c32", "4KiB/p16/c1000".
func CaseLabel(size, pipeline, conns int) string {
	return fmt.Sprintf("%s/p%d/c%d", SizeLabel(size), pipeline, conns)
}

// SizeLabel writes a payload size the way the tables do.
func SizeLabel(size int) string {
	if size >= 1024 && size%1024 == 0 {
		return fmt.Sprintf("%dKiB", size/1024)
	}
	return fmt.Sprintf("%dB", size)
}

// Load reads a results.json.
func Load(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f File
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("results: %s: %w", path, err)
	}
	if !strings.HasPrefix(f.Schema, "prism-compare/") {
		return nil, fmt.Errorf("results: %s has schema %q; want %s", path, f.Schema, Schema)
	}
	return &f, nil
}

// Write writes v as indented JSON to path.
func Write(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
