package server

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/prism-proxy/prism/internal/buildinfo"
)

// buildInfoMetric is the prism_build_info gauge: always 1, its labels say
// what runs.
func buildInfoMetric() prometheus.Collector {
	bi := buildinfo.Read()
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "prism_build_info",
		Help: "The running binary's version, commit and Go version; always 1.",
	}, []string{"version", "commit", "goversion"})
	g.WithLabelValues(bi.Version, bi.Commit, bi.GoVersion).Set(1)
	return g
}
