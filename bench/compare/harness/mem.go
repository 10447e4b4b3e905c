package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/prism-proxy/prism/bench/compare/results"
)

// memCmd opens n idle client connections to a proxy, waits until the proxy
// has taken them (its open-file count settles), and records its RSS before
// and with them.
func memCmd(args []string) error {
	fs := flag.NewFlagSet("mem", flag.ContinueOnError)
	proxy := fs.String("proxy", "", "proxy `name`")
	addr := fs.String("addr", "127.0.0.1:19000", "proxy `address`")
	n := fs.Int("n", 10000, "idle connections to open")
	pidList := fs.String("pids", "", "comma-separated proxy `pids` (required)")
	out := fs.String("out", "", "write the record to this `file` (required)")
	note := fs.String("note", "", "a note to keep with the record")
	settle := fs.Duration("settle", 15*time.Second, "longest wait for the proxy's open files to settle")
	if err := fs.Parse(args); err != nil {
		return err
	}
	pids, err := parsePIDs(*pidList)
	if err != nil {
		return err
	}
	if len(pids) == 0 || *out == "" {
		return errors.New("need -pids and -out")
	}
	m := results.Memory{Proxy: *proxy, Target: *n, Note: *note}
	if m.FDsBefore, err = openFDs(pids); err != nil {
		return err
	}
	if m.RSSBeforeKB, err = rssKB(pids); err != nil {
		return err
	}

	conns := holdIdle(*addr, *n)
	m.Held = len(conns)
	defer func() {
		for _, c := range conns {
			c.(*net.TCPConn).SetLinger(0) // no TIME_WAIT left to eat ports
			c.Close()
		}
	}()

	// The proxy may still be accepting from its backlog: wait until its
	// open-file count stops moving.
	deadline := time.Now().Add(*settle)
	last, stable := -1, 0
	for time.Now().Before(deadline) && stable < 4 {
		time.Sleep(250 * time.Millisecond)
		fds, err := openFDs(pids)
		if err != nil {
			return err
		}
		if fds == last {
			stable++
		} else {
			last, stable = fds, 0
		}
	}
	if m.FDsIdle, err = openFDs(pids); err != nil {
		return err
	}
	if m.RSSIdleKB, err = rssKB(pids); err != nil {
		return err
	}
	if m.Held > 0 {
		m.KBPerConn = float64(m.RSSIdleKB-m.RSSBeforeKB) / float64(m.Held)
	}
	fmt.Printf("%-8s idle conns %d/%d  proxy fds %d -> %d  RSS %d -> %d KiB (%.2f KiB/conn)\n",
		m.Proxy, m.Held, m.Target, m.FDsBefore, m.FDsIdle, m.RSSBeforeKB, m.RSSIdleKB, m.KBPerConn)
	return results.Write(*out, m)
}

// holdIdle opens up to n connections to addr, a few at a time so the
// proxy's accept backlog does not overflow, and returns those that opened.
func holdIdle(addr string, n int) []net.Conn {
	const parallel = 64
	var (
		mu    sync.Mutex
		conns = make([]net.Conn, 0, n)
		wg    sync.WaitGroup
		next  = make(chan struct{})
	)
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				c, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					continue
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		}()
	}
	for range n {
		next <- struct{}{}
	}
	close(next)
	wg.Wait()
	return conns
}
