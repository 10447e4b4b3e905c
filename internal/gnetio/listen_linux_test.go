package gnetio

import (
	"net"
	"strconv"
	"testing"
	"time"
)

// StopListening takes the listeners of the address given, and only those:
// another IP on the same port keeps accepting.
func TestStopListeningTakesOnlyItsAddress(t *testing.T) {
	a, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	port := a.Addr().(*net.TCPAddr).Port
	b, err := net.Listen("tcp", "127.0.0.2:"+strconv.Itoa(port))
	if err != nil {
		t.Skip("no second loopback address on this port:", err)
	}
	defer b.Close()
	go func() { // accept what comes to b
		for {
			c, err := b.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	if err := StopListening("127.0.0.1:" + strconv.Itoa(port)); err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second); err == nil {
		c.Close()
		t.Error("127.0.0.1 still accepts after StopListening")
	}
	c, err := net.DialTimeout("tcp", "127.0.0.2:"+strconv.Itoa(port), time.Second)
	if err != nil {
		t.Fatalf("127.0.0.2, not named, stopped accepting: %v", err)
	}
	c.Close()
	if err := StopListening("127.0.0.1:" + strconv.Itoa(port)); err == nil {
		t.Error("a second StopListening found a listener again")
	}
}
