package backend

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/prism-proxy/prism/codec"

	"github.com/prism-proxy/prism/internal/flagx"
)

// The defaults, in one place: New resolves zero fields to them and
// RegisterFlags shows them.
const (
	defaultListen = "127.0.0.1:0"
	defaultLoops  = 1
	defaultRetry  = 2 * time.Second

	defaultReplacedRetry = time.Minute
	defaultResolveEvery  = 30 * time.Second
	// The command's own defaults: a backend registers with a proxy on its
	// default address, as server 1.
	defaultProxy = "127.0.0.1:9000"
	defaultID    = 1
)

// Mode is how a backend server answers.
type Mode uint8

const (
	// Echo answers with the request's payload.
	Echo Mode = iota
	// Upper answers with the payload upper-cased.
	Upper
)

// ParseMode parses "echo" (or "") or "upper".
func ParseMode(s string) (Mode, error) {
	switch s {
	case "echo", "":
		return Echo, nil
	case "upper":
		return Upper, nil
	}
	return Echo, fmt.Errorf("backend: unknown mode %q (want echo or upper)", s)
}

// String returns "echo" or "upper", as ParseMode takes them.
func (m Mode) String() string {
	if m == Upper {
		return "upper"
	}
	return "echo"
}

// Config configures a Server. Zero values take the defaults given per field.
type Config struct {
	// ID is the server id announced in setups and carried in replies.
	ID int64
	// Policy is the privacy policy the server serves.
	Policy int64
	// Listen is the data address. Default "127.0.0.1:0" (a free port).
	Listen string
	// Proxies are the proxies to register with, each host:port; empty
	// serves the data port only. A literal IP address gets one lease. A
	// name is resolved (LookupHost) and gets a lease with every address it
	// resolves to, the IPv4 ones, or the IPv6 ones when it has no IPv4
	// address (a dual-stack proxy would otherwise be registered with twice,
	// and its second registration would replace the first); it is resolved
	// again every ResolveEvery, new addresses getting a lease and vanished
	// ones having theirs closed. Addresses found more than once get one
	// lease.
	Proxies []string
	// ResolveEvery is how often the names of Proxies are resolved again.
	// Zero: 30s; negative: only at Start.
	ResolveEvery time.Duration
	// LookupHost resolves a proxy name to its addresses. Nil:
	// net.DefaultResolver.LookupHost. A failed lookup keeps the name's
	// addresses of the last one that succeeded, except an authoritative
	// "no such host" (a *net.DNSError with IsNotFound), which means none.
	LookupHost func(ctx context.Context, host string) ([]string, error)
	// Mode of answering. Zero: Echo.
	Mode Mode
	// Token is sent in setups when not empty.
	Token string
	// Framing of the setups, which the proxy then uses on data connections.
	// Zero: codec.Binary.
	Framing codec.Framing
	// Loops is the number of event loops. Zero or negative: 1.
	Loops int
	// MaxFrame bounds a request's size. Zero or negative: codec.DefaultMaxFrame.
	MaxFrame int
	// MaxConns caps the data connections open at once; one past it is
	// closed as it opens. gnet stops a loop, and the server, when accept
	// meets EMFILE: the cap keeps the descriptors under the open-files
	// limit. Zero: the limit less 64 and a sixteenth of it, which is also
	// the most New takes; negative is refused.
	MaxConns int
	// Retry is the longest wait between attempts to (re)register. Zero or
	// negative: 2s.
	Retry time.Duration
	// ReplacedRetry is how long a server whose registration a proxy revoked
	// (another server registered the same id) waits before registering
	// again: long enough that two servers sharing an id by mistake do not
	// fight, short enough that one replaced by an impostor comes back.
	// Zero: 1m; negative: never register with that proxy again.
	ReplacedRetry time.Duration
	// Delay holds every reply this long after its request arrived (a
	// slow backend, for tests and benchmarks), without holding the event
	// loop: replies are written in order from a goroutine per connection.
	// Zero or negative: none.
	Delay time.Duration
	// Logger receives the server's log. Nil: slog.Default().
	Logger *slog.Logger
}

// resolve returns c with the defaults in place of zero values.
func (c Config) resolve() Config {
	if c.Listen == "" {
		c.Listen = defaultListen
	}
	if c.Framing == codec.Unknown {
		c.Framing = codec.Binary
	}
	if c.Loops <= 0 {
		c.Loops = defaultLoops
	}
	if c.MaxFrame <= 0 {
		c.MaxFrame = codec.DefaultMaxFrame
	}
	if c.Retry <= 0 {
		c.Retry = defaultRetry
	}
	if c.ReplacedRetry == 0 {
		c.ReplacedRetry = defaultReplacedRetry
	}
	if c.ResolveEvery == 0 {
		c.ResolveEvery = defaultResolveEvery
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// RegisterFlags defines the backend command's flags on fs, each setting a
// field of c when parsed: -proxy (comma-separated; empty: serve only),
// -resolve-every, -id,
// -policy, -host and -port (together Listen), -mode, -token, -text (the text
// framing), -loops and -delay. The flags' defaults are c's fields, with zero fields
// resolved as New would, except that an ID of zero becomes 1 and nil Proxies
// become the proxy's default address, 127.0.0.1:9000. Call it before
// fs.Parse; c must outlive the parse.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	*c = c.resolve()
	if c.ID == 0 {
		c.ID = defaultID
	}
	if c.Proxies == nil {
		c.Proxies = []string{defaultProxy}
	}
	fs.Var(flagx.List{P: &c.Proxies}, "proxy", "comma-separated proxy `addresses` (host:port) to register with; "+
		"a name gets a lease with each address it resolves to; empty: serve only")
	fs.DurationVar(&c.ResolveEvery, "resolve-every", c.ResolveEvery,
		"resolve the names of -proxy again this often (new addresses registered with, vanished ones left); negative: only at start")
	fs.Int64Var(&c.ID, "id", c.ID, "server id")
	fs.Int64Var(&c.Policy, "policy", c.Policy, "privacy policy served")
	fs.Var(portFlag{&c.Listen}, "port", "data `port`; 0: a free one")
	fs.Var(hostFlag{&c.Listen}, "host", "data `address` to listen on")
	fs.Var(modeFlag{&c.Mode}, "mode", "answer `mode`: echo, or upper (payload upper-cased)")
	fs.StringVar(&c.Token, "token", c.Token, "registration token")
	fs.BoolFunc("text", "register with the text framing (the proxy then speaks text to this backend)",
		func(s string) error {
			text, err := strconv.ParseBool(s)
			c.Framing = codec.Binary
			if text {
				c.Framing = codec.Text
			}
			return err
		})
	fs.IntVar(&c.Loops, "loops", c.Loops, "event loops")
	fs.IntVar(&c.MaxConns, "max-conns", c.MaxConns, "data `connections` open at once, past which new ones are closed; 0: from the open-files limit")
	fs.DurationVar(&c.Delay, "delay", c.Delay, "answer every request this long after it arrived (a slow backend); 0: at once")
	fs.DurationVar(&c.ReplacedRetry, "replaced-retry", c.ReplacedRetry,
		"after another server registered this id, wait this long before registering again; negative: never")
}

// hostFlag and portFlag set the two halves of a listen address.
type (
	hostFlag struct{ listen *string }
	portFlag struct{ listen *string }
)

func splitListen(listen *string) (host, port string) {
	if listen == nil {
		return "", ""
	}
	host, port, err := net.SplitHostPort(*listen)
	if err != nil {
		return *listen, ""
	}
	return host, port
}

func (f hostFlag) String() string { h, _ := splitListen(f.listen); return h }

func (f hostFlag) Set(s string) error {
	_, port := splitListen(f.listen)
	*f.listen = net.JoinHostPort(s, port)
	return nil
}

func (f portFlag) String() string {
	if _, p := splitListen(f.listen); p != "" {
		return p
	}
	return "0"
}

func (f portFlag) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("backend: port %q is not 0..65535", s)
	}
	host, _ := splitListen(f.listen)
	*f.listen = net.JoinHostPort(host, strconv.Itoa(n))
	return nil
}

type modeFlag struct{ p *Mode }

func (f modeFlag) String() string {
	if f.p == nil {
		return ""
	}
	return f.p.String()
}

func (f modeFlag) Set(s string) error {
	m, err := ParseMode(s)
	if err == nil {
		*f.p = m
	}
	return err
}

// defaultMaxConns is the data connection cap for an open-files limit of
// limit (0: unknown): room is kept for the leases, the engine's pollers
// and the process's own files, and for the connection a loop accepts
// before OnOpen refuses it.
func defaultMaxConns(limit int) int {
	if limit <= 0 {
		return 1 << 20
	}
	return max(limit-64-limit/16, 1)
}
