package gnetio

import (
	"fmt"
	"net"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// StopListening takes a process's listening sockets (gnet's: one, or one
// per loop with SO_REUSEPORT, on the ports of the addresses given) out of their port's group without
// stopping the engine, which offers no way to: each descriptor is replaced,
// with dup3, by a listening socket nobody connects to. The listening
// socket closes (its queued connections move to the other listeners of the
// port with net.ipv4.tcp_migrate_req=1); a loop that polls the descriptor
// meanwhile gets EAGAIN from accept, which gnet ignores; gnet closes the
// stand-in when it stops. Every listener of the process on those ports
// goes: the caller must own the ports in this process.
//
// Taking the listeners out before stopping an engine also works around a
// gnet bug: a connection accepted while an engine stops is never
// registered with a loop, and never closed.
func StopListening(addrs ...string) error {
	ports := map[int]bool{}
	for _, a := range addrs {
		if a == "" {
			continue
		}
		_, port, err := net.SplitHostPort(a)
		if err != nil {
			return err
		}
		n, err := strconv.Atoi(port)
		if err != nil {
			return err
		}
		ports[n] = true
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
		if a := boundPort(fd); a != 0 && ports[a] {
			fds = append(fds, fd)
		}
	}
	if len(fds) == 0 {
		return fmt.Errorf("no listening socket found on ports %v", addrs)
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

// boundPort returns the TCP port socket fd is bound to, or 0.
func boundPort(fd int) int {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return 0
	}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return a.Port
	case *unix.SockaddrInet6:
		return a.Port
	}
	return 0
}
