package server

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/prism-proxy/prism/codec"
)

// Config configures a Proxy. Zero values take the defaults given per field;
// resolve fills them in, from the constants below, and RegisterFlags shows
// the same ones as flag defaults.
type Config struct {
	// Listen is the address for clients and backend registrations.
	// Default "127.0.0.1:9000"; port 0 picks a free port (see Proxy.Addr).
	Listen string
	// Loops is the number of event loops. Zero or negative: one per CPU.
	Loops int
	// Timeout bounds each request from its arrival to its answer. Zero: 5s.
	Timeout time.Duration
	// Retries is how many other backends of the same policy a request whose
	// backend failed before replying may be tried on. Negative: 0 (at most
	// once delivery). The zero value means the default, 1; use NoRetries for 0.
	Retries int
	// MaxFrame is the largest message accepted, in bytes. Zero: 1 MiB.
	MaxFrame int
	// RegisterToken, when set, must be the token of every setup (compared
	// in constant time). Empty: no token needed.
	RegisterToken string
	// RegisterCIDR, when set, is a comma-separated list of networks
	// ("10.0.0.0/8,127.0.0.1/32"; a bare address is one host) that setups
	// may come from: a setup from another peer address is refused
	// unauthorized and its connection closed. Empty: any address.
	RegisterCIDR string
	// RegisterListen, when set, is a second address, for backend
	// registrations only, so that clients and backends can be firewalled
	// apart. Setups on Listen are then refused unauthorized, and requests
	// on RegisterListen are answered bad_request and the connection closed.
	// Both are served by the same event loops. It must differ from Listen
	// as written, port 0 included. Empty: setups on Listen.
	RegisterListen string
	// DialTimeout bounds the connection to a backend's data port. Zero: 2s.
	DialTimeout time.Duration
	// DownFor is how long a backend whose data port refused a connection is
	// passed over by this loop's selection when others remain. Zero: 1s.
	DownFor time.Duration
	// MaxClientInflight caps requests in flight per client connection: past
	// it the proxy stops reading the connection's requests until replies go
	// out. Zero: 1024.
	MaxClientInflight int
	// MaxBackendInflight is how many requests a data connection (one per
	// backend per loop) takes before it counts as under pressure: it is then
	// passed over for others of the policy, and with all of them under
	// pressure the request is sent anyway but its client is not read until
	// the link drains. A link whose oldest request is past the timeout, or
	// that holds twice this many, answers "overloaded" instead. Zero: 16384.
	MaxBackendInflight int
	// MaxConnBuffer bounds the bytes held per client connection. At it
	// (requests in flight, replies waiting their turn and answers unsent,
	// together) the proxy stops reading the client; what the client sends
	// past it meanwhile is answered "overloaded", request by request; past
	// twice it in unsent answers (the client does not read) the connection
	// is closed. Zero: 4 MiB, and at least 2*MaxFrame.
	MaxConnBuffer int
	// EjectAfter is how many failures in a row (timeouts, failed data
	// connections, replies that break the protocol) take a backend out of
	// rotation. Zero: 5; negative: failures never eject (stalls still do).
	EjectAfter int
	// EjectTime is a backend's first ejection; it doubles with each
	// ejection in a row, up to EjectMaxTime. After it one request probes
	// the backend, and only a reply readmits it. Zero: 1s.
	EjectTime time.Duration
	// EjectMaxTime bounds an ejection. Zero: 30s.
	EjectMaxTime time.Duration
	// MaxEjectedPercent caps the share of a policy's backends ejected at
	// once, counting the one being ejected. Zero: 50. When every backend
	// a request may use is ejected, it is routed as if none were (panic).
	MaxEjectedPercent int
	// StallTimeout ejects a backend whose data connection has requests in
	// flight but gave no reply for this long, and retries those requests
	// elsewhere. Zero: the smaller of 1s and Timeout/2; negative: off.
	StallTimeout time.Duration
	// MaxMemory bounds, in bytes, what the proxy holds for requests on
	// their way and replies waiting their turn, shared equally by the
	// loops. At a loop's share it stops reading its clients until replies
	// drain it (backpressure); a policy's data connection holding a
	// quarter of a loop's share (at most 64 MiB) is passed over for the
	// policy's others, and when all of them are, one holding twice that
	// answers "overloaded". Bytes that clients sent and the proxy has not
	// parsed yet count too: over the share, a connection holding more than
	// 64 KiB of an incomplete message is answered "overloaded" and closed.
	// Per client, MaxConnBuffer bounds the same. Zero: 1 GiB.
	MaxMemory int64
	// RetryBudget caps retries at this percentage of the requests each loop
	// read in about the last 10s (plus 10 a second per loop), so that
	// retries cannot multiply the load during an outage: a request whose
	// retry the budget refuses is answered backend_unavailable. Zero: 20;
	// negative: no budget (only Retries bounds them).
	RetryBudget int
	// MaxConns caps the inbound connections (clients and leases alike: they
	// are told apart only by their first message) open at once. A
	// connection past it is closed as soon as it opens, before it is read:
	// it has sent nothing, so no answer could be in its framing, and the
	// peer sees the connection closed (EOF). Refusals are counted
	// (prism_connections_refused_total) and logged at most once a second.
	//
	// The cap is what keeps gnet's acceptor from ever meeting EMFILE, which
	// stops the whole engine: zero or negative derives it from the soft
	// open-files limit (RLIMIT_NOFILE) as HAProxy derives maxconn, keeping
	// a reserve for the proxy's own descriptors (listener, pollers,
	// doorbells, admin port), for backend data links (one per backend per
	// loop) and for connections accepted while the cap is reached (gnet
	// accepts them before OnOpen can refuse them): see connBudget. A value
	// above what the limit allows with that reserve is refused by New with
	// an error rather than clamped: a cap the process cannot honour is a
	// deployment mistake (raise the limit: ulimit -n). The budget assumes
	// the proxy is the process's main user of descriptors.
	MaxConns int
	// IdleTimeout closes a client connection with no request in flight and
	// no byte read for this long; nothing is written to it (there is no
	// request to answer). Leases are exempt: a backend's registration is
	// idle by nature. Zero: 5m; negative: off (the -idle-timeout flag takes
	// 0 for off). Checked by a coarse scan (at most every second), so a
	// connection may live up to a second past it.
	IdleTimeout time.Duration
	// FrameTimeout bounds how long a connection may hold an incomplete
	// message (a slowloris): past it the connection is answered
	// bad_request "incomplete message for too long", after the requests
	// already queued, and closed. It applies to leases too. It also bounds
	// how long one message may take to arrive, so keep it well above
	// MaxFrame over the slowest client's bandwidth. Zero: 10s; negative:
	// off (the -frame-timeout flag takes 0 for off).
	FrameTimeout time.Duration
	// ReadyMinBackends is how many backends each policy needs registered
	// before /readyz (Proxy.Ready) says ready: each of ReadyPolicies, or,
	// when none are listed, each policy registered and at least one.
	// Zero or negative: none (ready once listening, and ReadyPolicies
	// need one each).
	ReadyMinBackends int
	// ReadyPolicies is a comma-separated list of policies ("7,8") that
	// must be served before /readyz says ready. Empty: any.
	ReadyPolicies string
	// Logger receives the proxy's log. Nil: slog.Default().
	Logger *slog.Logger
}

// NoRetries is the Config.Retries value for at-most-once delivery.
const NoRetries = -1

// The defaults of Config's fields.
const (
	defaultListen             = "127.0.0.1:9000"
	defaultTimeout            = 5 * time.Second
	defaultRetries            = 1
	defaultDialTimeout        = 2 * time.Second
	defaultDownFor            = time.Second
	defaultMaxClientInflight  = 1024
	defaultMaxBackendInflight = 16384
	defaultMaxConnBuffer      = 4 << 20
	defaultEjectAfter         = 5
	defaultEjectTime          = time.Second
	defaultEjectMaxTime       = 30 * time.Second
	defaultMaxEjectedPercent  = 50
	defaultRetryBudget        = 20
	defaultMaxMemory          = 1 << 30
	defaultIdleTimeout        = 5 * time.Minute
	defaultFrameTimeout       = 10 * time.Second
)

// RegisterFlags defines the proxy's command-line flags on fs, bound to c's
// fields and with the defaults resolve would give them: -listen, -loops,
// -timeout, -retries, -max-frame, -register-token, -register-cidr,
// -register-listen, -max-inflight, the ejection, memory and retry-budget
// flags, -max-conns, -idle-timeout and -frame-timeout. It sets
// those fields to their defaults; parsing fs then sets the ones given. The
// -retries flag counts plainly: 0 there is NoRetries in c.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Listen, "listen", defaultListen, "`address` for clients and backend registrations")
	fs.IntVar(&c.Loops, "loops", 0, "event loops; 0: one per CPU")
	fs.DurationVar(&c.Timeout, "timeout", defaultTimeout, "request timeout")
	c.Retries = defaultRetries
	fs.Var((*retriesFlag)(&c.Retries), "retries", "retry a failed request on up to `n` other backends of the same policy; 0: at most once")
	fs.IntVar(&c.MaxFrame, "max-frame", codec.DefaultMaxFrame, "largest message in `bytes`")
	fs.StringVar(&c.RegisterToken, "register-token", "", "when set, setups must carry this token")
	fs.StringVar(&c.RegisterCIDR, "register-cidr", "", "comma-separated `networks` allowed to register (setups from elsewhere are refused unauthorized); empty: any")
	fs.StringVar(&c.RegisterListen, "register-listen", "", "separate `address` for backend registrations only (setups on -listen are then refused); empty: -listen")
	fs.IntVar(&c.MaxClientInflight, "max-inflight", defaultMaxClientInflight, "requests in flight per client connection before the proxy stops reading it")
	fs.IntVar(&c.EjectAfter, "eject-after", defaultEjectAfter, "failures in a row that take a backend out of rotation; negative: never (stalls still do)")
	fs.DurationVar(&c.EjectTime, "eject-time", defaultEjectTime, "first ejection of a backend; doubles with each ejection in a row")
	fs.DurationVar(&c.EjectMaxTime, "eject-max-time", defaultEjectMaxTime, "longest ejection")
	fs.IntVar(&c.MaxEjectedPercent, "max-ejected-percent", defaultMaxEjectedPercent, "most of a policy's backends ejected at once, in `percent`")
	fs.DurationVar(&c.StallTimeout, "stall-timeout", 0, "eject a backend whose data connection gives no reply for this long with requests in flight; 0: min(1s, timeout/2); negative: off")
	fs.Int64Var(&c.MaxMemory, "max-memory", defaultMaxMemory, "`bytes` held for requests on their way and replies waiting their turn, at most")
	fs.IntVar(&c.RetryBudget, "retry-budget", defaultRetryBudget, "retries allowed as a `percent` of recent requests, per loop; negative: no budget")
	fs.IntVar(&c.MaxConns, "max-conns", 0, "inbound connections open at once, past which new ones are closed; 0: derived from the open-files limit")
	c.IdleTimeout = defaultIdleTimeout
	fs.Var((*offDuration)(&c.IdleTimeout), "idle-timeout", "close a client connection with nothing in flight and nothing read for this `duration`; 0: never")
	c.FrameTimeout = defaultFrameTimeout
	fs.Var((*offDuration)(&c.FrameTimeout), "frame-timeout", "answer and close a connection holding an incomplete message for this `duration`; 0: never")
	fs.IntVar(&c.ReadyMinBackends, "ready-min-backends", 0, "backends each policy needs registered before /readyz says ready")
	fs.StringVar(&c.ReadyPolicies, "ready-policies", "", "comma-separated `policies` that must be served before /readyz says ready; empty: any")
}

// offDuration is a Config timeout as a flag whose 0 means off: negative in
// the Config, where 0 means the default.
type offDuration time.Duration

func (d *offDuration) String() string {
	if d == nil || *d < 0 {
		return "0s"
	}
	return time.Duration(*d).String()
}

func (d *offDuration) Set(s string) error {
	v, err := time.ParseDuration(s)
	switch {
	case err != nil:
		return errors.New("parse error")
	case v <= 0:
		v = -1
	}
	*d = offDuration(v)
	return nil
}

// retriesFlag is Config.Retries as the -retries flag: a plain count, whose 0
// is NoRetries.
type retriesFlag int

func (r *retriesFlag) String() string {
	if r == nil || *r < 0 {
		return "0"
	}
	return strconv.Itoa(int(*r))
}

func (r *retriesFlag) Set(s string) error {
	n, err := strconv.Atoi(s)
	switch {
	case err != nil:
		return errors.New("parse error")
	case n <= 0:
		n = NoRetries
	}
	*r = retriesFlag(n)
	return nil
}

func (c Config) resolve() (Config, error) {
	if c.Listen == "" {
		c.Listen = defaultListen
	}
	if c.Loops <= 0 {
		c.Loops = runtime.NumCPU()
	}
	if c.Timeout == 0 {
		c.Timeout = defaultTimeout
	}
	if c.Timeout < 0 {
		return c, fmt.Errorf("server: negative timeout %v", c.Timeout)
	}
	switch {
	case c.Retries == 0:
		c.Retries = defaultRetries
	case c.Retries < 0:
		c.Retries = 0
	}
	if c.MaxFrame <= 0 {
		c.MaxFrame = codec.DefaultMaxFrame
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = defaultDialTimeout
	}
	if c.DownFor <= 0 {
		c.DownFor = defaultDownFor
	}
	if c.MaxClientInflight <= 0 {
		c.MaxClientInflight = defaultMaxClientInflight
	}
	if c.MaxBackendInflight <= 0 {
		c.MaxBackendInflight = defaultMaxBackendInflight
	}
	if c.MaxConnBuffer <= 0 {
		c.MaxConnBuffer = defaultMaxConnBuffer
	}
	if c.MaxConnBuffer < 2*c.MaxFrame+codec.HeaderLen {
		c.MaxConnBuffer = 2*c.MaxFrame + codec.HeaderLen
	}
	if c.MaxEjectedPercent < 0 || c.MaxEjectedPercent > 100 {
		return c, fmt.Errorf("server: MaxEjectedPercent %d is not a percentage", c.MaxEjectedPercent)
	}
	if c.EjectAfter == 0 {
		c.EjectAfter = defaultEjectAfter
	}
	if c.EjectTime <= 0 {
		c.EjectTime = defaultEjectTime
	}
	if c.EjectMaxTime <= 0 {
		c.EjectMaxTime = defaultEjectMaxTime
	}
	if c.MaxEjectedPercent == 0 {
		c.MaxEjectedPercent = defaultMaxEjectedPercent
	}
	if c.MaxMemory == 0 {
		c.MaxMemory = defaultMaxMemory
	}
	if c.MaxMemory < 0 {
		return c, fmt.Errorf("server: negative MaxMemory %d", c.MaxMemory)
	}
	if c.RetryBudget == 0 {
		c.RetryBudget = defaultRetryBudget
	}
	if c.StallTimeout == 0 {
		c.StallTimeout = min(time.Second, c.Timeout/2)
	}
	if _, err := parseNets(c.RegisterCIDR); err != nil {
		return c, err
	}
	if _, err := parsePolicies(c.ReadyPolicies); err != nil {
		return c, err
	}
	if c.RegisterListen != "" && c.RegisterListen == c.Listen {
		// Even with port 0: the engine tells its listeners apart by the
		// address as given.
		return c, fmt.Errorf("server: RegisterListen %q is the Listen address", c.RegisterListen)
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = defaultIdleTimeout
	}
	if c.FrameTimeout == 0 {
		c.FrameTimeout = defaultFrameTimeout
	}
	limit := openFilesLimit()
	def, most := connBudget(limit, c.Loops)
	switch {
	case most < 1:
		return c, fmt.Errorf("server: the open-files limit %d is too low: the proxy keeps %d files for its own use; raise it (ulimit -n)", limit, limit-most)
	case c.MaxConns <= 0:
		c.MaxConns = def
	case c.MaxConns > most:
		return c, fmt.Errorf("server: MaxConns %d is more than the open-files limit allows: %d files, of which %d are kept for the proxy's own use; raise the limit (ulimit -n) or lower MaxConns to at most %d",
			c.MaxConns, limit, limit-most, most)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// parseNets parses Config.RegisterCIDR: comma-separated prefixes or
// addresses; nil when empty (any address).
func parseNets(list string) ([]netip.Prefix, error) {
	var nets []netip.Prefix
	for _, f := range strings.Split(list, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		pfx, err := netip.ParsePrefix(f)
		if err != nil {
			a, aerr := netip.ParseAddr(f)
			if aerr != nil {
				return nil, fmt.Errorf("server: RegisterCIDR: %q is not a network or an address", f)
			}
			pfx = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		if pfx.Addr().Is4In6() {
			pfx = netip.PrefixFrom(pfx.Addr().Unmap(), pfx.Bits()-96)
		}
		nets = append(nets, pfx.Masked())
	}
	return nets, nil
}
