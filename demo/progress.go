package demo

import (
	"fmt"
	"io"
	"time"
)

// reportProgress reports the workers' counts on w until done is closed:
// rewriting one line in place (ProgressLive) or one line per interval
// (ProgressLines). It returns once done is closed, the live line cleared.
func reportProgress(mode Progress, every time.Duration, w io.Writer, start time.Time, workers []*worker, done <-chan struct{}) {
	if mode == ProgressOff {
		<-done
		return
	}
	if every <= 0 {
		every = time.Second
		if mode == ProgressLive {
			every = 250 * time.Millisecond
		}
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	var lastReplies uint64
	last := start
	for {
		select {
		case <-done:
			if mode == ProgressLive {
				fmt.Fprint(w, "\r\x1b[K")
			}
			return
		case now := <-tick.C:
			var sent, replies, errs, bad uint64
			for _, wk := range workers {
				sent += wk.sent.Load()
				replies += wk.replies.Load()
				errs += wk.errors.Load()
				bad += wk.bad.Load()
			}
			rate := float64(replies-lastReplies) / now.Sub(last).Seconds()
			lastReplies, last = replies, now
			line := fmt.Sprintf("%6.1fs  requests %s  replies %s  %s msgs/s  errors %s  wrong %s",
				now.Sub(start).Seconds(), group(sent), group(replies), group(uint64(rate+0.5)), group(errs), group(bad))
			if mode == ProgressLive {
				fmt.Fprint(w, "\r"+line+"\x1b[K")
			} else {
				fmt.Fprintln(w, line)
			}
		}
	}
}
