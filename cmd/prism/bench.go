package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"golang.org/x/term"

	"github.com/prism-proxy/prism/bench/loadgen"
	"github.com/prism-proxy/prism/client"
	"github.com/prism-proxy/prism/codec"
)

func init() {
	commands["bench"] = command{"generate load and measure throughput and latency", runBench}
}

// benchArgs is what the bench command's flags say: the loadgen.Config and
// the command's own output settings.
type benchArgs struct {
	cfg    loadgen.Config
	asJSON bool
	hgrm   string
	admin  string        // the proxy's admin address, to learn its policies
	policy bool          // -policy was given
	fs     *flag.FlagSet // for usage errors found past the parse
}

// parseBenchArgs reads the bench command's flags into a benchArgs; done
// reports that the command should return code (0 after -h, 2 after a usage
// error). The Config has no Progress.
func parseBenchArgs(args []string) (ba benchArgs, code int, done bool) {
	fs := flag.NewFlagSet("prism bench", flag.ContinueOnError)
	ba.fs = fs
	ba.cfg.RegisterFlags(fs)
	fs.BoolVar(&ba.asJSON, "json", false, "print one JSON document (schema "+loadgen.Schema+") instead of the summary")
	fs.StringVar(&ba.hgrm, "hgrm", "", "write the latency percentile spectrum (.hgrm, milliseconds) to `file`")
	fs.StringVar(&ba.admin, "admin", "", "the proxy's admin `address` (its -admin): without -policy, load the policies its backends serve")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: prism bench [flags]\n\n"+
			"Loads a proxy (or a backend directly) with requests and reports throughput,\n"+
			"errors by code and latency percentiles. Closed loop by default: each\n"+
			"connection keeps -pipeline requests in flight. With -rate, open loop:\n"+
			"requests leave on a fixed schedule and latency is counted from when each\n"+
			"should have been sent (coordinated omission corrected), beside the latency\n"+
			"from when it was sent. Without -policy it asks the proxy's admin endpoint\n"+
			"(-admin) which policies its backends serve and loads them all, or loads\n"+
			"policy 0. Before the run one request per policy checks that a backend\n"+
			"serves it: a no_backend answer stops the bench with status 1. The load\n"+
			"is printed at the start, progress while it runs (a line every 5s when\n"+
			"standard error is not a terminal). Exits 1 when no request got a reply.\n\nflags:\n")
		fs.PrintDefaults()
	}
	if code, done := parseFlags(fs, args); done {
		return ba, code, true
	}
	if fs.NArg() > 0 {
		return ba, usageError(fs, "unexpected argument %q", fs.Arg(0)), true
	}
	fs.Visit(func(f *flag.Flag) { ba.policy = ba.policy || f.Name == "policy" })
	return ba, 0, false
}

func runBench(args []string) int {
	ba, code, done := parseBenchArgs(args)
	if done {
		return code
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { // a second interrupt kills at once
		<-ctx.Done()
		stop()
	}()
	if err := choosePolicies(ctx, &ba); err != nil {
		fmt.Fprintln(os.Stderr, "prism bench:", err)
		return 1
	}
	cfg := ba.cfg
	head, err := cfg.Header()
	if err != nil {
		return usageError(ba.fs, "%v", err)
	}
	fmt.Fprintln(os.Stderr, "prism bench:", head)
	if term.IsTerminal(int(os.Stderr.Fd())) {
		cfg.Progress = func(p loadgen.Progress) {
			fmt.Fprintf(os.Stderr, "\r%s\x1b[K", loadgen.FormatProgress(p))
			if p.Final {
				fmt.Fprintln(os.Stderr)
			}
		}
	} else {
		cfg.Progress = statusLines(os.Stderr, statusEvery)
	}
	res, err := loadgen.Run(ctx, cfg)
	switch {
	case errors.Is(err, loadgen.ErrConfig):
		return usageError(ba.fs, "%v", err)
	case res == nil:
		fmt.Fprintln(os.Stderr, "prism bench:", err)
		return 1
	case err != nil:
		fmt.Fprintln(os.Stderr, "prism bench: stopped early:", err)
	}
	if ba.asJSON {
		err = res.WriteJSON(os.Stdout)
		for _, w := range res.Warnings() {
			fmt.Fprintln(os.Stderr, "prism bench: warning:", w)
		}
	} else {
		err = res.WriteSummary(os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "prism bench:", err)
		return 1
	}
	if ba.hgrm != "" {
		if err := writeHgrm(ba.hgrm, res); err != nil {
			fmt.Fprintln(os.Stderr, "prism bench:", err)
			return 1
		}
	}
	if res.Replies == 0 {
		return 1
	}
	return 0
}

func writeHgrm(path string, res *loadgen.Result) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := res.WriteHgrm(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// statusEvery spaces the progress lines when standard error is not a
// terminal (a log file, CI): a line a second would bury the rest.
const statusEvery = 5 * time.Second

// statusLines is a Progress that writes a line to w every every of the
// run, not the final call (the summary follows).
func statusLines(w io.Writer, every time.Duration) func(loadgen.Progress) {
	next := every
	return func(p loadgen.Progress) {
		if p.Final || p.Elapsed < next {
			return
		}
		next = p.Elapsed.Truncate(every) + every
		fmt.Fprintln(w, "prism bench:", loadgen.FormatProgress(p))
	}
}

// choosePolicies settles the policies to load: without -policy, those the
// backends of the proxy at -admin serve (all of them, mixed). Then it
// sends one request per policy to the first target and refuses a policy
// answered no_backend, rather than measuring errors. Other failures are
// left to the run, which reports them.
func choosePolicies(ctx context.Context, ba *benchArgs) error {
	cfg := &ba.cfg
	if !ba.policy && ba.admin != "" {
		pols, err := servedPolicies(ctx, ba.admin)
		if err != nil {
			return fmt.Errorf("learning the policies from -admin %s: %w (give -policy)", ba.admin, err)
		}
		if len(pols) == 0 {
			return fmt.Errorf("no backend is registered with the proxy (%s/backends lists none): start one, or give -policy", ba.admin)
		}
		cfg.Policies = pols
	}
	if len(cfg.Targets) == 0 {
		return nil // the run says so
	}
	target := cfg.Targets[0]
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c, err := client.DialOptions(pctx, target, client.Options{Framing: cfg.Framing})
	if err != nil {
		return nil
	}
	defer c.Close()
	for _, pol := range cfg.Policies {
		_, err := c.Call(pctx, cfg.SrcID, pol, "prism bench: probe")
		var er *client.ErrorReply
		if !errors.As(err, &er) || er.Code != codec.CodeNoBackend {
			continue
		}
		why := "give the policy of a running backend with -policy, or the proxy's -admin address with -admin to load the policies its backends serve"
		if !ba.policy {
			why = "no -policy given, so policy 0 was tried: " + why
		}
		return fmt.Errorf("no backend serves policy %d at %s (%s)", pol, target, why)
	}
	return nil
}

// servedPolicies lists the policies of the backends that the admin
// endpoint at addr reports, in order.
func servedPolicies(ctx context.Context, addr string) ([]int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/backends", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/backends: %s", resp.Status)
	}
	var bs []struct {
		Policy int64 `json:"policy"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&bs); err != nil {
		return nil, fmt.Errorf("/backends: %w", err)
	}
	var pols []int64
	for _, b := range bs {
		if !slices.Contains(pols, b.Policy) {
			pols = append(pols, b.Policy)
		}
	}
	slices.Sort(pols)
	return pols, nil
}
