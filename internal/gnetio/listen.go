package gnetio

import (
	"context"
	"net"
)

// ListenAddr returns the address to give gnet for listen when the engine
// runs with a listener per loop (gnet.WithReusePort(true)): listen itself,
// or, for port 0, the address with a free port picked first, since port 0
// would give each loop's listener a port of its own. Call release once the
// engine listens (OnBoot): on Linux the port is held until then by a
// socket bound to it (SO_REUSEPORT, which gnet's listeners join), so that
// another server starting meanwhile cannot be given the same port and
// share it.
//
// A listener per loop is how Prism's engines run, for two reasons. Without
// it gnet accepts on a goroutine of its own that drains the listen queue in
// a burst and hands each connection to a loop: under a flood hundreds of
// connections hold a descriptor before any OnOpen can refuse one, and the
// acceptor meets EMFILE, which stops the engine. And a connection it
// accepts while the engine stops is never closed (v2.9.7: the registration
// it queues for a loop is dropped when the loop exits first). A loop that
// accepts itself runs OnOpen at once on its own goroutine, and has no
// registration to lose. Linux balances a port's connections across its
// listeners; elsewhere gnet ignores the option with several loops.
func ListenAddr(listen string) (addr string, release func(), err error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil || port != "0" {
		return listen, func() {}, nil // gnet reports a bad address
	}
	lc := net.ListenConfig{Control: holdControl}
	ln, err := lc.Listen(context.Background(), "tcp", listen)
	if err != nil {
		return "", nil, err
	}
	_, port, _ = net.SplitHostPort(ln.Addr().String())
	release = func() { ln.Close() }
	if !holdPort {
		release()
		release = func() {}
	}
	return net.JoinHostPort(host, port), release, nil
}

// ClaimAddr is ListenAddr for a server that must own its port alone: it
// fails when something listens on listen already. SO_REUSEPORT lets
// another process of the same user bind the same port and share its
// connections: for a backend server, requests of one policy answered by a
// server of another; for a proxy, clients served by another proxy. Another process could still bind in
// between the check and gnet's bind: the check catches a server started
// twice by mistake, not a race.
func ClaimAddr(listen string) (addr string, release func(), err error) {
	_, port, err := net.SplitHostPort(listen)
	if err != nil || port == "0" {
		return ListenAddr(listen)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return "", nil, err
	}
	ln.Close()
	return listen, func() {}, nil
}
