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
	"sync/atomic"
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
	fs.DurationVar(&ca.timeout, "timeout", 10*time.Second, "give up when connecting, or an answer, takes longer than this")
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
			"no words one request per line of standard input, sent as each line comes (lines\n"+
			"that come together are pipelined). Prints each answer as one JSON line as it\n"+
			"comes; exits 1 if any answer was an error.\n\nflags:\n")
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
	var feed func(send func(string) error, flush func() error) error
	if len(ca.words) > 0 {
		p := strings.Join(ca.words, " ")
		feed = func(send func(string) error, flush func() error) error {
			for range ca.count {
				if err := send(p); err != nil {
					return err
				}
			}
			return flush()
		}
	} else {
		feed = func(send func(string) error, flush func() error) error {
			return feedLines(os.Stdin, send, flush)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), ca.timeout)
	defer cancel()
	c, err := client.DialOptions(ctx, ca.addr, ca.opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "prism client:", err)
		return 1
	}
	defer c.Close()
	failed, err := exchange(c, ca.id, ca.policy, ca.timeout, feed, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "prism client:", err)
		return 1
	}
	if failed {
		return 1
	}
	return 0
}

// feedLines sends one request per line of in (without its line ending),
// as each line comes: a line typed at a terminal is sent, and its answer
// printed, before the next is typed. Lines that arrive together (a pipe, a
// paste) are pipelined: the requests are flushed when no more input is
// waiting.
func feedLines(in io.Reader, send func(string) error, flush func() error) error {
	r := bufio.NewReaderSize(in, 64<<10)
	for {
		line, err := r.ReadString('\n')
		if err != nil && (err != io.EOF || line == "") {
			if err == io.EOF {
				return flush()
			}
			flush()
			return err
		}
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		if serr := send(line); serr != nil {
			return serr
		}
		if err == io.EOF {
			return flush()
		}
		if r.Buffered() == 0 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
}

// exchange runs feed, which sends requests of id and policy on c, and
// prints the answers in order on w as they come, until feed returned and
// every request was answered. Each answer may take timeout. failed reports
// whether any answer was an error message.
func exchange(c *client.Conn, id, policy int64, timeout time.Duration, feed func(send func(string) error, flush func() error) error,
	w io.Writer) (failed bool, err error) {
	f := &feeder{more: make(chan struct{}, 1), done: make(chan struct{})}
	go runFeed(c, id, policy, feed, f) // writes and reads overlap: a long input would fill both socket buffers
	var dec codec.Decoder
	var m codec.Message
	for got := int64(0); ; {
		if got == f.sent.Load() {
			select {
			case <-f.more:
				continue
			case <-f.done:
				if got == f.sent.Load() {
					return failed, f.err
				}
				continue
			}
		}
		c.NetConn().SetReadDeadline(time.Now().Add(timeout))
		body, err := c.RecvRaw()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return failed, err
		}
		got++
		fmt.Fprintf(w, "%s\n", body)
		if dec.Decode(body, &m) != nil || m.Type != codec.TypeReply {
			failed = true
		}
	}
}

// feeder is what runFeed tells exchange: requests queued so far (each is
// written by a flush that follows, or when the buffer fills), rung on
// more, and done (with err) when the feed has ended.
type feeder struct {
	sent atomic.Int64
	more chan struct{}
	done chan struct{}
	err  error // set before done closes
}

func runFeed(c *client.Conn, id, policy int64, feed func(send func(string) error, flush func() error) error, f *feeder) {
	send := func(p string) error {
		if err := c.Send(id, policy, p); err != nil {
			return err
		}
		f.sent.Add(1)
		select {
		case f.more <- struct{}{}:
		default:
		}
		return nil
	}
	f.err = feed(send, c.Flush)
	close(f.done)
}
