package gnetio

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	"github.com/panjf2000/gnet/v2"
	"github.com/panjf2000/gnet/v2/pkg/logging"
	"golang.org/x/sys/unix"
)

// Stop stops a gnet engine and waits until its Run returned, which it
// reports by closing done. It returns nil then, or ctx's error when ctx ends
// first (the engine was told to stop and stops on its own). Safe from any
// goroutine but the engine's own callbacks, where it would deadlock.
//
// Engine.Stop polls for the end every 500ms; Run returns as soon as the loops
// are done, so Stop waits on done instead.
func Stop(ctx context.Context, eng gnet.Engine, done <-chan struct{}) error {
	stopCtx, cancel := context.WithCancel(ctx)
	defer cancel() // ends stopEngine's polling
	go stopEngine(stopCtx, eng)
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stopEngine tells the engine to stop; it then polls until ctx ends.
func stopEngine(ctx context.Context, eng gnet.Engine) {
	_ = eng.Stop(ctx)
}

// Addr returns the address eng's listener is bound to (with the port it
// got for port 0), or nil when it cannot be learned (an engine with several
// listeners: see ListenerAddr). Call it from OnBoot.
func Addr(eng gnet.Engine) *net.TCPAddr {
	fd, err := eng.Dup()
	if err != nil {
		return nil
	}
	return boundAddr(fd)
}

// ListenerAddr is Addr for the listener of eng on the TCP address addr, as
// given to gnet.Run or gnet.Rotate without its "tcp://"; for engines with
// several listeners.
func ListenerAddr(eng gnet.Engine, addr string) *net.TCPAddr {
	fd, err := eng.DupListener("tcp", addr)
	if err != nil {
		return nil
	}
	return boundAddr(fd)
}

// boundAddr returns the address of the socket fd, and closes fd.
func boundAddr(fd int) *net.TCPAddr {
	defer unix.Close(fd)
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return nil
	}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return &net.TCPAddr{IP: a.Addr[:], Port: a.Port}
	case *unix.SockaddrInet6:
		return &net.TCPAddr{IP: a.Addr[:], Port: a.Port}
	}
	return nil
}

// Logger returns a gnet logger that sends gnet's warnings and errors to l as
// errors, tagged component=gnet, and drops its debug and info lines. Safe
// from any goroutine.
func Logger(l *slog.Logger) logging.Logger { return logger{l} }

type logger struct{ l *slog.Logger }

func (g logger) Debugf(string, ...any) {}
func (g logger) Infof(string, ...any)  {}
func (g logger) Warnf(f string, a ...any) {
	g.l.Error(fmt.Sprintf(f, a...), "component", "gnet")
}
func (g logger) Errorf(f string, a ...any) {
	g.l.Error(fmt.Sprintf(f, a...), "component", "gnet")
}
func (g logger) Fatalf(f string, a ...any) {
	g.l.Error(fmt.Sprintf(f, a...), "component", "gnet")
}
