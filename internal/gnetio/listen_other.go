//go:build !linux

package gnetio

import (
	"errors"
	"syscall"
)

// ErrUnsupported: StopListening is Linux only.
var ErrUnsupported = errors.New("gnetio: not supported on this system")

// StopListening is Linux only: elsewhere it returns ErrUnsupported.
func StopListening(...string) error { return ErrUnsupported }

// holdPort: elsewhere gnet may bind without SO_REUSEPORT, beside which
// nothing may be bound: ListenAddr closes the socket of the port it picked
// at once (another server could be given the port in between).
const holdPort = false

func holdControl(_, _ string, _ syscall.RawConn) error { return nil }

// ReusePort is a net.ListenConfig Control that sets SO_REUSEPORT on Linux;
// here it does nothing.
func ReusePort(_, _ string, _ syscall.RawConn) error { return nil }
