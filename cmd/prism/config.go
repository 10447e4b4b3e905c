package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/prism-proxy/prism/server"
)

// The proxy's configuration comes from three places, each overriding the
// one before: the file of -config (or PRISM_CONFIG), the environment
// (PRISM_ and the flag's name in upper case, dashes as underscores:
// PRISM_MAX_CONNS), and the command line. The file is a YAML mapping whose
// keys are the flags' names and whose values are written as on the command
// line, plus "backends", the static backends:
//
//	listen: 0.0.0.0:9000
//	timeout: 3s
//	max-conns: 10000
//	backends:
//	  - {id: 1, policy: 7, addr: "10.0.0.5:9101"}
//	  - {id: 2, policy: 7, addr: "10.0.0.6:9101", framing: text}
//
// Every value goes through its flag's parser, so the file, the environment
// and the command line accept and refuse the same values.

// notInFile are the proxy flags that are not settings: neither the file nor
// the environment may give them.
var notInFile = []string{"config", "check"}

// envName is the environment variable of flag name.
func envName(name string) string {
	return "PRISM_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// applyFile sets fs's flags from the YAML configuration data, read from
// path (for the messages). An unknown key, a key given twice, a value that
// is not a scalar or that its flag refuses is an error naming the key and
// its line.
func applyFile(fs *flag.FlagSet, path string, data []byte, backends *[]server.StaticBackend) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("%s: %w", path, err) // its message has the line
	}
	if len(doc.Content) == 0 {
		return nil // an empty file
	}
	top := doc.Content[0]
	if top.Kind != yaml.MappingNode {
		return fmt.Errorf("%s:%d: want a mapping of settings (key: value)", path, top.Line)
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(top.Content); i += 2 {
		k, v := top.Content[i], top.Content[i+1]
		at := fmt.Sprintf("%s:%d", path, k.Line)
		if first, ok := seen[k.Value]; ok {
			return fmt.Errorf("%s: %s: given twice (first at line %d)", at, k.Value, first)
		}
		seen[k.Value] = k.Line
		if k.Value == "backends" {
			bs, err := decodeBackends(path, v)
			if err != nil {
				return err
			}
			*backends = bs
			continue
		}
		f := fs.Lookup(k.Value)
		if f == nil || slices.Contains(notInFile, k.Value) {
			return fmt.Errorf("%s: unknown key %q", at, k.Value)
		}
		if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
			return fmt.Errorf("%s:%d: %s: want a single value", path, v.Line, k.Value)
		}
		if err := fs.Set(k.Value, v.Value); err != nil {
			return fmt.Errorf("%s:%d: %s: invalid value %q: %w", path, v.Line, k.Value, v.Value, err)
		}
	}
	return nil
}

// decodeBackends reads the "backends" sequence of a configuration file.
func decodeBackends(path string, seq *yaml.Node) ([]server.StaticBackend, error) {
	if seq.Tag == "!!null" {
		return nil, nil
	}
	if seq.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("%s:%d: backends: want a list of {id, policy, addr, framing}", path, seq.Line)
	}
	var out []server.StaticBackend
	for _, item := range seq.Content {
		if item.Kind != yaml.MappingNode {
			return nil, fmt.Errorf("%s:%d: backends: want {id, policy, addr, framing}", path, item.Line)
		}
		var b server.StaticBackend
		has := map[string]bool{}
		for i := 0; i+1 < len(item.Content); i += 2 {
			k, v := item.Content[i], item.Content[i+1]
			at := fmt.Sprintf("%s:%d: backends: %s", path, v.Line, k.Value)
			if has[k.Value] {
				return nil, fmt.Errorf("%s: given twice", at)
			}
			has[k.Value] = true
			if v.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("%s: want a single value", at)
			}
			var err error
			switch k.Value {
			case "id":
				b.ID, err = strconv.ParseInt(v.Value, 10, 64)
			case "policy":
				b.Policy, err = strconv.ParseInt(v.Value, 10, 64)
			case "addr":
				b.Addr = v.Value
			case "framing":
				b.Framing = v.Value
				if v.Value != "binary" && v.Value != "text" {
					err = errors.New("binary or text")
				}
			default:
				return nil, fmt.Errorf("%s:%d: backends: unknown key %q", path, k.Line, k.Value)
			}
			if err != nil {
				return nil, fmt.Errorf("%s: invalid value %q: want %s", at, v.Value, wantOf(k.Value, err))
			}
		}
		for _, k := range []string{"id", "policy", "addr"} {
			if !has[k] {
				return nil, fmt.Errorf("%s:%d: backends: %s missing", path, item.Line, k)
			}
		}
		out = append(out, b)
	}
	return out, nil
}

func wantOf(key string, err error) string {
	if key == "framing" {
		return err.Error()
	}
	return "an integer"
}

// applyEnv sets fs's flags from the PRISM_* variables that lookup finds.
func applyEnv(fs *flag.FlagSet, lookup func(string) (string, bool)) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || slices.Contains(notInFile, f.Name) {
			return
		}
		name := envName(f.Name)
		v, ok := lookup(name)
		if !ok {
			return
		}
		if serr := fs.Set(f.Name, v); serr != nil {
			err = fmt.Errorf("environment %s=%q: invalid value for -%s: %w", name, v, f.Name, serr)
		}
	})
	return err
}

// effective lists pa's settings, with the server's resolved (cfg, from
// Config.Check), in the configuration file's form: flag name and value, in
// the flags' order. The register token is not shown.
func effective(pa proxyArgs, cfg server.Config) [][2]string {
	var out proxyArgs
	fs := newProxyFlagSet(&out)
	out = pa // the flags' values point into out
	out.cfg = cfg
	var kv [][2]string
	fs.VisitAll(func(f *flag.Flag) {
		switch f.Name {
		case "config", "check", "port", "v": // -port is in listen, -v in log-level
			return
		case "register-token":
			if cfg.RegisterToken != "" {
				kv = append(kv, [2]string{f.Name, `"(hidden)"`})
				return
			}
		case "log-level":
			kv = append(kv, [2]string{f.Name, strings.ToLower(pa.level().String())})
			return
		}
		v := f.Value.String()
		if g, ok := f.Value.(flag.Getter); ok {
			if _, isString := g.Get().(string); isString {
				v = strconv.Quote(v)
			}
		}
		kv = append(kv, [2]string{f.Name, v})
	})
	return kv
}

// writeEffective writes the effective configuration as a configuration
// file: it can be read back (but for the hidden token).
func writeEffective(w io.Writer, pa proxyArgs, cfg server.Config) {
	for _, kv := range effective(pa, cfg) {
		fmt.Fprintf(w, "%s: %s\n", kv[0], kv[1])
	}
	if len(cfg.Backends) == 0 {
		fmt.Fprintln(w, "backends: []")
		return
	}
	fmt.Fprintln(w, "backends:")
	for _, b := range cfg.Backends {
		fmt.Fprintf(w, "  - {id: %d, policy: %d, addr: %q, framing: %s}\n", b.ID, b.Policy, b.Addr, b.Framing)
	}
}

// effectiveAttrs is the effective configuration as log attributes, for one
// structured line.
func effectiveAttrs(pa proxyArgs, cfg server.Config) []any {
	var attrs []any
	for _, kv := range effective(pa, cfg) {
		v := kv[1]
		if u, err := strconv.Unquote(v); err == nil {
			v = u
		}
		attrs = append(attrs, slog.String(kv[0], v))
	}
	var bs []string
	for _, b := range cfg.Backends {
		bs = append(bs, fmt.Sprintf("%d/%d/%s/%s", b.ID, b.Policy, b.Addr, b.Framing))
	}
	return append(attrs, slog.String("backends", strings.Join(bs, ",")))
}

// parseLevel parses -log-level.
func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	err := l.UnmarshalText([]byte(s))
	return l, err
}

// levelFlag is -log-level: debug, info, warn or error.
type levelFlag slog.Level

func (l *levelFlag) String() string {
	if l == nil {
		return ""
	}
	return strings.ToLower(slog.Level(*l).String())
}

func (l *levelFlag) Set(s string) error {
	v, err := parseLevel(s)
	if err != nil {
		return errors.New("want debug, info, warn or error")
	}
	*l = levelFlag(v)
	return nil
}

// layerProxyArgs reads the proxy's settings from the configuration file
// (-config, or PRISM_CONFIG), then the environment (lookup), then args,
// each over the one before. args must parse (parseProxyArgs checked them).
func layerProxyArgs(args []string, lookup func(string) (string, bool)) (proxyArgs, error) {
	var first proxyArgs
	fs := newProxyFlagSet(&first)
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		return first, err
	}
	path := first.config
	if path == "" {
		path, _ = lookup("PRISM_CONFIG")
	}
	var pa proxyArgs
	fs = newProxyFlagSet(&pa)
	fs.SetOutput(io.Discard)
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return pa, err
		}
		if err := applyFile(fs, path, data, &pa.cfg.Backends); err != nil {
			return pa, err
		}
	}
	if err := applyEnv(fs, lookup); err != nil {
		return pa, err
	}
	if err := fs.Parse(args); err != nil {
		return pa, err
	}
	pa.config = path
	if pa.port != 0 {
		pa.cfg.Listen = net.JoinHostPort("localhost", strconv.Itoa(pa.port))
	}
	if pa.cfg.Loops <= 0 {
		pa.cfg.Loops = runtime.NumCPU()
	}
	return pa, nil
}

// level is the log level the settings ask for: -v is debug.
func (pa *proxyArgs) level() slog.Level {
	if pa.verbose {
		return slog.LevelDebug
	}
	return slog.Level(pa.logLevel)
}

// checkProxyConfig is prism proxy -check: the effective configuration on
// standard output and status 0, or the error on standard error and 2.
func checkProxyConfig(pa proxyArgs) int {
	server.RaiseOpenFilesLimit() // as the proxy would: the connection cap derives from it
	cfg, err := pa.cfg.Check()
	if err != nil {
		fmt.Fprintln(os.Stderr, "prism proxy:", err)
		return 2
	}
	writeEffective(os.Stdout, pa, cfg)
	return 0
}
