package demo

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"time"

	"github.com/prism-proxy/prism/internal/flagx"
)

// ErrConfig is wrapped by the errors Run returns for an invalid Config.
var ErrConfig = errors.New("demo: invalid config")

// maxSize bounds Config.Size: an escaped payload must fit the proxy's 1 MiB
// frame, and a JSON escape at most doubles a byte ('"' -> '\"').
const maxSize = 256 << 10

// Progress selects how Run reports progress on stderr.
type Progress int

const (
	// ProgressAuto is a live line when stderr is a terminal, plain lines
	// otherwise.
	ProgressAuto Progress = iota
	// ProgressLive rewrites one line in place ("\r").
	ProgressLive
	// ProgressLines writes one plain line per interval.
	ProgressLines
	// ProgressOff writes nothing to stderr.
	ProgressOff
)

// Config configures a demo run. The zero value is ready: zero fields take the
// defaults given per field, negative ones are an error (ErrConfig).
type Config struct {
	// Duration is how long the clients send new requests; the requests still
	// in flight are then awaited. Zero: 10s.
	Duration time.Duration
	// Clients is the number of client connections. Zero: 8.
	Clients int
	// Pipeline is the number of requests each client keeps in flight. Zero: 8.
	Pipeline int
	// Policies is the number of policies, numbered 1..Policies; odd ones are
	// served by echo backends, even ones by upper-casing ones. Zero: 3.
	Policies int
	// Backends is the number of backend servers per policy. Zero: 2.
	Backends int
	// Loops is the number of the proxy's event loops. Zero: one per CPU.
	Loops int
	// Size is the largest payload in bytes; payloads are random, of 4 (or
	// Size, when smaller) to Size bytes. Zero: 256. At most 256 KiB.
	Size int
	// Progress selects the progress report on stderr. Zero: ProgressAuto.
	Progress Progress
	// ProgressEvery is the interval of progress reports. Zero: 250ms for the
	// live line, 1s for plain lines.
	ProgressEvery time.Duration
	// Seed seeds the random policies and payloads. Zero: a random seed.
	Seed uint64
	// Logger receives the proxy's and the backends' log. Nil: discarded, so
	// that the demo's own output stays readable.
	Logger *slog.Logger
}

// The defaults of Config's fields.
const (
	defaultDuration = 10 * time.Second
	defaultClients  = 8
	defaultPipeline = 8
	defaultPolicies = 3
	defaultBackends = 2
	defaultSize     = 256
)

// RegisterFlags defines the demo's command-line flags on fs, bound to c's
// fields: -duration, -clients, -pipeline, -policies, -backends, -loops and
// -size. It sets those fields to their defaults; parsing fs then sets the
// ones given. All but -loops must be positive when given (zero would read
// as the default): other values are refused by the parse. Call it before
// fs.Parse; c must outlive the parse.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	c.Duration = defaultDuration
	fs.Var(flagx.Check(&c.Duration, flagx.Positive), "duration", "how long the clients send requests")
	c.Clients = defaultClients
	fs.Var(flagx.Check(&c.Clients, flagx.Positive), "clients", "client connections")
	c.Pipeline = defaultPipeline
	fs.Var(flagx.Check(&c.Pipeline, flagx.Positive), "pipeline", "requests in flight per client connection")
	c.Policies = defaultPolicies
	fs.Var(flagx.Check(&c.Policies, flagx.Positive), "policies", "policies 1..n (odd ones echo, even ones upper-case)")
	c.Backends = defaultBackends
	fs.Var(flagx.Check(&c.Backends, flagx.Positive), "backends", "backend servers per policy")
	fs.IntVar(&c.Loops, "loops", 0, "proxy event loops; 0: one per CPU")
	c.Size = defaultSize
	fs.Var(flagx.Check(&c.Size, flagx.Positive), "size", "largest payload in `bytes`")
}

// resolve fills in the defaults and checks the ranges.
func (c Config) resolve() (Config, error) {
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"duration", int64(c.Duration)}, {"clients", int64(c.Clients)}, {"pipeline", int64(c.Pipeline)},
		{"policies", int64(c.Policies)}, {"backends", int64(c.Backends)}, {"loops", int64(c.Loops)},
		{"size", int64(c.Size)}, {"progress interval", int64(c.ProgressEvery)},
	} {
		if f.v < 0 {
			return c, fmt.Errorf("%w: negative %s", ErrConfig, f.name)
		}
	}
	if c.Progress < ProgressAuto || c.Progress > ProgressOff {
		return c, fmt.Errorf("%w: unknown progress mode %d", ErrConfig, c.Progress)
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.Clients, defaultClients)
	def(&c.Pipeline, defaultPipeline)
	def(&c.Policies, defaultPolicies)
	def(&c.Backends, defaultBackends)
	def(&c.Size, defaultSize)
	if c.Duration == 0 {
		c.Duration = defaultDuration
	}
	if c.Size > maxSize {
		return c, fmt.Errorf("%w: size %d is over %d bytes", ErrConfig, c.Size, maxSize)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}
