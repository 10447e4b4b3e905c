package main

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/prism-proxy/prism/bench/compare/results"
)

// displayNames are the proxies as tables name them.
var displayNames = map[string]string{
	"direct":  "direct (no proxy)",
	"prism":   "Prism",
	"haproxy": "HAProxy",
	"nginx":   "nginx",
	"naive":   "naive Go proxy",
}

func display(p string) string {
	if d, ok := displayNames[p]; ok {
		return d
	}
	return p
}

// index groups the cases of one group by label, labels in file order.
type index struct {
	labels  []string
	proxies []string // in results.Proxies order, then others as met
	by      map[string]map[string]*results.Case
}

func newIndex(f *results.File, group string) *index {
	ix := &index{by: map[string]map[string]*results.Case{}}
	seen := map[string]bool{}
	for i := range f.Cases {
		c := &f.Cases[i]
		if c.Group != group {
			continue
		}
		if ix.by[c.Case] == nil {
			ix.by[c.Case] = map[string]*results.Case{}
			ix.labels = append(ix.labels, c.Case)
		}
		ix.by[c.Case][c.Proxy] = c
		seen[c.Proxy] = true
	}
	ix.proxies = orderProxies(seen)
	return ix
}

func orderProxies(seen map[string]bool) []string {
	var ps []string
	for _, p := range results.Proxies {
		if seen[p] {
			ps = append(ps, p)
		}
	}
	var other []string
	for p := range seen {
		if !slices.Contains(results.Proxies, p) {
			other = append(other, p)
		}
	}
	slices.Sort(other)
	return append(ps, other...)
}

// Markdown renders the report. charts are listed at the end.
func Markdown(f *results.File, charts []Chart) []byte {
	var b bytes.Buffer
	m, s := f.Machine, f.Settings
	b.WriteString("# Prism compared with HAProxy, nginx and a naive Go proxy\n\n")
	fmt.Fprintf(&b, "- Machine: %d CPUs, %s, Linux %s\n", m.NProc, orDash(m.CPUModel), orDash(m.Kernel))
	commit := orDash(m.Commit)
	if len(commit) > 12 {
		commit = commit[:12]
	}
	if m.Dirty {
		commit += " (with uncommitted changes)"
	}
	fmt.Fprintf(&b, "- Go: %s; commit %s\n", orDash(m.GoVersion), commit)
	fmt.Fprintf(&b, "- HAProxy %s; nginx %s; measured %s\n", orDash(m.HAProxy), orDash(m.Nginx), orDash(m.Date))
	fmt.Fprintf(&b, "- Proxies on CPU %s with %d thread (Prism event loops, HAProxy nbthread, nginx workers, naive GOMAXPROCS); load generator (`prism bench`) and the two echo backends on CPU %s\n",
		orDash(s.ProxyCPUs), s.Threads, orDash(s.LoadCPUs))
	quick := ""
	if s.Quick {
		quick = " QUICK run: reduced matrix, short cases: a smoke test, not figures to quote."
	}
	fmt.Fprintf(&b, "- Each case: %s measured after %s warmup.%s\n", orDash(s.Duration), orDash(s.Warmup), quick)
	b.WriteString("- Reproduce: `bench/compare/run.sh` (`QUICK=1` for a smoke run).\n\n")
	b.WriteString("CPU µs/msg is the proxy process's user+system time over the measured window divided by the replies in it. " +
		"× direct and × HAProxy are msgs/s ratios for the same case. Latencies are in µs, measured by the load generator.\n\n")

	mx := newIndex(f, results.GroupMatrix)
	if len(mx.labels) > 0 {
		b.WriteString("## Throughput, msgs/s (closed loop)\n\n")
		flagged := false
		b.WriteString("| case |")
		for _, p := range mx.proxies {
			fmt.Fprintf(&b, " %s |", display(p))
		}
		b.WriteString("\n|---|" + strings.Repeat("---:|", len(mx.proxies)) + "\n")
		for _, l := range mx.labels {
			fmt.Fprintf(&b, "| %s |", l)
			for _, p := range mx.proxies {
				if c := mx.by[l][p]; c != nil {
					mark := ""
					if c.ErrorCount() > 0 {
						mark, flagged = " *", true
					}
					fmt.Fprintf(&b, " %s%s |", rate(c.Throughput), mark)
				} else {
					b.WriteString(" – |")
				}
			}
			b.WriteString("\n")
		}
		if flagged {
			b.WriteString("\n\\* some requests were answered with errors: see the case's table.\n")
		}
		b.WriteString("\n## Per case (closed loop)\n")
		for _, l := range mx.labels {
			fmt.Fprintf(&b, "\n### %s\n\n", describe(mx.by[l]))
			b.WriteString("| proxy | msgs/s | p50 µs | p99 µs | p99.9 µs | CPU µs/msg | × direct | × HAProxy | errors |\n")
			b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
			for _, p := range mx.proxies {
				c := mx.by[l][p]
				if c == nil {
					continue
				}
				fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", display(p), rate(c.Throughput),
					us(c.Latency.P50), us(c.Latency.P99), us(c.Latency.P999), cpu(c),
					ratio(c, mx.by[l]["direct"]), ratio(c, mx.by[l]["haproxy"]), errs(c))
			}
		}
	}

	sw := newIndex(f, results.GroupSweep)
	if len(sw.labels) > 0 {
		b.WriteString("\n## Fixed-rate sweep (open loop)\n\n")
		fmt.Fprintf(&b, "64 B payload, 32 connections, at most %d requests in flight per connection. "+
			"Offered rates are fractions of %s's closed-loop maximum for 64B/p1/c32 (%s msgs/s). "+
			"Latency is measured from each request's intended send time, so queueing behind a slow proxy counts.\n\n",
			s.SweepPipeline, display(orDash(s.SweepRef)), rate(s.SweepMax))
		b.WriteString("| proxy | offered | offered msgs/s | achieved msgs/s | p50 µs | p99 µs | p99.9 µs | CPU µs/msg | errors |\n")
		b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, p := range sw.proxies {
			for _, l := range sw.labels {
				c := sw.by[l][p]
				if c == nil {
					continue
				}
				fmt.Fprintf(&b, "| %s | %d%% | %s | %s | %s | %s | %s | %s | %s |\n", display(p), c.SweepPct, rate(c.Rate),
					rate(c.Throughput), us(c.Latency.P50), us(c.Latency.P99), us(c.Latency.P999), cpu(c), errs(c))
			}
		}
	}

	cpuGoals(&b, mx, sw)

	if len(f.Memory) > 0 {
		b.WriteString("\n## Memory with idle client connections\n\n")
		b.WriteString("RSS (VmRSS) of the proxy processes before and while holding idle client connections that sent nothing.\n\n")
		b.WriteString("| proxy | idle conns | proxy open files | RSS before MiB | RSS idle MiB | KiB per conn | note |\n")
		b.WriteString("|---|---:|---:|---:|---:|---:|---|\n")
		for _, mem := range f.Memory {
			fmt.Fprintf(&b, "| %s | %d | %d | %.1f | %.1f | %.2f | %s |\n", display(mem.Proxy), mem.Held, mem.FDsIdle,
				float64(mem.RSSBeforeKB)/1024, float64(mem.RSSIdleKB)/1024, mem.KBPerConn, mem.Note)
		}
	}

	if len(charts) > 0 {
		b.WriteString("\n## Charts\n\n")
		for _, c := range charts {
			fmt.Fprintf(&b, "![%s](%s)\n\n", c.Title, c.File)
		}
	}
	if len(f.Notes) > 0 {
		b.WriteString("\n## Notes\n\n")
		for _, n := range f.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	return b.Bytes()
}

// describe names a matrix case in words.
func describe(by map[string]*results.Case) string {
	for _, c := range by {
		return fmt.Sprintf("%s: %s payload, pipeline %d, %d connections", c.Case, results.SizeLabel(c.Size), c.Pipeline, c.Conns)
	}
	return ""
}

func orDash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

// rate formats msgs/s with thousands separators.
func rate(v float64) string {
	if v <= 0 || math.IsNaN(v) {
		return "–"
	}
	s := strconv.FormatInt(int64(math.Round(v)), 10)
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

func us(v float64) string {
	switch {
	case v <= 0:
		return "–"
	case v < 100:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
}

func cpu(c *results.Case) string {
	if c.CPUPerMsgUS <= 0 {
		return "–"
	}
	return strconv.FormatFloat(c.CPUPerMsgUS, 'f', 2, 64)
}

func ratio(c, ref *results.Case) string {
	if ref == nil || ref.Throughput <= 0 || c.Throughput <= 0 {
		return "–"
	}
	return strconv.FormatFloat(c.Throughput/ref.Throughput, 'f', 2, 64) + "×"
}

func errs(c *results.Case) string {
	n := c.ErrorCount()
	if n == 0 {
		return "0"
	}
	keys := make([]string, 0, len(c.Errors))
	for k := range c.Errors {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		if c.Errors[k] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", k, c.Errors[k]))
		}
	}
	return strconv.FormatInt(n, 10) + " (" + strings.Join(parts, ", ") + ")"
}

// Goals for Prism's CPU per message, as ratios to the lower of HAProxy's
// and nginx's in the same run: closed loop and open loop.
const (
	goalClosed = 0.80
	goalOpen   = 1.00
)

// cpuGoals renders Prism's CPU per message against HAProxy's and nginx's,
// and the open-loop p99 against HAProxy's, with the goal each case has and
// whether it is met. Nothing when Prism or both references are missing.
func cpuGoals(b *bytes.Buffer, mx, sw *index) {
	type row struct {
		label string
		cases map[string]*results.Case
		goal  float64
	}
	var rows []row
	for _, l := range mx.labels {
		rows = append(rows, row{l, mx.by[l], goalClosed})
	}
	for _, l := range sw.labels {
		rows = append(rows, row{l, sw.by[l], goalOpen})
	}
	header := false
	for _, r := range rows {
		pr := r.cases["prism"]
		ref, refName := lowerCPU(r.cases["haproxy"], r.cases["nginx"])
		if pr == nil || pr.CPUPerMsgUS <= 0 || ref == nil {
			continue
		}
		if !header {
			header = true
			b.WriteString("\n## CPU per message against the goals\n\n")
			fmt.Fprintf(b, "Prism's CPU µs per message divided by the lower of HAProxy's and nginx's in the same case of this run. "+
				"Goals: at most %.2f× in every closed-loop case, at most %.2f× at every open-loop point, "+
				"and an open-loop p99 no higher than HAProxy's.\n\n", goalClosed, goalOpen)
			b.WriteString("| case | Prism | HAProxy | nginx | Prism ÷ lower | goal | met |\n")
			b.WriteString("|---|---:|---:|---:|---:|---:|---|\n")
		}
		x := pr.CPUPerMsgUS / ref.CPUPerMsgUS
		fmt.Fprintf(b, "| %s | %s | %s | %s | %.2f× (%s) | ≤ %.2f× | %s |\n", r.label, cpu(pr),
			cpuOf(r.cases["haproxy"]), cpuOf(r.cases["nginx"]), x, display(refName), r.goal, yesNo(x <= r.goal))
	}
	header = false
	for _, l := range sw.labels {
		pr, hp := sw.by[l]["prism"], sw.by[l]["haproxy"]
		if pr == nil || hp == nil {
			continue
		}
		if !header {
			header = true
			b.WriteString("\n| open-loop p99 | Prism µs | HAProxy µs | Prism ÷ HAProxy | met |\n|---|---:|---:|---:|---|\n")
		}
		x := pr.Latency.P99 / hp.Latency.P99
		fmt.Fprintf(b, "| %s | %s | %s | %.2f× | %s |\n", l, us(pr.Latency.P99), us(hp.Latency.P99), x, yesNo(x <= 1))
	}
}

// lowerCPU returns whichever of a and b spent less CPU per message.
func lowerCPU(a, b *results.Case) (*results.Case, string) {
	ok := func(c *results.Case) bool { return c != nil && c.CPUPerMsgUS > 0 }
	switch {
	case ok(a) && (!ok(b) || a.CPUPerMsgUS <= b.CPUPerMsgUS):
		return a, a.Proxy
	case ok(b):
		return b, b.Proxy
	}
	return nil, ""
}

func cpuOf(c *results.Case) string {
	if c == nil {
		return "–"
	}
	return cpu(c)
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}
