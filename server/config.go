package server

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/prism-proxy/prism/codec"
	"github.com/prism-proxy/prism/internal/flagx"
)

// Config configures a Proxy. Zero values take the defaults given per field;
// resolve fills them in, from the constants below, and RegisterFlags shows
// the same ones as flag defaults.
type Config struct {
	// Listen is the address for clients and backend registrations.
	// Default "127.0.0.1:9000"; port 0 picks a free port (see Proxy.Addr).
	Listen string
	// Loops is the number of event loops. Zero: one per CPU; negative is
	// refused.
	Loops int
	// Timeout bounds each request from its arrival to its answer. Zero: 5s;
	// negative is refused.
	Timeout time.Duration
	// Retries is how many other backends of the same policy a request whose
	// backend failed before replying may be tried on. The zero value means
	// the default, 1; NoRetries (any negative value) means none: at most
	// once delivery.
	Retries int
	// MaxFrame is the largest message accepted, in bytes. Zero: 1 MiB;
	// negative is refused.
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
	// SharePort lets the proxy bind Listen and RegisterListen beside
	// another process that listens there (every listener of a proxy is
	// SO_REUSEPORT): the new process of an upgrade does, and the two share
	// the port's connections until the old one hands over. Otherwise an
	// address something listens on already is refused (Start fails with
	// "address already in use"): a second proxy started by mistake on the
	// port of another would take part of its clients, with registrations
	// of its own.
	SharePort bool
	// DialTimeout bounds the connection to a backend's data port. Zero: 2s;
	// negative is refused.
	DialTimeout time.Duration
	// DownFor is how long a backend whose data port refused a connection is
	// passed over by this loop's selection when others remain. Zero: 1s;
	// negative is refused.
	DownFor time.Duration
	// MaxClientInflight caps requests in flight per client connection: past
	// it the proxy stops reading the connection's requests until replies go
	// out. Zero: 1024; negative is refused.
	MaxClientInflight int
	// MaxBackendInflight is how many requests a data connection (one per
	// backend per loop) takes before it counts as under pressure: it is then
	// passed over for others of the policy, and with all of them under
	// pressure the request is sent anyway but its client is not read until
	// the link drains. A link whose oldest request is past the timeout, or
	// that holds twice this many, answers "overloaded" instead. Zero: 16384;
	// negative is refused.
	MaxBackendInflight int
	// MaxConnBuffer bounds the bytes held per client connection. At it
	// (requests in flight, replies waiting their turn and answers unsent,
	// together) the proxy stops reading the client; what the client sends
	// past it meanwhile is answered "overloaded", request by request; past
	// twice it in unsent answers (the client does not read) the connection
	// is closed. Zero: 4 MiB, or 2*MaxFrame plus a frame header when that
	// is more. A value below 2*MaxFrame plus a frame header, or negative,
	// is refused.
	MaxConnBuffer int
	// EjectAfter is how many failures in a row (timeouts, failed data
	// connections, replies that break the protocol) take a backend out of
	// rotation. Zero: 5; negative: failures never eject (stalls still do).
	EjectAfter int
	// EjectTime is a backend's first ejection; it doubles with each
	// ejection in a row, up to EjectMaxTime. After it one request probes
	// the backend, and only a reply readmits it. Zero: 1s; negative is
	// refused.
	EjectTime time.Duration
	// EjectMaxTime bounds an ejection. Zero: 30s, or EjectTime when that is
	// more; negative, or less than EjectTime, is refused.
	EjectMaxTime time.Duration
	// MaxEjectedPercent caps the share of a policy's backends ejected at
	// once, counting the one being ejected. Zero: 50; outside 0..100 is
	// refused. When every backend a request may use is ejected, it is
	// routed as if none were (panic).
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
	// Per client, MaxConnBuffer bounds the same. Zero: 1 GiB;
	// negative is refused.
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
	// stops the whole engine: zero derives it from the soft
	// open-files limit (RLIMIT_NOFILE) as HAProxy derives maxconn, keeping
	// a reserve for the proxy's own descriptors (listener, pollers,
	// doorbells, admin port), for backend data links (one per backend per
	// loop) and for connections accepted while the cap is reached (gnet
	// accepts them before OnOpen can refuse them): see connBudget. A value
	// above what the limit allows with that reserve is refused by New with
	// an error rather than clamped: a cap the process cannot honour is a
	// deployment mistake (raise the limit: ulimit -n). The budget assumes
	// the proxy is the process's main user of descriptors. Negative is
	// refused.
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
	// Balance is how a request's backend is chosen among its policy's:
	// "rr", round robin, exact shares (each of n backends gets every n-th
	// request); or "p2c", the power of two choices: of two backends drawn
	// at random, the one of lower (requests in flight + 1) × reply
	// latency (a peak-EWMA, pool.LatencyDecay), so that a slow backend
	// gets few requests. Both pass over the same backends (ejected, under
	// pressure, the one that just failed the request). Empty: "rr".
	Balance string
	// BalancePolicy gives some policies another balancer than Balance:
	// "7=p2c,8=rr". Empty: Balance for all.
	BalancePolicy string
	// Backends are static backends: servers that cannot register
	// themselves, in rotation from the start without a lease (they leave
	// it only by Reload) and ejected on failures like the others. A setup
	// of a static backend's id is refused unauthorized. Ids must be
	// unique, addresses host:port.
	Backends []StaticBackend
	// ErrorLogEvery spaces the log's summary of the requests answered with
	// an error (counts by code and policy), which are never logged one by
	// one: a line at most this often, and only when there were some.
	// Zero: 10s; negative: no summary (the counts stay in /metrics).
	ErrorLogEvery time.Duration
	// Registry, when set, is the fleet registry: etcd's client addresses
	// as "etcd://host:2379[,host2:2379…]". Each setup this proxy accepts
	// is published there, and the backends the fleet's other proxies
	// accepted are served here too (fleet.go). Empty: none, this proxy
	// knows only its own registrations and static backends.
	Registry string
	// ProxyID names this proxy in the fleet registry's keys; unique in the
	// fleet, without '/'. Empty: the host name and the listen address,
	// "host@127.0.0.1:9000" (its port as bound).
	ProxyID string
	// RegistryTTL is how long this proxy's keys outlive it in the fleet
	// registry when it dies without deleting them (its etcd lease).
	// Zero: 10s; etcd counts in whole seconds; negative is refused.
	RegistryTTL time.Duration
	// Logger receives the proxy's log. Nil: slog.Default().
	Logger *slog.Logger
}

// StaticBackend is a backend given in the configuration (Config.Backends)
// rather than registered by a setup.
type StaticBackend struct {
	ID      int64  `yaml:"id"`
	Policy  int64  `yaml:"policy"`
	Addr    string `yaml:"addr"`    // host:port of its data listener
	Framing string `yaml:"framing"` // "binary" or "text"; empty: binary
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
	defaultErrorLogEvery      = 10 * time.Second
	defaultRetryBudget        = 20
	defaultMaxMemory          = 1 << 30
	defaultIdleTimeout        = 5 * time.Minute
	defaultFrameTimeout       = 10 * time.Second
	defaultRegistryTTL        = 10 * time.Second
)

// ErrConfig is wrapped by the errors of New, Reload and Config.Check for a
// configuration that makes no sense; the message names the setting.
var ErrConfig = errors.New("server: bad configuration")

// RegisterFlags defines the proxy's command-line flags on fs, bound to c's
// fields and with the defaults resolve would give them: -listen, -loops,
// -timeout, -retries, -max-frame, -register-token, -register-cidr,
// -register-listen, -max-inflight, the ejection, memory and retry-budget
// flags, -max-conns, -idle-timeout, -frame-timeout, -balance and -balance-policy. It sets
// those fields to their defaults; parsing fs then sets the ones given.
//
// A flag takes its value as written: where a Config field's zero means
// "the default", the flag refuses 0 (and negatives where the field refuses
// them) rather than replacing it. A flag's 0 means something only where its
// usage says so: -loops and -max-conns (derived), -retries (none),
// -stall-timeout (derived), -idle-timeout and -frame-timeout (off). The
// -retries flag counts plainly: 0 there is NoRetries in c.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Listen, "listen", defaultListen, "`address` for clients and backend registrations")
	c.Loops = 0
	fs.Var(flagx.Check(&c.Loops, flagx.NonNegative), "loops", "event `loops`; 0: one per CPU")
	c.Timeout = defaultTimeout
	fs.Var(flagx.Check(&c.Timeout, flagx.Positive), "timeout", "request timeout, a `duration`")
	c.Retries = defaultRetries
	fs.Var(flagx.Off(&c.Retries, "at most once"), "retries", "retry a failed request on up to `n` other backends of the same policy; 0: at most once")
	c.MaxFrame = codec.DefaultMaxFrame
	fs.Var(flagx.Check(&c.MaxFrame, flagx.Positive), "max-frame", "largest message in `bytes`")
	fs.StringVar(&c.RegisterToken, "register-token", "", "when set, setups must carry this token")
	fs.StringVar(&c.RegisterCIDR, "register-cidr", "", "comma-separated `networks` allowed to register (setups from elsewhere are refused unauthorized); empty: any")
	fs.StringVar(&c.RegisterListen, "register-listen", "", "separate `address` for backend registrations only (setups on -listen are then refused); empty: -listen")
	c.MaxClientInflight = defaultMaxClientInflight
	fs.Var(flagx.Check(&c.MaxClientInflight, flagx.Positive), "max-inflight", "`requests` in flight per client connection before the proxy stops reading it")
	c.EjectAfter = defaultEjectAfter
	fs.Var(flagx.Check(&c.EjectAfter, nonZero("negative: never")), "eject-after", "`failures` in a row that take a backend out of rotation; negative: never (stalls still do)")
	c.EjectTime = defaultEjectTime
	fs.Var(flagx.Check(&c.EjectTime, flagx.Positive), "eject-time", "first ejection of a backend, a `duration`; doubles with each ejection in a row")
	c.EjectMaxTime = defaultEjectMaxTime
	fs.Var(flagx.Check(&c.EjectMaxTime, flagx.Positive), "eject-max-time", "longest ejection, a `duration`")
	c.MaxEjectedPercent = defaultMaxEjectedPercent
	fs.Var(flagx.Check(&c.MaxEjectedPercent, percent), "max-ejected-percent", "most of a policy's backends ejected at once, in `percent` (1..100)")
	fs.DurationVar(&c.StallTimeout, "stall-timeout", 0, "eject a backend whose data connection gives no reply for this long with requests in flight; 0: min(1s, timeout/2); negative: off")
	c.MaxMemory = defaultMaxMemory
	fs.Var(flagx.Check(&c.MaxMemory, flagx.Positive), "max-memory", "`bytes` held for requests on their way and replies waiting their turn, at most")
	c.RetryBudget = defaultRetryBudget
	fs.Var(flagx.Check(&c.RetryBudget, nonZero("negative: no budget")), "retry-budget", "retries allowed as a `percent` of recent requests, per loop; negative: no budget")
	c.MaxConns = 0
	fs.Var(flagx.Check(&c.MaxConns, flagx.NonNegative), "max-conns", "inbound `connections` open at once, past which new ones are closed; 0: derived from the open-files limit")
	c.IdleTimeout = defaultIdleTimeout
	fs.Var(flagx.Off(&c.IdleTimeout, "never"), "idle-timeout", "close a client connection with nothing in flight and nothing read for this `duration`; 0: never")
	c.FrameTimeout = defaultFrameTimeout
	fs.Var(flagx.Off(&c.FrameTimeout, "never"), "frame-timeout", "answer and close a connection holding an incomplete message for this `duration`; 0: never")
	fs.IntVar(&c.ReadyMinBackends, "ready-min-backends", 0, "backends each policy needs registered before /readyz says ready")
	fs.StringVar(&c.Registry, "registry", "", "fleet registry: etcd://`host:port`[,host:port…]; every proxy of the fleet serves the backends registered with any of them; empty: none")
	fs.StringVar(&c.ProxyID, "proxy-id", "", "this proxy's `name` in the fleet registry, unique in the fleet; empty: hostname@listen address")
	c.RegistryTTL = defaultRegistryTTL
	fs.Var(flagx.Check(&c.RegistryTTL, flagx.Positive), "registry-ttl", "how long this proxy's registrations outlive it in the fleet registry when it dies, a `duration`")
	fs.StringVar(&c.Balance, "balance", "rr", "how a policy's backend is chosen: rr (round robin) or p2c (power of two choices on in-flight × latency: a slow backend gets few requests)")
	fs.StringVar(&c.BalancePolicy, "balance-policy", "", "per-policy balancers overriding -balance: `policy=rr|p2c`[,…], e.g. 7=p2c,8=rr")
	fs.StringVar(&c.ReadyPolicies, "ready-policies", "", "comma-separated `policies` that must be served before /readyz says ready; empty: any")
}

func percent(v int) error {
	if v < 1 || v > 100 {
		return errors.New("must be a percentage, 1 to 100")
	}
	return nil
}

func nonZero(negative string) func(int) error {
	return func(v int) error {
		if v == 0 {
			return errors.New("must not be 0 (" + negative + ")")
		}
		return nil
	}
}

// Check returns c with its defaults resolved, or the error New would give
// for it. It does not listen or dial.
func (c Config) Check() (Config, error) { return c.resolve() }

// badValue is the error for a field's value; flag is the field's flag.
func badValue(field, flag string, v any, why string) error {
	return fmt.Errorf("%w: %s (-%s) %v: %s", ErrConfig, field, flag, v, why)
}

func (c Config) resolve() (Config, error) {
	negative := []struct {
		field, flag string
		v           int64
	}{
		{"Loops", "loops", int64(c.Loops)},
		{"Timeout", "timeout", int64(c.Timeout)},
		{"MaxFrame", "max-frame", int64(c.MaxFrame)},
		{"DialTimeout", "", int64(c.DialTimeout)},
		{"DownFor", "", int64(c.DownFor)},
		{"MaxClientInflight", "max-inflight", int64(c.MaxClientInflight)},
		{"MaxBackendInflight", "", int64(c.MaxBackendInflight)},
		{"MaxConnBuffer", "", int64(c.MaxConnBuffer)},
		{"EjectTime", "eject-time", int64(c.EjectTime)},
		{"EjectMaxTime", "eject-max-time", int64(c.EjectMaxTime)},
		{"MaxMemory", "max-memory", c.MaxMemory},
		{"MaxConns", "max-conns", int64(c.MaxConns)},
		{"RegistryTTL", "registry-ttl", int64(c.RegistryTTL)},
	}
	for _, f := range negative {
		if f.v < 0 {
			if f.flag == "" {
				return c, fmt.Errorf("%w: %s %d: must not be negative", ErrConfig, f.field, f.v)
			}
			return c, fmt.Errorf("%w: %s (-%s) %d: must not be negative", ErrConfig, f.field, f.flag, f.v)
		}
	}
	if c.Listen == "" {
		c.Listen = defaultListen
	}
	if c.Loops == 0 {
		c.Loops = runtime.NumCPU()
	}
	if c.Timeout == 0 {
		c.Timeout = defaultTimeout
	}
	switch {
	case c.Retries == 0:
		c.Retries = defaultRetries
	case c.Retries < 0:
		c.Retries = 0
	}
	if c.MaxFrame == 0 {
		c.MaxFrame = codec.DefaultMaxFrame
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = defaultDialTimeout
	}
	if c.DownFor == 0 {
		c.DownFor = defaultDownFor
	}
	if c.MaxClientInflight == 0 {
		c.MaxClientInflight = defaultMaxClientInflight
	}
	if c.MaxBackendInflight == 0 {
		c.MaxBackendInflight = defaultMaxBackendInflight
	}
	least := 2*c.MaxFrame + codec.HeaderLen
	switch {
	case c.MaxConnBuffer == 0:
		c.MaxConnBuffer = max(defaultMaxConnBuffer, least)
	case c.MaxConnBuffer < least:
		return c, fmt.Errorf("%w: MaxConnBuffer %d: must be at least twice MaxFrame (-max-frame %d) plus a frame header, %d",
			ErrConfig, c.MaxConnBuffer, c.MaxFrame, least)
	}
	if c.MaxEjectedPercent < 0 || c.MaxEjectedPercent > 100 {
		return c, badValue("MaxEjectedPercent", "max-ejected-percent", c.MaxEjectedPercent, "not a percentage")
	}
	if c.EjectAfter == 0 {
		c.EjectAfter = defaultEjectAfter
	}
	if c.EjectTime == 0 {
		c.EjectTime = defaultEjectTime
	}
	switch {
	case c.EjectMaxTime == 0:
		c.EjectMaxTime = max(defaultEjectMaxTime, c.EjectTime)
	case c.EjectMaxTime < c.EjectTime:
		return c, badValue("EjectMaxTime", "eject-max-time", c.EjectMaxTime, "less than EjectTime (-eject-time) "+c.EjectTime.String())
	}
	if c.MaxEjectedPercent == 0 {
		c.MaxEjectedPercent = defaultMaxEjectedPercent
	}
	if c.MaxMemory == 0 {
		c.MaxMemory = defaultMaxMemory
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
	if _, err := parseBalancing(c.Balance, c.BalancePolicy); err != nil {
		return c, err
	}
	if c.Balance == "" {
		c.Balance = balanceRR.String()
	}
	if c.RegisterListen != "" && (c.RegisterListen == c.Listen || sameListener(c.RegisterListen, c.Listen)) {
		// Even with port 0: the engine tells its listeners apart by the
		// address as given.
		return c, fmt.Errorf("%w: RegisterListen (-register-listen) %q is the Listen address %q, or overlaps it", ErrConfig, c.RegisterListen, c.Listen)
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = defaultIdleTimeout
	}
	if c.FrameTimeout == 0 {
		c.FrameTimeout = defaultFrameTimeout
	}
	if err := checkStatic(c.Backends); err != nil {
		return c, err
	}
	c.Backends = append([]StaticBackend(nil), c.Backends...) // the caller's may change
	for i := range c.Backends {
		if c.Backends[i].Framing == "" {
			c.Backends[i].Framing = codec.Binary.String()
		}
	}
	limit := openFilesLimit()
	def, most := connBudget(limit, c.Loops)
	switch {
	case most < 1:
		return c, fmt.Errorf("server: the open-files limit %d is too low: the proxy keeps %d files for its own use; raise it (ulimit -n)", limit, limit-most)
	case c.MaxConns == 0:
		c.MaxConns = def
	case c.MaxConns > most:
		return c, fmt.Errorf("%w: MaxConns (-max-conns) %d is more than the open-files limit allows: %d files, of which %d are kept for the proxy's own use; raise the limit (ulimit -n) or lower MaxConns to at most %d",
			ErrConfig, c.MaxConns, limit, limit-most, most)
	}
	if _, err := parseRegistry(c.Registry); err != nil {
		return c, err
	}
	if strings.Contains(c.ProxyID, "/") {
		return c, badValue("ProxyID", "proxy-id", strconv.Quote(c.ProxyID), "must not contain '/'")
	}
	if c.RegistryTTL == 0 {
		c.RegistryTTL = defaultRegistryTTL
	}
	if c.ErrorLogEvery == 0 {
		c.ErrorLogEvery = defaultErrorLogEvery
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// checkStatic checks Config.Backends: unique ids, host:port addresses with
// a port, known framings.
func checkStatic(bs []StaticBackend) error {
	seen := map[int64]bool{}
	for i, b := range bs {
		where := fmt.Sprintf("Backends[%d] (id %d)", i, b.ID)
		if seen[b.ID] {
			return fmt.Errorf("%w: %s: the id is given twice", ErrConfig, where)
		}
		seen[b.ID] = true
		host, port, err := net.SplitHostPort(b.Addr)
		if err != nil || host == "" {
			return fmt.Errorf("%w: %s: addr %q is not host:port", ErrConfig, where, b.Addr)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%w: %s: addr %q: the port must be 1..65535", ErrConfig, where, b.Addr)
		}
		if _, err := parseFraming(b.Framing); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrConfig, where, err)
		}
	}
	return nil
}

// parseFraming parses StaticBackend.Framing.
func parseFraming(s string) (codec.Framing, error) {
	switch s {
	case "", "binary":
		return codec.Binary, nil
	case "text":
		return codec.Text, nil
	}
	return 0, fmt.Errorf("framing %q is not binary or text", s)
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
				return nil, fmt.Errorf("%w: RegisterCIDR (-register-cidr): %q is not a network or an address", ErrConfig, f)
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

// parseRegistry parses Config.Registry, "etcd://host:port[,host:port…]",
// into etcd's endpoints; nil when empty.
func parseRegistry(s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	rest, ok := strings.CutPrefix(s, "etcd://")
	if !ok {
		return nil, badValue("Registry", "registry", strconv.Quote(s), "want etcd://host:port[,host:port…]")
	}
	var eps []string
	for _, f := range strings.Split(rest, ",") {
		f = strings.TrimPrefix(strings.TrimSpace(f), "etcd://")
		if host, port, err := net.SplitHostPort(f); err != nil || host == "" || port == "" {
			return nil, badValue("Registry", "registry", strconv.Quote(s), strconv.Quote(f)+" is not host:port")
		}
		eps = append(eps, f)
	}
	return eps, nil
}

// sameListener reports whether listeners on a and b would take the same
// connections: the same port (not 0), on the same host or with either on
// every address (an empty or unspecified host). Both being SO_REUSEPORT,
// the kernel would let them bind.
func sameListener(a, b string) bool {
	ha, pa, err1 := net.SplitHostPort(a)
	hb, pb, err2 := net.SplitHostPort(b)
	if err1 != nil || err2 != nil || pa != pb || pa == "0" {
		return false
	}
	any := func(h string) bool { ip := net.ParseIP(h); return h == "" || ip != nil && ip.IsUnspecified() }
	return ha == hb || any(ha) || any(hb)
}
