// Command report turns the results.json of bench/compare/run.sh into a
// markdown report (one table per case: msgs/s, p50, p99, p99.9, proxy CPU µs
// per message, ratio to direct and to HAProxy; the open-loop sweep; memory
// with idle connections) and three charts (throughput by case, latency
// percentiles by proxy, latency against offered rate). It measures nothing.
//
//	cd bench/compare && go run ./report -in ../out/results.json -out ../out -copy ../results
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/prism-proxy/prism/bench/compare/results"
)

func main() {
	fs := flag.NewFlagSet("report", flag.ExitOnError)
	in := fs.String("in", "bench/out/results.json", "results `file`")
	out := fs.String("out", "bench/out", "`dir` for report.md and the charts")
	cp := fs.String("copy", "", "also copy report.md and the charts to this `dir` (empty: no copy)")
	format := fs.String("format", "png", "chart format: png or svg")
	fs.Parse(os.Args[1:])
	if err := run(*in, *out, *cp, *format); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

func run(in, out, cp, format string) error {
	if format != "png" && format != "svg" {
		return fmt.Errorf("format %q: want png or svg", format)
	}
	f, err := results.Load(in)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	charts, err := Charts(f, out, format)
	if err != nil {
		return err
	}
	md := filepath.Join(out, "report.md")
	if err := os.WriteFile(md, Markdown(f, charts), 0o644); err != nil {
		return err
	}
	written := []string{md}
	for _, c := range charts {
		written = append(written, filepath.Join(out, c.File))
	}
	if cp == "" {
		return nil
	}
	if err := os.MkdirAll(cp, 0o755); err != nil {
		return err
	}
	for _, p := range written {
		if err := copyFile(p, filepath.Join(cp, filepath.Base(p))); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string) error {
	if a, err := filepath.Abs(src); err == nil {
		if b, err := filepath.Abs(dst); err == nil && a == b {
			return nil
		}
	}
	r, err := os.Open(src)
	if err != nil {
		return err
	}
	defer r.Close()
	w, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, r); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}
