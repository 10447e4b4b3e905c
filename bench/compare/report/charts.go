package main

import (
	"image/color"
	"math"
	"path/filepath"
	"slices"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/prism-proxy/prism/bench/compare/results"
)

// Chart is one chart written next to the report.
type Chart struct {
	File  string // base name
	Title string
}

// latencyCase is the case whose percentiles the latency chart shows.
const latencyCase = "64B/p1/c32"

// Charts draws the charts that f has data for into dir and returns them.
func Charts(f *results.File, dir, ext string) ([]Chart, error) {
	var charts []Chart
	add := func(name, title string, p *plot.Plot, w, h vg.Length) error {
		file := name + "." + ext
		if err := p.Save(w, h, filepath.Join(dir, file)); err != nil {
			return err
		}
		charts = append(charts, Chart{File: file, Title: title})
		return nil
	}
	mx := newIndex(f, results.GroupMatrix)
	if len(mx.labels) > 0 {
		p, err := throughputChart(mx)
		if err != nil {
			return nil, err
		}
		if err := add("compare-throughput", "Throughput by case (closed loop)", p, 11*vg.Inch, 5*vg.Inch); err != nil {
			return nil, err
		}
		label := latencyCase
		if mx.by[label] == nil {
			label = mx.labels[0]
		}
		p, err = percentileChart(mx, label)
		if err != nil {
			return nil, err
		}
		if err := add("compare-latency", "Latency percentiles by proxy, "+label, p, 8*vg.Inch, 5*vg.Inch); err != nil {
			return nil, err
		}
	}
	sw := newIndex(f, results.GroupSweep)
	if len(sw.labels) > 0 {
		p, err := sweepChart(sw)
		if err != nil {
			return nil, err
		}
		if err := add("compare-sweep", "Latency against offered rate (open loop)", p, 8*vg.Inch, 5*vg.Inch); err != nil {
			return nil, err
		}
	}
	return charts, nil
}

func newPlot(title, x, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = x
	p.Y.Label.Text = y
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	return p
}

func throughputChart(ix *index) (*plot.Plot, error) {
	p := newPlot("Throughput by case (closed loop; size/pipeline/connections)", "", "msgs/s")
	n := len(ix.proxies)
	// Bars of one case take three quarters of its slot on the 11-inch chart.
	w := vg.Length(9.5/float64(len(ix.labels))*0.75/float64(n)) * vg.Inch
	w = min(w, 12*vg.Millimeter)
	top := 0.0
	for i, px := range ix.proxies {
		vals := make(plotter.Values, len(ix.labels))
		for j, l := range ix.labels {
			if c := ix.by[l][px]; c != nil {
				vals[j] = c.Throughput
				top = max(top, c.Throughput)
			}
		}
		bars, err := plotter.NewBarChart(vals, w)
		if err != nil {
			return nil, err
		}
		bars.LineStyle.Width = 0
		bars.Color = proxyColor(px)
		bars.Offset = w * vg.Length(float64(i)-float64(n-1)/2)
		p.Add(bars)
		p.Legend.Add(display(px), bars)
	}
	p.NominalX(ix.labels...)
	p.Y.Tick.Marker = shortTicks{plot.DefaultTicks{}}
	p.X.Min, p.X.Max = -0.5, float64(len(ix.labels))-0.5
	p.Y.Min, p.Y.Max = 0, top*1.25 // room for the legend
	return p, nil
}

// proxyColor gives each proxy the same color in every chart.
func proxyColor(px string) color.Color {
	if i := slices.Index(results.Proxies, px); i >= 0 {
		return plotutil.Color(i)
	}
	return plotutil.Color(len(results.Proxies))
}

var percentiles = []struct {
	name string
	get  func(results.Latency) float64
}{
	{"p50", func(l results.Latency) float64 { return l.P50 }},
	{"p90", func(l results.Latency) float64 { return l.P90 }},
	{"p99", func(l results.Latency) float64 { return l.P99 }},
	{"p99.9", func(l results.Latency) float64 { return l.P999 }},
	{"p99.99", func(l results.Latency) float64 { return l.P9999 }},
}

func percentileChart(ix *index, label string) (*plot.Plot, error) {
	p := newPlot("Latency percentiles, "+label+" (closed loop)", "percentile", "latency µs (log)")
	logY(p)
	names := make([]string, len(percentiles))
	for i, pc := range percentiles {
		names[i] = pc.name
	}
	for _, px := range ix.proxies {
		c := ix.by[label][px]
		if c == nil {
			continue
		}
		var xys plotter.XYs
		for j, pc := range percentiles {
			if v := pc.get(c.Latency); v > 0 {
				xys = append(xys, plotter.XY{X: float64(j), Y: v})
			}
		}
		if len(xys) == 0 {
			continue
		}
		if err := addLine(p, display(px), xys, px, false); err != nil {
			return nil, err
		}
	}
	p.NominalX(names...)
	p.X.Min, p.X.Max = -0.2, float64(len(names))-0.8
	p.Legend.Left = true // latency grows to the right
	return p, nil
}

func sweepChart(ix *index) (*plot.Plot, error) {
	p := newPlot("Latency against offered rate (open loop; solid p99, dashed p50)", "offered msgs/s", "latency µs (log)")
	logY(p)
	for _, px := range ix.proxies {
		var cs []*results.Case
		for _, l := range ix.labels {
			if c := ix.by[l][px]; c != nil && c.Rate > 0 {
				cs = append(cs, c)
			}
		}
		slices.SortFunc(cs, func(a, b *results.Case) int { return int(a.Rate - b.Rate) })
		var p99, p50 plotter.XYs
		for _, c := range cs {
			if c.Latency.P99 > 0 {
				p99 = append(p99, plotter.XY{X: c.Rate, Y: c.Latency.P99})
			}
			if c.Latency.P50 > 0 {
				p50 = append(p50, plotter.XY{X: c.Rate, Y: c.Latency.P50})
			}
		}
		if len(p99) > 0 {
			if err := addLine(p, display(px), p99, px, false); err != nil {
				return nil, err
			}
		}
		if len(p50) > 0 {
			if err := addLine(p, "", p50, px, true); err != nil {
				return nil, err
			}
		}
	}
	p.X.Min = 0
	p.X.Tick.Marker = shortTicks{plot.DefaultTicks{}}
	p.X.Max *= 1.05      // keep the last points off the edge
	p.Legend.Left = true // latency grows with the rate
	return p, nil
}

// addLine adds a line with point marks in the proxy's color; an empty name
// keeps it out of the legend.
func addLine(p *plot.Plot, name string, xys plotter.XYs, px string, dashed bool) error {
	l, s, err := plotter.NewLinePoints(xys)
	if err != nil {
		return err
	}
	l.Color = proxyColor(px)
	l.Width = vg.Points(1.5)
	if dashed {
		l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	}
	s.Color = proxyColor(px)
	s.Shape = draw.CircleGlyph{}
	s.Radius = vg.Points(2.5)
	p.Add(l, s)
	if name != "" {
		p.Legend.Add(name, l, s)
	}
	return nil
}

// logY makes the Y axis logarithmic; the plotted values are all positive.
func logY(p *plot.Plot) {
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = logTicks{}
}

// logTicks labels 1, 2 and 5 of each decade, which plot.LogTicks does not:
// latencies often span less than one decade.
type logTicks struct{}

func (logTicks) Ticks(lo, hi float64) []plot.Tick {
	var ticks []plot.Tick
	for d := math.Pow10(int(math.Floor(math.Log10(lo)))); d <= hi; d *= 10 {
		for m := 1; m < 10; m++ {
			v := d * float64(m)
			if v < lo || v > hi {
				continue
			}
			t := plot.Tick{Value: v}
			if m == 1 || m == 2 || m == 5 {
				t.Label = short(v)
			}
			ticks = append(ticks, t)
		}
	}
	return ticks
}

// shortTicks relabels another ticker's ticks the short way.
type shortTicks struct{ plot.Ticker }

func (t shortTicks) Ticks(lo, hi float64) []plot.Tick {
	ticks := t.Ticker.Ticks(lo, hi)
	for i := range ticks {
		if ticks[i].Label != "" {
			ticks[i].Label = short(ticks[i].Value)
		}
	}
	return ticks
}

// short writes 250000 as 250k and 2000000 as 2M.
func short(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', -1, 64) + "M"
	case a >= 1e3:
		return strconv.FormatFloat(v/1e3, 'f', -1, 64) + "k"
	default:
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
}
