package backend

import (
	"sync"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// delayed holds a data connection's replies until Config.Delay after their
// requests arrived, and writes them in order from its own goroutine
// (writeDelayed, through AsyncWrite): the event loop never waits.
type delayed struct {
	mu     sync.Mutex
	queue  []delayedReply
	closed bool
	wake   chan struct{} // cap 1: something was queued, or the connection closed
}

type delayedReply struct {
	due time.Time
	buf []byte
}

func newDelayed() *delayed { return &delayed{wake: make(chan struct{}, 1)} }

// push queues a copy of out, to be written at due. Called by the loop.
func (d *delayed) push(due time.Time, out []byte) {
	d.mu.Lock()
	d.queue = append(d.queue, delayedReply{due, append([]byte(nil), out...)})
	d.mu.Unlock()
	d.signal()
}

func (d *delayed) signal() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// close stops writeDelayed; replies not written yet are dropped (the
// connection is gone).
func (d *delayed) close() {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	d.signal()
}

// writeDelayed writes d's replies to c as they come due, oldest first.
func writeDelayed(c gnet.Conn, d *delayed) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		d.mu.Lock()
		if d.closed {
			d.mu.Unlock()
			return
		}
		if len(d.queue) == 0 {
			d.mu.Unlock()
			<-d.wake
			continue
		}
		r := d.queue[0]
		d.mu.Unlock()
		if wait := time.Until(r.due); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-d.wake: // closed, or another queued: look again
				if !timer.Stop() {
					<-timer.C
				}
				continue
			}
		}
		d.mu.Lock()
		d.queue[0] = delayedReply{}
		d.queue = d.queue[1:]
		d.mu.Unlock()
		if err := c.AsyncWrite(r.buf, nil); err != nil {
			return
		}
	}
}
