package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prism-proxy/prism/server"
)

// Zero-downtime upgrade (README, "Operating Prism: upgrades"). SIGUSR2
// makes the proxy start its executable again, with the same arguments;
// the new process listens beside it on the same address (SO_REUSEPORT),
// routes from the start with the registrations it is given, writes the
// pid file and says it is ready on a pipe; then the old process hands
// over (server.Proxy.Handover) and exits 0 once every request it read is
// answered and its clients left. A new process that fails, or is not
// ready within upgradeWait, is killed and the old one goes on serving.

// The environment of a process started by an upgrade.
const (
	envReadyFD     = "PRISM_UPGRADE_READY_FD"        // write "ready\n" there once listening
	envListen      = "PRISM_UPGRADE_LISTEN"          // the older process's address, port resolved
	envRegListen   = "PRISM_UPGRADE_REGISTER_LISTEN" // the same for -register-listen
	envBackends    = "PRISM_UPGRADE_BACKENDS"        // JSON of its registrations ([]server.BackendInfo)
	upgradeReadyFD = 3                               // ExtraFiles[0]
	upgradeReady   = "ready\n"
)

// upgradeWait bounds how long the old process waits for the new one.
const upgradeWait = 30 * time.Second

// notifyUpgrade returns the channel of upgrade signals (SIGUSR2).
func notifyUpgrade() chan os.Signal {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGUSR2)
	return c
}

// upgradedConfig sets in cfg what an older process passed in the
// environment (nothing when not started by an upgrade).
func upgradedConfig(cfg *server.Config) {
	if a := os.Getenv(envListen); a != "" {
		cfg.Listen = a
		cfg.SharePort = true // beside the older process, until it hands over
	}
	if a := os.Getenv(envRegListen); a != "" {
		cfg.RegisterListen = a
	}
}

// inherit gives p the registrations of the older process, if any.
func inherit(p *server.Proxy, logger *slog.Logger) {
	s := os.Getenv(envBackends)
	if s == "" {
		return
	}
	var bs []server.BackendInfo
	if err := json.Unmarshal([]byte(s), &bs); err != nil {
		logger.Warn("upgrade: registrations of the older process unreadable", "err", err)
		return
	}
	p.Inherit(bs)
}

// announce writes the pid file (when asked for) and, in a process started
// by an upgrade, tells the older process it is ready.
func announce(pidfile string, logger *slog.Logger) {
	if pidfile != "" {
		if err := writePidfile(pidfile); err != nil {
			logger.Error("pid file", "path", pidfile, "err", err)
		}
	}
	fd := os.Getenv(envReadyFD)
	if fd == "" {
		return
	}
	os.Unsetenv(envReadyFD)
	n, err := strconv.Atoi(fd)
	if err != nil {
		return
	}
	f := os.NewFile(uintptr(n), "prism-upgrade-ready")
	if _, err := io.WriteString(f, upgradeReady); err != nil {
		logger.Warn("upgrade: cannot tell the older process", "err", err)
	}
	f.Close()
}

// writePidfile replaces path with this process's pid, atomically: a
// supervisor reading it sees the old pid or the new one.
func writePidfile(path string) error {
	tmp := path + ".tmp" + strconv.Itoa(os.Getpid())
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// removePidfile removes path if it still holds this process's pid (after
// an upgrade it holds the new process's).
func removePidfile(path string) {
	if path == "" {
		return
	}
	b, err := os.ReadFile(path)
	if err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(os.Getpid()) {
		os.Remove(path)
	}
}

// startUpgrade starts the new process and waits until it is ready; it
// returns its pid, or an error when it failed (then it was killed).
func startUpgrade(p *server.Proxy, logger *slog.Logger) (int, error) {
	if runtime.GOOS != "linux" {
		return 0, errors.New("upgrades are Linux only (SO_REUSEPORT balancing, server.Proxy.Handover)")
	}
	exe, err := os.Executable()
	if err != nil {
		return 0, err
	}
	regs, err := json.Marshal(p.Backends())
	if err != nil {
		return 0, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer r.Close()
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.ExtraFiles = []*os.File{w}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PRISM_UPGRADE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env,
		envReadyFD+"="+strconv.Itoa(upgradeReadyFD),
		envListen+"="+p.Addr(),
		envBackends+"="+string(regs))
	if ra := p.RegisterAddr(); ra != "" {
		cmd.Env = append(cmd.Env, envRegListen+"="+ra)
	}
	err = cmd.Start()
	w.Close()
	if err != nil {
		return 0, err
	}
	pid := cmd.Process.Pid
	logger.Info("upgrade: new process started", "pid", pid, "exe", exe, "backends", len(p.Backends()))
	exited := make(chan struct{})
	go reapUpgrade(cmd, exited)
	r.SetReadDeadline(time.Now().Add(upgradeWait))
	got, err := io.ReadAll(io.LimitReader(r, 64))
	if bytes.Equal(got, []byte(upgradeReady)) {
		return pid, nil
	}
	select {
	case <-exited:
		return 0, fmt.Errorf("new process %d exited before it was ready", pid)
	default:
	}
	cmd.Process.Kill()
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return 0, fmt.Errorf("new process %d not ready within %s: killed", pid, upgradeWait)
	}
	return 0, fmt.Errorf("new process %d did not say it was ready: killed", pid)
}

// reapUpgrade waits for the new process (its status matters only while
// this one is still there to see it fail).
func reapUpgrade(cmd *exec.Cmd, exited chan<- struct{}) {
	cmd.Wait()
	close(exited)
}

// handoverProxy hands p over within drain and returns the exit status, and
// whether a second signal on sig forced it.
func handoverProxy(p *server.Proxy, drain time.Duration, sig <-chan os.Signal, logger *slog.Logger) (code int, forced bool) {
	ctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	res := make(chan error, 1)
	go handover(ctx, p, res)
	select {
	case err := <-res:
		if err == nil {
			logger.Info("upgrade: handed over")
			return exitDrained, false
		}
		logger.Error("upgrade: handover", "err", err)
		return exitExpired, false
	case s := <-sig:
		logger.Warn("signal during the handover: exiting at once", "signal", s.String())
		return exitForced, true
	}
}

func handover(ctx context.Context, p *server.Proxy, res chan<- error) {
	res <- p.Handover(ctx)
}
