package gnetio

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// StopListening takes a process's listening sockets (gnet's: one, or one
// per loop with SO_REUSEPORT) on the addresses given out of their port's
// group without stopping the engine, which offers no way to: each
// descriptor is replaced, with dup3, by a listening socket nobody connects
// to. The listening socket closes (its queued connections move to the other
// listeners of the port with net.ipv4.tcp_migrate_req=1); a loop that polls
// the descriptor meanwhile gets EAGAIN from accept, which gnet ignores;
// gnet closes the stand-in when it stops. An address with a specific IP
// matches the listeners bound to that IP and port; one with no host or an
// unspecified one ("", 0.0.0.0, ::) every listener of the process on its
// port: the caller must own it in this process.
//
// Taking the listeners out before stopping an engine also works around a
// gnet bug: a connection accepted while an engine stops is never
// registered with a loop, and never closed.
func StopListening(addrs ...string) error {
	type want struct {
		ip   net.IP // nil: any
		port int
	}
	var wants []want
	for _, a := range addrs {
		if a == "" {
			continue
		}
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			return err
		}
		n, err := strconv.Atoi(port)
		if err != nil {
			return err
		}
		ip := net.ParseIP(host)
		if ip != nil && ip.IsUnspecified() {
			ip = nil
		}
		wants = append(wants, want{ip, n})
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return err
	}
	var fds []int
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd < 3 {
			continue
		}
		if on, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err != nil || on != 1 {
			continue
		}
		if typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE); err != nil || typ != unix.SOCK_STREAM {
			continue
		}
		ip, port := bound(fd)
		for _, w := range wants {
			if port != 0 && port == w.port && (w.ip == nil || w.ip.Equal(ip)) {
				fds = append(fds, fd)
				break
			}
		}
	}
	if len(fds) == 0 {
		return fmt.Errorf("no listening socket found on %v", addrs)
	}
	stand, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(stand)
	if err := unix.Bind(stand, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return err
	}
	if err := unix.Listen(stand, 1); err != nil {
		return err
	}
	for _, fd := range fds {
		if err := unix.Dup3(stand, fd, unix.O_CLOEXEC); err != nil {
			return err
		}
	}
	return nil
}

// bound returns the IP and TCP port socket fd is bound to, or a 0 port.
func bound(fd int) (net.IP, int) {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return nil, 0
	}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return net.IP(a.Addr[:]), a.Port
	case *unix.SockaddrInet6:
		return net.IP(a.Addr[:]), a.Port
	}
	return nil, 0
}

// holdPort: ListenAddr holds a port 0 it picked until the engine listens.
const holdPort = true

// holdControl sets SO_REUSEPORT on the socket that holds a picked port, so
// that gnet's listeners can bind beside it.
func holdControl(network, address string, c syscall.RawConn) error {
	return ReusePort(network, address, c)
}

// ReusePort is a net.ListenConfig Control that sets SO_REUSEPORT: another
// listener of the same user may then bind the same address beside it, as
// the new process of an upgrade does. Elsewhere than Linux it does nothing.
func ReusePort(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	})
	if err != nil {
		return err
	}
	return serr
}
