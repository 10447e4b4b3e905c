package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prism-proxy/prism/client"
	"github.com/prism-proxy/prism/codec"
)

func init() {
	commands["client"] = command{"send requests and print the replies", runClient}
}

// clientArgs is what the client command's flags say.
type clientArgs struct {
	addr    string
	id      int64
	policy  int64
	count   int
	timeout time.Duration
	opts    client.Options
	words   []string // the payload's words; none: read standard input
}

// parseClientArgs reads the client command's flags into a clientArgs; done
// reports that the command should return code (0 after -h, 2 after a usage
// error).
func parseClientArgs(args []string) (ca clientArgs, code int, done bool) {
	fs := flag.NewFlagSet("prism client", flag.ContinueOnError)
	fs.StringVar(&ca.addr, "proxy", "127.0.0.1:9000", "proxy `address`")
	fs.Int64Var(&ca.id, "id", 1, "client id (srcid)")
	fs.Int64Var(&ca.policy, "policy", 0, "privacy policy of the requests")
	fs.IntVar(&ca.count, "n", 1, "send the payload this many times, pipelined")
	fs.DurationVar(&ca.timeout, "timeout", 10*time.Second, "give up after this long")
	fs.BoolFunc("text", "use the text framing instead of binary", func(s string) error {
		text, err := strconv.ParseBool(s)
		ca.opts.Framing = codec.Binary
		if text {
			ca.opts.Framing = codec.Text
		}
		return err
	})
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: prism client [flags] [payload words...]\n\n"+
			"Sends the words, joined by spaces, as one request's payload (-n times), or with\n"+
			"no words one request per line of standard input. Prints each reply as one JSON\n"+
			"line; exits 1 if any answer was an error.\n\nflags:\n")
		fs.PrintDefaults()
	}
	if code, done := parseFlags(fs, args); done {
		return ca, code, true
	}
	ca.words = fs.Args()
	return ca, 0, false
}

func runClient(args []string) int {
	ca, code, done := parseClientArgs(args)
	if done {
		return code
	}
	var payloads []string
	if len(ca.words) > 0 {
		p := strings.Join(ca.words, " ")
		for range ca.count {
			payloads = append(payloads, p)
		}
	} else {
		sc := bufio.NewScanner(os.Stdin)
		sc.Buffer(make([]byte, 64<<10), codec.DefaultMaxFrame)
		for sc.Scan() {
			payloads = append(payloads, sc.Text())
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), ca.timeout)
	defer cancel()
	failed, err := sendAll(ctx, ca.addr, ca.opts, ca.id, ca.policy, payloads, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "prism client:", err)
		return 1
	}
	if failed {
		return 1
	}
	return 0
}

// sendAll pipelines one request per payload and prints the answers in order.
// failed reports whether any answer was an error message.
func sendAll(ctx context.Context, addr string, opts client.Options, id, policy int64, payloads []string, w io.Writer) (failed bool, err error) {
	c, err := client.DialOptions(ctx, addr, opts)
	if err != nil {
		return false, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.NetConn().SetDeadline(dl)
	}
	go func() { // writes and reads overlap: a long stdin would fill both socket buffers
		for _, p := range payloads {
			if c.Send(id, policy, p) != nil {
				return
			}
		}
		c.Flush()
	}()
	var dec codec.Decoder
	var m codec.Message
	for range payloads {
		body, err := c.RecvRaw()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return failed, err
		}
		fmt.Fprintf(w, "%s\n", body)
		if dec.Decode(body, &m) != nil || m.Type != codec.TypeReply {
			failed = true
		}
	}
	return failed, nil
}
