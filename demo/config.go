package demo

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
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
	def(&c.Clients, 8)
	def(&c.Pipeline, 8)
	def(&c.Policies, 3)
	def(&c.Backends, 2)
	def(&c.Size, 256)
	if c.Duration == 0 {
		c.Duration = 10 * time.Second
	}
	if c.Size > maxSize {
		return c, fmt.Errorf("%w: size %d is over %d bytes", ErrConfig, c.Size, maxSize)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}
