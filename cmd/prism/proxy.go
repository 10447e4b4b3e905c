package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"golang.org/x/net/netutil"

	"github.com/prism-proxy/prism/server"

	"github.com/prism-proxy/prism/internal/flagx"
	"github.com/prism-proxy/prism/internal/gnetio"
)

func init() {
	commands["proxy"] = command{"run the proxy", runProxy}
}

// proxyArgs is what the proxy command's flags say: the server.Config and the
// command's own settings.
type proxyArgs struct {
	cfg      server.Config
	admin    string
	drain    time.Duration
	verbose  bool
	port     int
	logLevel levelFlag
	logFmt   formatFlag
	config   string // the configuration file (-config or PRISM_CONFIG); empty: none
	check    bool
	pidfile  string
}

// newProxyFlagSet defines the proxy command's flags on a new FlagSet, bound
// to pa's fields, which it sets to their defaults.
func newProxyFlagSet(pa *proxyArgs) *flag.FlagSet {
	fs := flag.NewFlagSet("prism proxy", flag.ContinueOnError)
	pa.cfg.RegisterFlags(fs)
	fs.IntVar(&pa.port, "port", 0, "listen on localhost:`port` (the seed's form; overrides -listen)")
	fs.StringVar(&pa.admin, "admin", "", "`address` of the admin HTTP endpoint (/metrics, /healthz, /readyz, /backends, /debug/pprof/); empty: off")
	pa.drain = 10 * time.Second
	fs.Var(flagx.Check(&pa.drain, flagx.NonNegative), "drain", "on SIGINT/SIGTERM, how long (a `duration`) to wait for requests in flight; "+
		"then they are answered shutting_down and the exit status is 1 (0 when all were answered); a second signal exits at once with 130")
	fs.BoolVar(&pa.verbose, "v", false, "log every registration change and debug detail (-log-level debug)")
	fs.Var(&pa.logLevel, "log-level", "`level` of the log: debug, info (the default), warn or error")
	fs.Var(&pa.logFmt, "log-format", "`format` of the log on standard error: text (key=value) or json (one object a line)")
	fs.StringVar(&pa.config, "config", "", "configuration `file` (YAML; keys are these flags' names, plus backends), read again on SIGHUP; "+
		"PRISM_<FLAG> variables override it, flags override both; empty: $PRISM_CONFIG, or none")
	fs.BoolVar(&pa.check, "check", false, "check the configuration, print it with defaults resolved, and exit (0, or 2 with the error)")
	fs.StringVar(&pa.pidfile, "pidfile", "", "write the pid to `file` once listening (a new process of an upgrade, SIGUSR2, replaces it)")
	return fs
}

// parseProxyArgs reads the proxy command's settings, from its flags, the
// environment and the configuration file, into a proxyArgs; done reports
// that the command should return code (0 after -h, 2 after a usage error or
// a bad file or variable). The Config has Listen and Loops filled in and no
// Logger.
func parseProxyArgs(args []string) (pa proxyArgs, code int, done bool) {
	fs := newProxyFlagSet(&pa)
	if code, done := parseFlags(fs, args); done {
		return pa, code, true
	}
	if fs.NArg() > 0 {
		return pa, usageError(fs, "unexpected arguments: %v", fs.Args()), true
	}
	pa, err := layerProxyArgs(args, os.LookupEnv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "prism proxy:", err)
		return pa, 2, true
	}
	return pa, 0, false
}

func runProxy(args []string) int {
	pa, code, done := parseProxyArgs(args)
	if done {
		return code
	}
	if pa.check {
		return checkProxyConfig(pa)
	}
	level := new(slog.LevelVar) // SIGHUP may change it
	level.Set(pa.level())
	logger := newLogger(os.Stderr, pa.logFmt, level)
	pa.cfg.Logger = logger
	// Before anything is logged: a signal sent on seeing the first line
	// must find the handler installed.
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	upgrade := notifyUpgrade()
	defer signal.Stop(upgrade)
	upgradedConfig(&pa.cfg)
	raiseProcs(pa.cfg.Loops)
	// The connection cap is derived from the open-files limit: raise it to
	// the hard limit first.
	nofile, err := server.RaiseOpenFilesLimit()
	if err != nil {
		logger.Warn("open-files limit not raised", "limit", nofile, "err", err)
	}
	p, err := server.New(pa.cfg)
	if err == nil {
		setMemoryLimit(p.Config().MaxMemory, logger)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "prism proxy:", err)
		return 2
	}
	inherit(p, logger)
	if err := p.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "prism proxy:", listenHint(err, proxyAddrs(pa.cfg), "-listen"))
		return 1
	}
	logger.Info("proxy listening", "addr", p.Addr(), "loops", p.Config().Loops,
		"max_conns", p.Config().MaxConns, "open_files", nofile)
	if ra := p.RegisterAddr(); ra != "" {
		logger.Info("registrations listening", "addr", ra)
	}
	logger.Info("effective configuration", effectiveAttrs(pa, p.Config())...)
	rl := newReloader(p, args, pa, level, logger)
	go reloadOnHangup(rl, hup)
	defer rl.stop()
	var admin *http.Server
	if pa.admin != "" {
		ln, err := listenAdmin(pa.admin, pa.cfg.SharePort)
		if err != nil {
			fmt.Fprintln(os.Stderr, "prism proxy: admin:", listenHint(err, pa.admin, "-admin"))
			p.Shutdown(context.Background())
			return 1
		}
		logger.Info("admin listening", "addr", ln.Addr().String())
		admin = newAdminServer(p.AdminHandler(), logger)
		// Capped: a flood of admin connections must not take the
		// descriptors the proxy's loops need (server.AdminMaxConns).
		go serveAdmin(admin, netutil.LimitListener(ln, server.AdminMaxConns), logger)
	}
	// The admin endpoint stays up through the drain, to watch it.
	forced := false
	defer func() {
		if !forced { // a forced exit does not wait for admin requests either
			shutdownAdmin(admin, logger)
		}
	}()
	announce(pa.pidfile, logger)
	defer removePidfile(pa.pidfile)
	for {
		select {
		case s := <-sig:
			pa.drain = rl.drain() // as the last SIGHUP left it
			logger.Info("shutting down", "signal", s.String(), "drain", pa.drain)
		case <-upgrade:
			pid, err := startUpgrade(p, logger)
			if err != nil {
				logger.Error("upgrade failed: serving on", "err", err)
				continue
			}
			pa.drain = rl.drain()
			logger.Info("upgrade: new process ready; handing over", "pid", pid, "drain", pa.drain)
			var status int
			status, forced = handoverProxy(p, pa.drain, sig, logger)
			return status
		case <-p.Done():
			return 1
		}
		break
	}
	var status int
	status, forced = drainProxy(p, pa.drain, sig, logger)
	return status
}

// Exit statuses of the proxy command after SIGINT or SIGTERM.
const (
	exitDrained = 0   // every request in flight was answered by its backend or its timeout
	exitExpired = 1   // the drain expired: the rest were answered shutting_down
	exitForced  = 130 // a second signal: exit at once, whatever is in flight
)

// drainProxy shuts p down within drain and returns the exit status, and
// whether a second signal on sig forced it (then p may still be draining:
// the process is about to exit).
func drainProxy(p *server.Proxy, drain time.Duration, sig <-chan os.Signal, logger *slog.Logger) (code int, forced bool) {
	ctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	res := make(chan error, 1)
	go shutdownProxy(ctx, p, res)
	select {
	case err := <-res:
		switch {
		case err == nil:
			return exitDrained, false
		case errors.Is(err, server.ErrDrainExpired):
			return exitExpired, false
		}
		logger.Error("shutdown", "err", err)
		return exitExpired, false
	case s := <-sig:
		logger.Warn("second signal: exiting at once, requests in flight get no answer",
			"signal", s.String(), "inflight", p.Metrics().Snapshot().Inflight)
		return exitForced, true
	}
}

func shutdownProxy(ctx context.Context, p *server.Proxy, res chan<- error) {
	res <- p.Shutdown(ctx)
}

// newAdminServer is the admin endpoint's HTTP server. Its timeouts keep a
// slow client from holding one of its few connections
// (server.AdminMaxConns) for long: the endpoint's answers are small and
// quick, so 30s to write one is generous.
func newAdminServer(h http.Handler, logger *slog.Logger) *http.Server {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
	// One request per connection: with at most server.AdminMaxConns served
	// at once, a few clients keeping theirs alive and busy would shut the
	// others (a liveness probe) out; closed after each answer they take
	// turns in the listen queue.
	srv.SetKeepAlivesEnabled(false)
	return srv
}

// serveAdmin serves the admin endpoint on ln until srv is shut down.
func serveAdmin(srv *http.Server, ln net.Listener, logger *slog.Logger) {
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		logger.Error("admin", "err", err)
	}
}

// shutdownAdmin stops srv (nil: none), letting requests in progress finish
// for a few seconds.
func shutdownAdmin(srv *http.Server, logger *slog.Logger) {
	if srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		logger.Warn("admin shutdown", "err", err)
	}
}

// parseFlags parses args; done reports that the command should return code
// (0 after -h, 2 after a bad flag). Asked-for help goes to standard output,
// a bad flag's message and usage to fs's output (standard error by default).
func parseFlags(fs *flag.FlagSet, args []string) (code int, done bool) {
	out := fs.Output()
	var buf bytes.Buffer
	fs.SetOutput(&buf)
	err := fs.Parse(args)
	fs.SetOutput(out)
	switch {
	case err == nil:
		return 0, false
	case errors.Is(err, flag.ErrHelp):
		io.Copy(os.Stdout, &buf)
		return 0, true
	}
	io.Copy(out, &buf)
	return 2, true
}

func usageError(fs *flag.FlagSet, format string, a ...any) int {
	fmt.Fprintf(fs.Output(), fs.Name()+": "+format+"\n", a...)
	fs.Usage()
	return 2
}

// listenAdmin opens the admin listener with SO_REUSEPORT, so that the new
// process of an upgrade can open it beside this one (both serve it until
// this one exits). Unless share (the new process of an upgrade), addr must
// be free first: a second proxy started by mistake is refused, as for
// -listen.
func listenAdmin(addr string, share bool) (net.Listener, error) {
	if !share {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, err
		}
		if _, port, _ := net.SplitHostPort(addr); port == "0" {
			return ln, nil // a port of its own: nothing to share
		}
		ln.Close()
	}
	lc := net.ListenConfig{Control: gnetio.ReusePort}
	return lc.Listen(context.Background(), "tcp", addr)
}

// setMemoryLimit sets the Go runtime's soft memory limit to twice
// -max-memory, unless GOMEMLIMIT says otherwise. -max-memory bounds what
// the proxy holds for requests and replies; under a flood gnet's buffers
// churn through garbage as well, and without a limit the heap grows to
// twice what is live before a collection (20 clients flooding without
// reading: 609 MB RSS, 305 MB with a limit of 320 MiB). A soft limit: the
// runtime spends more on collection near it, never fails an allocation.
func setMemoryLimit(maxMemory int64, logger *slog.Logger) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	limit := 2 * maxMemory
	debug.SetMemoryLimit(limit)
	logger.Debug("Go soft memory limit set", "bytes", limit)
}
