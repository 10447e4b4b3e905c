package server

import (
	"encoding/json"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// AdminHandler serves the proxy's admin endpoints:
//
//	/metrics   Prometheus metrics (prism_* plus Go runtime and process)
//	/healthz   200 "ok" while serving, 503 "draining" during shutdown
//	/backends  the registered backends as JSON
func (p *Proxy) AdminHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(p.p.metrics, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if p.p.draining.Load() {
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/backends", func(w http.ResponseWriter, r *http.Request) {
		out := p.Backends()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(out)
	})
	return mux
}
