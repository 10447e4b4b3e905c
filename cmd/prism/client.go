package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/prism-proxy/prism/client"
	"github.com/prism-proxy/prism/codec"
)

func init() {
	commands["client"] = command{"send requests and print the replies", runClient}
}

func runClient(args []string) int {
	fs := flag.NewFlagSet("prism client", flag.ContinueOnError)
	addr := fs.String("proxy", "127.0.0.1:9000", "proxy `address`")
	id := fs.Int64("id", 1, "client id (srcid)")
	policy := fs.Int64("policy", 0, "privacy policy of the requests")
	count := fs.Int("n", 1, "send the payload this many times, pipelined")
	timeout := fs.Duration("timeout", 10*time.Second, "give up after this long")
	text := fs.Bool("text", false, "use the text framing instead of binary")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: prism client [flags] [payload words...]\n\n"+
			"Sends the words, joined by spaces, as one request's payload (-n times), or with\n"+
			"no words one request per line of standard input. Prints each reply as one JSON\n"+
			"line; exits 1 if any answer was an error.\n\nflags:\n")
		fs.PrintDefaults()
	}
	if code, done := parseFlags(fs, args); done {
		return code
	}
	var payloads []string
	if fs.NArg() > 0 {
		p := strings.Join(fs.Args(), " ")
		for range *count {
			payloads = append(payloads, p)
		}
	} else {
		sc := bufio.NewScanner(os.Stdin)
		sc.Buffer(make([]byte, 64<<10), codec.DefaultMaxFrame)
		for sc.Scan() {
			payloads = append(payloads, sc.Text())
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	opts := client.Options{}
	if *text {
		opts.Framing = codec.Text
	}
	failed, err := sendAll(ctx, *addr, opts, *id, *policy, payloads, os.Stdout)
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
