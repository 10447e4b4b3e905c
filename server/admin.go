package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/pprof"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// AdminHandler serves the proxy's admin endpoints:
//
//	/metrics       Prometheus metrics (prism_* plus Go runtime and process)
//	/healthz       200 "ok" while serving, 503 "draining" during shutdown
//	/readyz        200 "ready" once listening with the backends Config.ReadyMinBackends
//	               and Config.ReadyPolicies ask for; 503 with the reason otherwise;
//	               200 "ready; degraded: REASON" while the fleet registry is unreachable
//	/backends      the registered backends as JSON
//	/debug/pprof/  the runtime profiles (net/http/pprof), on this handler only
//
// The handler is safe from any goroutine.
func (p *Proxy) AdminHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(p.p.metrics, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(buildInfoMetric()) // prism_build_info
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if p.p.draining.Load() {
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if why := p.NotReady(); why != "" {
			http.Error(w, why, http.StatusServiceUnavailable)
			return
		}
		if why := p.Degraded(); why != "" {
			w.Write([]byte("ready; degraded: " + why + "\n"))
			return
		}
		w.Write([]byte("ready\n"))
	})
	mux.HandleFunc("/backends", func(w http.ResponseWriter, r *http.Request) {
		out := p.Backends()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(out)
	})
	// Not http.DefaultServeMux: nothing else registered there is served.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// NotReady returns why the proxy should not get traffic yet, or "" when it
// is ready: it listens, does not drain, and the registered backends meet
// Config.ReadyMinBackends and Config.ReadyPolicies. Safe from any goroutine.
func (p *Proxy) NotReady() string {
	px := p.p
	select {
	case <-px.done:
		return "stopped"
	default:
	}
	select {
	case <-px.booted:
	default:
		return "not listening yet"
	}
	if px.draining.Load() {
		return "draining"
	}
	cfg := &px.live.Load().cfg // Reload may change them
	need := max(cfg.ReadyMinBackends, 0)
	count := map[int64]int{}
	for _, b := range px.registry.Backends() {
		count[b.Policy]++
	}
	if pols, _ := parsePolicies(cfg.ReadyPolicies); len(pols) > 0 { // resolve checked it
		for _, pol := range pols {
			if n := count[pol]; n < max(need, 1) {
				return "policy " + itoa(pol) + " has " + strconv.Itoa(n) + " backends; needs " + strconv.Itoa(max(need, 1))
			}
		}
		return ""
	}
	if need == 0 {
		return ""
	}
	if len(count) == 0 {
		return "no backend registered; needs " + strconv.Itoa(need) + " per policy"
	}
	pols := make([]int64, 0, len(count))
	for pol := range count {
		pols = append(pols, pol)
	}
	slices.Sort(pols)
	for _, pol := range pols {
		if n := count[pol]; n < need {
			return "policy " + itoa(pol) + " has " + strconv.Itoa(n) + " backends; needs " + strconv.Itoa(need)
		}
	}
	return ""
}

// Degraded returns why the proxy serves with less than it should while
// being ready, or "": the fleet registry (Config.Registry) unreachable.
// It serves then with the last table it knew and its own registrations,
// which is why /readyz still answers 200. Safe from any goroutine.
func (p *Proxy) Degraded() string {
	if on, up, why, _ := p.p.fleetStatus(); on && !up {
		return why
	}
	return ""
}

// parsePolicies parses Config.ReadyPolicies: comma-separated policy ids.
func parsePolicies(list string) ([]int64, error) {
	var out []int64
	for _, f := range strings.Split(list, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("server: ReadyPolicies: %q is not a policy id", f)
		}
		out = append(out, n)
	}
	return out, nil
}
