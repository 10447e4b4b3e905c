package server

import (
	"context"
	"fmt"
	"net"
	"os"
	"sync/atomic"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"
)

// wake is a loop's doorbell: a connected pair of Unix sockets whose reading
// end belongs to the loop. Ringing it from the loop itself makes the loop run
// wake.traffic after it has handled every event of the current poll, which
// is where deferred writes go out (loop.flushSoon). gnet's Execute does the same
// but allocates a closure per call; the doorbell allocates nothing.
type wake struct {
	loop   *loop
	fd     int  // writing end, non-blocking
	ready  bool // the reading end joined the loop
	rung   bool // a byte is on its way
	closed atomic.Bool
}

var wakeSeq atomic.Uint64

// startWake creates the doorbell and enrolls its reading end in l's loop. Until
// it is ready the loop flushes at once instead of deferring.
func startWake(l *loop) (*wake, error) {
	name := fmt.Sprintf("@prism-wake-%d-%d", os.Getpid(), wakeSeq.Add(1))
	ln, err := net.Listen("unix", name)
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	w, err := net.Dial("unix", name)
	if err != nil {
		return nil, err
	}
	r, err := ln.Accept()
	if err != nil {
		w.Close()
		return nil, err
	}
	f, err := w.(*net.UnixConn).File() // a blocking dup of the writing end
	w.Close()
	if err != nil {
		r.Close()
		return nil, err
	}
	fd, err := unix.Dup(int(f.Fd()))
	f.Close()
	if err != nil {
		r.Close()
		return nil, err
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		r.Close()
		return nil, err
	}
	wk := &wake{loop: l, fd: fd}
	if _, err := l.el.Enroll(gnet.NewContext(context.Background(), wk), r); err != nil {
		unix.Close(fd)
		r.Close()
		return nil, err
	}
	return wk, nil
}

var doorbell = []byte{1}

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

func (w *wake) traffic(c gnet.Conn) {
	c.Discard(-1)
	w.rung = false
	w.loop.doorbell()
}

func (w *wake) close() {
	if w != nil && w.closed.CompareAndSwap(false, true) {
		unix.Close(w.fd)
	}
}
