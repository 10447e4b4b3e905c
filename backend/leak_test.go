package backend

import (
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// A gnet bug (v2.9.7, found by server.TestChaos): a connection accepted
// while the engine stops is never closed. gnet's acceptor goroutine accepts
// it and queues its registration on an event loop (acceptor_unix.go
// accept0, Trigger(HighPriority, el.register, c)); when the loop's shutdown
// task runs first, Polling returns without running the tasks behind it, and
// closeConns closes only registered connections, so the socket stays open
// in CLOSE_WAIT for the life of the process: 6,538 sockets for these 50
// servers with that acceptor. The server runs a listener per loop
// (gnetio.ListenAddr), which has no acceptor goroutine (Linux only).
func TestCloseDoesNotLeakConnsAcceptedDuringStop(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("a listener per loop is Linux only")
	}
	fds := func() int {
		es, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skip(err)
		}
		return len(es)
	}
	before := fds()
	for range 50 {
		s := start(t, Config{})
		addr := "127.0.0.1:" + strconv.Itoa(s.Port())
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range 4 { // dialers, as a proxy's loops dialing a backend
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					if nc, err := net.Dial("tcp", addr); err == nil {
						nc.Close()
					}
				}
			}()
		}
		time.Sleep(5 * time.Millisecond) // let the dialers run: a load, not a condition
		s.Close()
		close(stop)
		wg.Wait()
	}
	deadline := time.Now().Add(2 * time.Second)
	for fds() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := fds(); n > before {
		kinds := map[string]int{}
		es, _ := os.ReadDir("/proc/self/fd")
		for _, e := range es {
			target, _ := os.Readlink("/proc/self/fd/" + e.Name())
			kind, _, _ := strings.Cut(target, ":")
			kinds[kind]++
		}
		t.Logf("open fds by kind: %v", kinds)
		t.Fatalf("fds: %d before, %d after 50 servers closed under dials: accepted sockets leaked", before, n)
	}
}
