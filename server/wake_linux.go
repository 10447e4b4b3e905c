//go:build linux

package server

import (
	"context"
	"net"
	"os"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"
)

// startWake creates the doorbell and enrolls its reading end in l's loop.
// Until it is ready (OnOpen) the loop flushes at once instead of deferring.
func startWake(l *loop) (*wake, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socketpair", err)
	}
	f := os.NewFile(uintptr(fds[0]), "prism-wake")
	r, err := net.FileConn(f) // a dup, which gnet dups again and owns
	f.Close()
	if err != nil {
		unix.Close(fds[1])
		return nil, err
	}
	if err := unix.SetNonblock(fds[1], true); err != nil {
		unix.Close(fds[1])
		r.Close()
		return nil, err
	}
	wk := &wake{loop: l, fd: fds[1]}
	if _, err := l.el.Enroll(gnet.NewContext(context.Background(), wk), r); err != nil {
		unix.Close(fds[1])
		r.Close()
		return nil, err
	}
	return wk, nil
}

// ring asks for wake.traffic at the end of this poll; false when the
// doorbell is not usable and the caller must flush at once.
func (w *wake) ring() bool {
	if w == nil || !w.ready {
		return false
	}
	if w.rung {
		return true
	}
	if _, err := unix.Write(w.fd, doorbell); err != nil && err != unix.EAGAIN {
		return false
	}
	w.rung = true
	return true
}

// close closes the writing end, once: when the reading end closes
// (OnClose, on the loop) or when the proxy stopped (Shutdown).
func (w *wake) close() {
	if w != nil && w.closed.CompareAndSwap(false, true) {
		unix.Close(w.fd)
	}
}
