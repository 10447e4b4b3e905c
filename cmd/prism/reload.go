package main

import (
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/prism-proxy/prism/server"
)

// reloader applies the configuration again on SIGHUP: the file, the
// environment and the command line, layered as at start. What cannot change
// without a restart keeps its running value and is logged as such; a bad
// file keeps the running configuration and logs why.
type reloader struct {
	p      *server.Proxy
	args   []string
	admin  string     // the running admin address: a change needs a restart
	format formatFlag // the running log format: the same
	level  *slog.LevelVar
	logger *slog.Logger
	drainD atomic.Int64 // -drain, read by the signal handler
	done   chan struct{}
}

func newReloader(p *server.Proxy, args []string, pa proxyArgs, level *slog.LevelVar, logger *slog.Logger) *reloader {
	r := &reloader{p: p, args: args, admin: pa.admin, format: pa.logFmt, level: level, logger: logger, done: make(chan struct{})}
	r.drainD.Store(int64(pa.drain))
	return r
}

// drain is -drain as the last reload left it. Safe from any goroutine.
func (r *reloader) drain() time.Duration { return time.Duration(r.drainD.Load()) }

// stop ends reloadOnHangup.
func (r *reloader) stop() { close(r.done) }

// reloadOnHangup reloads on each signal of hup until r stops.
func reloadOnHangup(r *reloader, hup <-chan os.Signal) {
	for {
		select {
		case <-hup:
			r.reload()
		case <-r.done:
			return
		}
	}
}

// reload reads the configuration again and applies it.
func (r *reloader) reload() {
	pa, err := layerProxyArgs(r.args, os.LookupEnv)
	if err == nil {
		var restart []string
		restart, err = r.p.Reload(pa.cfg)
		if err == nil {
			if pa.admin != r.admin {
				restart = append(restart, "admin")
				pa.admin = r.admin
			}
			if pa.logFmt != r.format {
				restart = append(restart, "log-format")
				pa.logFmt = r.format
			}
			r.level.Set(pa.level())
			r.drainD.Store(int64(pa.drain))
			for _, name := range restart {
				r.logger.Warn("configuration: a changed setting needs a restart; the running value stays", "setting", name)
			}
			r.logger.Info("configuration reloaded", effectiveAttrs(pa, r.p.Config())...)
			return
		}
	}
	r.logger.Error("configuration not reloaded: the running one stays", "err", err)
}
