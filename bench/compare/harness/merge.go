package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/prism-proxy/prism/bench/compare/results"
)

// mergeCmd combines the case and memory records of a run with a description
// of the machine into results.json.
func mergeCmd(args []string) error {
	fs := flag.NewFlagSet("merge", flag.ContinueOnError)
	casesDir := fs.String("cases", "bench/out/cases", "`dir` of case records")
	memDir := fs.String("mem", "bench/out/mem", "`dir` of memory records")
	out := fs.String("out", "bench/out/results.json", "output `file`")
	f := results.File{Schema: results.Schema}
	m, s := &f.Machine, &f.Settings
	fs.IntVar(&m.NProc, "nproc", runtime.NumCPU(), "CPUs of the machine (nproc)")
	fs.StringVar(&m.GoVersion, "go", runtime.Version(), "Go version that built the binaries")
	fs.StringVar(&m.Commit, "commit", "", "git commit of the repository")
	fs.BoolVar(&m.Dirty, "dirty", false, "the work tree had uncommitted changes")
	fs.StringVar(&m.HAProxy, "haproxy", "", "HAProxy version")
	fs.StringVar(&m.Nginx, "nginx", "", "nginx version")
	fs.StringVar(&s.Duration, "duration", "", "case duration")
	fs.StringVar(&s.Warmup, "warmup", "", "case warmup")
	fs.BoolVar(&s.Quick, "quick", false, "reduced matrix")
	fs.IntVar(&s.Threads, "threads", 1, "proxy threads")
	fs.StringVar(&s.ProxyCPUs, "proxy-cpus", "", "CPUs of the proxies")
	fs.StringVar(&s.LoadCPUs, "load-cpus", "", "CPUs of load generator and backends")
	fs.IntVar(&s.IdleConns, "idle", 0, "idle connections of the memory case")
	proxies := fs.String("proxies", "", "space-separated proxies measured")
	fs.StringVar(&s.SweepRef, "sweep-ref", "", "reference proxy of the sweep")
	fs.Float64Var(&s.SweepMax, "sweep-max", 0, "its maximum, msgs/s")
	fs.IntVar(&s.SweepPipeline, "sweep-pipeline", 0, "requests in flight per connection allowed in the sweep")
	notes := fs.String("notes", "", "`file` of notes, one a line")
	if err := fs.Parse(args); err != nil {
		return err
	}
	s.Proxies = strings.Fields(*proxies)
	m.CPUModel = cpuModel()
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	m.Date = time.Now().UTC().Format(time.RFC3339)
	if *notes != "" {
		if b, err := os.ReadFile(*notes); err == nil {
			for _, l := range strings.Split(string(b), "\n") {
				if l = strings.TrimSpace(l); l != "" {
					f.Notes = append(f.Notes, l)
				}
			}
		}
	}

	files, _ := filepath.Glob(filepath.Join(*casesDir, "*.json"))
	for _, p := range files {
		var c results.Case
		if err := readJSON(p, &c); err != nil {
			return err
		}
		f.Cases = append(f.Cases, c)
	}
	files, _ = filepath.Glob(filepath.Join(*memDir, "*.json"))
	for _, p := range files {
		var mem results.Memory
		if err := readJSON(p, &mem); err != nil {
			return err
		}
		f.Memory = append(f.Memory, mem)
	}
	slices.SortStableFunc(f.Cases, func(a, b results.Case) int {
		if a.Group != b.Group {
			return strings.Compare(a.Group, b.Group) // matrix before sweep
		}
		for _, d := range []int{a.Size - b.Size, a.Pipeline - b.Pipeline, a.Conns - b.Conns, a.SweepPct - b.SweepPct, proxyRank(a.Proxy) - proxyRank(b.Proxy)} {
			if d != 0 {
				return d
			}
		}
		return 0
	})
	slices.SortStableFunc(f.Memory, func(a, b results.Memory) int { return proxyRank(a.Proxy) - proxyRank(b.Proxy) })
	fmt.Fprintf(os.Stderr, "%s: %d cases, %d memory records\n", *out, len(f.Cases), len(f.Memory))
	return results.Write(*out, f)
}

func proxyRank(p string) int {
	if i := slices.Index(results.Proxies, p); i >= 0 {
		return i
	}
	return len(results.Proxies)
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
