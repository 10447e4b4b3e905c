package loadgen

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/prism-proxy/prism/codec"

	"github.com/prism-proxy/prism/internal/flagx"
)

var (
	// ErrConfig means the Config cannot describe a run; the message says why.
	ErrConfig = errors.New("loadgen: bad config")
	// ErrConnect means no connection to any target could be established.
	ErrConnect = errors.New("loadgen: could not connect")
)

// Config describes one run. Fields left zero take the defaults given in their
// comments; only Targets is required. Defaults are resolved in one place,
// Config.resolve, and the resolved values are reported in the Result.
type Config struct {
	// Targets are the addresses to load: proxies, or a backend's own port
	// for the direct baseline. Connection i goes to Targets[i%len(Targets)].
	Targets []string
	// Conns is the number of connections. Zero means 32.
	Conns int
	// Pipeline, in closed loop, is the number of requests each connection
	// keeps in flight; zero means 16. In open loop it caps the requests in
	// flight on one connection (a connection at the cap waits before
	// sending, and the wait shows in corrected latency); zero means 1024.
	Pipeline int
	// Rate is the target request rate, in requests per second over all
	// connections. Zero means closed loop; positive means open loop.
	Rate float64
	// Duration is how long the measurement lasts, after Warmup. Zero means
	// 10s when Requests is zero, and no limit otherwise. With both set the
	// run ends at whichever comes first.
	Duration time.Duration
	// Requests is the number of requests to send after Warmup (the -n
	// flag). Zero means no limit.
	Requests int64
	// Warmup is a period at the start whose requests are sent but not
	// counted: counters and histograms start after it. Zero means 1s when
	// Requests is zero and none otherwise; negative means none.
	Warmup time.Duration
	// Size is the payload size in bytes. Zero means 64; negative means an
	// empty payload.
	Size int
	// Policies are the policies of the requests; with several, each
	// connection cycles through them request by request. Nil means {0}.
	Policies []int64
	// SrcID is the client id sent as srcid. Zero means 1.
	SrcID int64
	// Timeout is how long a connection may go without an answer while it
	// has requests in flight before they all count as "timeout" and the
	// connection is redialed; it also bounds each dial. Zero means 10s
	// (above the proxy's default 5s, so its own timeout errors come
	// through); negative means no limit (dials then get 10s).
	Timeout time.Duration
	// Framing is the framing to speak. Zero means codec.Binary.
	Framing codec.Framing
	// Dial opens a connection. Nil means a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Progress, if set, is called about once a second from one goroutine
	// during the run, and once at its end. It should return quickly.
	Progress func(Progress)
}

// Progress is a live view of a run, as passed to Config.Progress.
type Progress struct {
	// Elapsed is the time since the run started, warmup included.
	Elapsed time.Duration
	// Warmup reports that the run is still warming up: counts are zero.
	Warmup bool
	// Final reports the last call, made when the run has ended.
	Final bool
	// Sent, Replies and Errors count requests and answers since the
	// measurement started. They are published by each connection when it
	// is about to block, so they lag a little.
	Sent, Replies, Errors int64
	// Last is the most recent whole second of the measurement; its T is
	// zero before the first one.
	Last Second
}

// The defaults of Config's fields (Targets has none: defaultTarget is the
// -proxy flag's).
const (
	defaultTarget      = "127.0.0.1:9000"
	defaultPolicy      = 0
	defaultSrcID       = 1
	defaultConns       = 32
	defaultPipeline    = 16
	defaultOpenCap     = 1024
	defaultDuration    = 10 * time.Second
	defaultWarmup      = time.Second
	defaultSize        = 64
	defaultTimeout     = 10 * time.Second
	defaultDialTimeout = 10 * time.Second
	maxSize            = 64 << 20
)

// resolve fills in defaults and checks the config.
func (c Config) resolve() (Config, error) {
	if len(c.Targets) == 0 {
		return c, fmt.Errorf("%w: no target address", ErrConfig)
	}
	c.Targets = append([]string(nil), c.Targets...)
	for _, t := range c.Targets {
		if t == "" {
			return c, fmt.Errorf("%w: empty target address", ErrConfig)
		}
	}
	switch {
	case c.Conns == 0:
		c.Conns = defaultConns
	case c.Conns < 0:
		return c, fmt.Errorf("%w: %d connections", ErrConfig, c.Conns)
	}
	switch {
	case c.Rate < 0 || c.Rate != c.Rate:
		return c, fmt.Errorf("%w: rate %v", ErrConfig, c.Rate)
	case c.Pipeline < 0:
		return c, fmt.Errorf("%w: pipeline %d", ErrConfig, c.Pipeline)
	case c.Pipeline == 0 && c.Rate > 0:
		c.Pipeline = defaultOpenCap
	case c.Pipeline == 0:
		c.Pipeline = defaultPipeline
	}
	if c.Pipeline > 1<<20 {
		return c, fmt.Errorf("%w: pipeline %d is above 1048576", ErrConfig, c.Pipeline)
	}
	if c.Requests < 0 {
		return c, fmt.Errorf("%w: %d requests", ErrConfig, c.Requests)
	}
	switch {
	case c.Duration < 0:
		return c, fmt.Errorf("%w: duration %v", ErrConfig, c.Duration)
	case c.Duration == 0 && c.Requests == 0:
		c.Duration = defaultDuration
	}
	switch {
	case c.Warmup < 0:
		c.Warmup = 0
	case c.Warmup == 0 && c.Requests == 0:
		c.Warmup = defaultWarmup
	}
	switch {
	case c.Size == 0:
		c.Size = defaultSize
	case c.Size < 0:
		c.Size = 0
	}
	if c.Size > maxSize {
		return c, fmt.Errorf("%w: size %d is above %d", ErrConfig, c.Size, maxSize)
	}
	if len(c.Policies) == 0 {
		c.Policies = []int64{defaultPolicy}
	} else {
		c.Policies = append([]int64(nil), c.Policies...)
	}
	if c.SrcID == 0 {
		c.SrcID = defaultSrcID
	}
	if c.Timeout == 0 {
		c.Timeout = defaultTimeout
	}
	switch c.Framing {
	case codec.Unknown:
		c.Framing = codec.Binary
	case codec.Binary, codec.Text:
	default:
		return c, fmt.Errorf("%w: framing %d", ErrConfig, c.Framing)
	}
	if c.Dial == nil {
		var d net.Dialer
		c.Dial = d.DialContext
	}
	return c, nil
}

// dialTimeout bounds one dial.
func (c *Config) dialTimeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return defaultDialTimeout
}

// RegisterFlags defines the load generator's command-line flags on fs, bound
// to c's fields: -proxy (comma-separated Targets), -conns, -pipeline, -rate,
// -duration, -n (Requests), -warmup, -size, -policy (a comma list), -id
// (SrcID), -timeout and -text (the text framing). It sets those fields to
// the defaults the flags show; parsing fs then sets the ones given. Call it
// before fs.Parse; c must outlive the parse.
//
// Where a flag's 0 reads as "off" (-warmup, -timeout: none; -size: an empty
// payload) it sets the field negative, since a zero field means the
// default. -conns and -pipeline, when given, must be positive, and -size not
// negative: other values are refused by the parse. Fields whose default
// depends on others (Pipeline, Duration, Warmup) stay zero, for resolve.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	c.Targets = []string{defaultTarget}
	fs.Var(flagx.List{P: &c.Targets}, "proxy", "`addresses` to load, comma-separated (a backend's own port measures the direct path)")
	c.Conns = defaultConns
	fs.Var(flagx.Check(&c.Conns, flagx.Positive), "conns", "connections, spread over the addresses")
	c.Pipeline = 0
	fs.Var(flagx.Check(&c.Pipeline, flagx.Positive), "pipeline", fmt.Sprintf("requests in flight per connection: closed loop (default %d), or\n"+
		"the most in flight per connection in open loop (default %d)", defaultPipeline, defaultOpenCap))
	fs.Float64Var(&c.Rate, "rate", 0, "open loop at this many requests/s over all connections (0: closed loop)")
	fs.DurationVar(&c.Duration, "duration", 0, fmt.Sprintf("measure for this long after warmup (default %v without -n)", defaultDuration))
	fs.Int64Var(&c.Requests, "n", 0, "send this many requests after warmup, then stop")
	c.Warmup = 0
	fs.Var(flagx.Off(&c.Warmup, "none"), "warmup", fmt.Sprintf("send, but do not count, for this long first (default %v without -n, none with it)", defaultWarmup))
	c.Size = defaultSize
	fs.Var(flagx.Off(&c.Size, "an empty payload"), "size", "payload `bytes`")
	c.Policies = []int64{defaultPolicy}
	fs.Var((*policiesFlag)(&c.Policies), "policy", "`policies` of the requests; a comma list mixes them round-robin per request")
	fs.Int64Var(&c.SrcID, "id", defaultSrcID, "client id (srcid) of the requests")
	c.Timeout = defaultTimeout
	fs.Var(flagx.Off(&c.Timeout, "never"), "timeout", "a connection with requests in flight and no answer for this long\n"+
		"counts them as \"timeout\" and redials (0: never)")
	c.Framing = codec.Binary
	fs.BoolFunc("text", "use the text framing instead of binary", func(s string) error {
		text, err := strconv.ParseBool(s)
		c.Framing = codec.Binary
		if text {
			c.Framing = codec.Text
		}
		return err
	})
}

// policiesFlag is Config.Policies as a comma-separated list.
type policiesFlag []int64

func (f *policiesFlag) String() string {
	if f == nil {
		return ""
	}
	s := make([]string, len(*f))
	for i, p := range *f {
		s[i] = strconv.FormatInt(p, 10)
	}
	return strings.Join(s, ",")
}

func (f *policiesFlag) Set(s string) error {
	var list []int64
	for _, p := range strings.Split(s, ",") {
		v, err := strconv.ParseInt(strings.TrimSpace(p), 10, 64)
		if err != nil {
			return fmt.Errorf("bad policy %q", p)
		}
		list = append(list, v)
	}
	*f = list
	return nil
}
