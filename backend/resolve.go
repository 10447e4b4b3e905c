package backend

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"time"
)

// leaseHandle is one lease's goroutine: its address and what closes it.
type leaseHandle struct {
	addr   string
	ctx    context.Context
	cancel context.CancelFunc
}

// splitProxies separates the entries of Config.Proxies whose host is an IP
// address (and those that do not parse, which dialing will report) from
// those that name hosts to resolve.
func splitProxies(proxies []string) (literal, names []string) {
	for _, p := range proxies {
		host, _, err := net.SplitHostPort(p)
		if err != nil || isIP(host) {
			literal = append(literal, p)
			continue
		}
		names = append(names, p)
	}
	return literal, names
}

func isIP(host string) bool {
	_, err := netip.ParseAddr(host)
	return err == nil
}

// setLeasesLocked makes the leases those of addrs: a lease is opened with
// each new address and closed with each address no longer there. The
// caller holds s.mu.
func (s *Server) setLeasesLocked(addrs []string) (added, removed []string) {
	want := make(map[string]bool, len(addrs))
	for _, a := range addrs {
		want[a] = true
	}
	for a, h := range s.leases {
		if !want[a] {
			h.cancel() // closes the connection: the proxy takes the server out of rotation
			delete(s.leases, a)
			delete(s.acked, a)
			delete(s.gaveUp, a)
			removed = append(removed, a)
		}
	}
	for _, a := range addrs {
		if _, ok := s.leases[a]; ok {
			continue
		}
		ctx, cancel := context.WithCancel(s.ctx)
		h := &leaseHandle{addr: a, ctx: ctx, cancel: cancel}
		s.leases[a] = h
		added = append(added, a)
		s.wg.Add(1)
		go s.holdLease(h)
	}
	if len(removed) > 0 {
		s.ackChangedLocked()
	}
	slices.Sort(added)
	slices.Sort(removed)
	return added, removed
}

// resolveLoop resolves the names of Proxies now and every ResolveEvery,
// and keeps a lease with every address found, beside the literal ones.
func (s *Server) resolveLoop(literal, names []string) {
	defer s.wg.Done()
	known := make(map[string][]string, len(names)) // by name: the addresses of its last answer
	for {
		for _, name := range names {
			addrs, err := s.resolve(name)
			if err != nil {
				if _, ok := known[name]; !ok {
					known[name] = nil // answered, if only with an error: WaitRegistered waits on the others
				}
				s.cfg.Logger.Warn("could not resolve the proxy name; keeping the addresses it had", "proxy", name,
					"addrs", known[name], "err", err)
				continue
			}
			if old, ok := known[name]; !ok || !slices.Equal(old, addrs) {
				if len(addrs) == 0 {
					s.cfg.Logger.Warn("the proxy name resolves to no address", "proxy", name)
				}
				known[name] = addrs
			}
		}
		if s.ctx.Err() != nil {
			return
		}
		want := slices.Clone(literal)
		for _, name := range names {
			want = append(want, known[name]...)
		}
		slices.Sort(want)
		want = slices.Compact(want)
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return
		}
		added, removed := s.setLeasesLocked(want)
		if !s.resolved {
			s.resolved = true
			s.ackChangedLocked()
		}
		s.mu.Unlock()
		if len(added) > 0 || len(removed) > 0 {
			s.cfg.Logger.Info("proxy addresses changed", "proxies", names, "added", added, "removed", removed)
		}
		if s.cfg.ResolveEvery < 0 {
			return
		}
		select {
		case <-time.After(s.cfg.ResolveEvery):
		case <-s.ctx.Done():
			return
		}
	}
}

// resolve looks a proxy's host name up and returns its addresses joined
// with its port, sorted: the IPv4 ones, or the IPv6 ones when there is no
// IPv4 address. "No such host" is an answer: no address.
func (s *Server) resolve(proxy string) ([]string, error) {
	host, port, _ := net.SplitHostPort(proxy)
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	lookup := s.cfg.LookupHost
	if lookup == nil {
		lookup = net.DefaultResolver.LookupHost
	}
	ips, err := lookup(ctx, host)
	if err != nil {
		var dns *net.DNSError
		if errors.As(err, &dns) && dns.IsNotFound {
			return nil, nil
		}
		return nil, err
	}
	var v4, v6 []string
	for _, ip := range ips {
		a, err := netip.ParseAddr(ip)
		switch {
		case err != nil:
			continue
		case a.Unmap().Is4():
			v4 = append(v4, net.JoinHostPort(a.Unmap().String(), port))
		default:
			v6 = append(v6, net.JoinHostPort(a.String(), port))
		}
	}
	addrs := v4
	if len(addrs) == 0 {
		addrs = v6
	}
	slices.Sort(addrs)
	return slices.Compact(addrs), nil
}
