package loadgen

import (
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// timerfdSleeper sleeps on a timerfd registered with Go's poller: the poller
// returns as soon as the timer fires, with no millisecond rounding.
type timerfdSleeper struct {
	fd   int
	f    *os.File
	buf  [8]byte
	once sync.Once
}

func newSleeper() sleeper {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return newTimerSleeper()
	}
	return &timerfdSleeper{fd: fd, f: os.NewFile(uintptr(fd), "loadgen-pacer")}
}

func (s *timerfdSleeper) sleep(d time.Duration) bool {
	its := unix.ItimerSpec{Value: unix.NsecToTimespec(max(int64(d), 1))} // zero would disarm it
	if unix.TimerfdSettime(s.fd, 0, &its, nil) != nil {
		return false
	}
	_, err := s.f.Read(s.buf[:])
	return err == nil
}

func (s *timerfdSleeper) close() { s.once.Do(func() { s.f.Close() }) }
