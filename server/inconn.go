package server

import (
	"context"
	"crypto/subtle"
	"errors"
	"net"
	"strconv"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/bytebufferpool"
	"golang.org/x/sys/unix"

	"github.com/prism-proxy/prism/codec"
	"github.com/prism-proxy/prism/internal/fifo"
	"github.com/prism-proxy/prism/internal/gnetio"
	"github.com/prism-proxy/prism/pool"
)

type role uint8

const (
	roleUnknown role = iota // no message yet
	roleClient              // sends requests
	roleLease               // a backend's registration
)

// inConn is an inbound connection: a client, or a backend's lease once its
// first message is a setup. Owned by its loop.
type inConn struct {
	loop  *loop
	gc    gnet.Conn // nil once closed: gnet reuses the Conn
	split codec.Splitter
	role  role

	// client
	queue    fifo.FIFO[*call] // requests in arrival order, until answered in turn (call.go)
	paused   bool             // over the in-flight or outbound cap: not parsing
	closing  bool             // close once queue drained (stream unusable)
	shedding bool             // answering "overloaded" to what is over the cap
	rest     *gnetio.Bytes    // after a half-close: what it sent and is not parsed yet (halfclose.go)
	dirty    bool
	out      []byte // answers due, in order; nil when none (a loop buffer)

	held    int   // bytes of its requests in flight and replies held (limits.clientBytes)
	tail    *tail // writes the answers due after a half-close
	blocked *link // a pressured link this client waits for
	active  bool  // in loop.active

	// For the loop's scan of idle and slow connections (conns.go), in loop
	// clock: the last read, and since when it holds a partial message (0:
	// none). Stamped from loop.stamp: no clock read of their own.
	lastRead     int64
	partialSince int64
	inbound      int // its unparsed bytes, as counted in loop.held

	// Sent away by a handover (upgrade.go): since when (zero: not), and
	// whether its write side is shut down (also by linger, lingering
	// since lingerAt, loop clock).
	awaySince    time.Time
	finSent      bool
	lingerAt     int64 // linger: since when it waits (the last progress, or the FIN)
	lingerUnsent int   // linger: gnet's unwritten bytes then

	// lease
	backend *pool.Backend
	regOnly bool // accepted on Config.RegisterListen: takes setups only
	badLog  bool // an invalid setup was logged: not every one is
}

// traffic parses what the connection sent.
func (ic *inConn) traffic() {
	if ic.closing || !ic.awaySince.IsZero() { // answering what was queued, then closing: ignore the rest
		ic.gc.Discard(-1)
		return
	}
	ic.parse()
	if ic.gc != nil && !ic.closing && ic.gc.InboundBuffered() > ic.loop.lim.connBuffer {
		ic.shed(ic.loop.lim.connBuffer / 2)
	}
	l := ic.loop
	if ic.gc != nil {
		ic.countInbound()
		if l.held > l.lim.loopBytes && ic.inbound > maxPartialOverBudget && !ic.closing {
			ic.overBudget()
		}
	}
	l.flushSoon(l.metrics.n[mUnanswered] > int64(ic.queue.Len()))
}

// maxPartialOverBudget is how much of unparsed input a connection may hold
// while its loop is over its memory share (limits.loopBytes); past it the
// connection is answered "overloaded" and closed.
const maxPartialOverBudget = 64 << 10

// overBudget sheds what the connection holds unparsed while its loop is
// over its memory share: its whole requests are answered "overloaded";
// an incomplete one past maxPartialOverBudget gets "overloaded" too, and
// the connection closes (its stream cannot continue without it).
func (ic *inConn) overBudget() {
	ic.shed(0)
	if ic.gc == nil || ic.closing {
		return
	}
	if ic.countInbound(); ic.inbound > maxPartialOverBudget {
		ic.fatal(codec.CodeOverloaded, "the proxy holds too much: incomplete message refused")
		ic.countInbound()
	}
}

// countInbound counts the bytes the connection sent and the proxy holds
// unparsed (gnet's buffer: a partial message, or requests of a paused
// client; after a half-close, its rest) toward its loop's memory share.
func (ic *inConn) countInbound() {
	n := 0
	switch {
	case ic.gc != nil:
		n = ic.gc.InboundBuffered()
	case ic.rest != nil:
		n = len(ic.rest.B)
	}
	ic.loop.held += int64(n - ic.inbound)
	ic.inbound = n
}

// readable reports whether the connection has input to parse: it is open,
// or it was half-closed with requests not parsed yet.
func (ic *inConn) readable() bool { return ic.gc != nil || ic.rest != nil }

// input is what parse reads: gnet's buffer, or the rest after a half-close.
func (ic *inConn) input() gnetio.Source {
	if ic.gc != nil {
		return ic.gc
	}
	return ic.rest
}

// canParse reports whether the connection may take more requests now.
func (ic *inConn) canParse() bool {
	lim := &ic.loop.lim
	if ic.gc == nil { // half-closed: its rest, as its answers go out (halfclose.go)
		return ic.rest != nil && (ic.tail.gone() || // resumeParsing drops it
			ic.queue.Len() < lim.clientInflight &&
				ic.tail.pending()+len(ic.out)+ic.held < lim.clientBytes &&
				ic.loop.held < lim.loopBytes)
	}
	return ic.blocked == nil && ic.queue.Len() < lim.clientInflight &&
		ic.gc.OutboundBuffered()+ic.held < lim.clientBytes &&
		ic.loop.held < lim.loopBytes
}

// resumeParsing continues with requests left buffered while paused.
func (ic *inConn) resumeParsing() {
	if !ic.readable() || !ic.paused || !ic.canParse() {
		return
	}
	if ic.gc == nil && ic.tail.gone() { // half-closed, and gone since: nobody to answer
		ic.rest = nil
		ic.countInbound()
		return
	}
	ic.paused = false
	ic.parse()
	ic.countInbound() // what it parsed no longer counts toward the loop's share
	if ic.gc == nil {
		ic.loop.markClientDirty(ic) // its flush finishes the tail once all is answered
	}
}

func (ic *inConn) parse() {
	if ic.closing || !ic.awaySince.IsZero() || !ic.readable() {
		return
	}
	l := ic.loop
	l.stamp = l.clock()
	ic.lastRead = l.stamp
	src := ic.input()
	f := gnetio.NewFrames(src, &ic.split)
	framed := false // a message completed in this read
	for {
		if !ic.canParse() {
			if !ic.paused && src.InboundBuffered() > 0 {
				ic.paused = true
				ic.loop.paused = append(ic.loop.paused, ic)
			}
			ic.partialSince = 0 // what is buffered waits for the proxy, not the client
			break
		}
		body, err := f.Next()
		if gnetio.Incomplete(err) {
			// A partial message started in this read when one ended in it;
			// otherwise it is the one held since the last stamp.
			switch {
			case ic.gc == nil:
				ic.rest = nil // the stream ended inside a message, or after the last
			case !f.Partial():
				ic.partialSince = 0
			case framed || ic.partialSince == 0:
				ic.partialSince = l.stamp
			}
			break
		}
		if err != nil {
			ic.fatal(codec.ErrorAnswer(err, ic.split.Max))
			return
		}
		l.metrics.n[mClientIn] += int64(f.Size())
		ic.message(body)
		if !ic.readable() || ic.closing {
			return
		}
		f.Consume()
		framed = true
	}
	if ic.readable() {
		f.Done()
	}
	if ic.rest != nil && len(ic.rest.B) == 0 {
		ic.rest = nil // all parsed: its tail ends with its last answer
	}
}

// shed answers "overloaded" to the requests a paused client sent past
// its buffer cap, oldest first, until keep bytes are left: the client
// gets an answer for every request, in order, and its connection stays
// usable, while the proxy holds no more than the cap. (An error answer
// is smaller than the request it refuses, but for the tiniest requests,
// so this frees memory.)
//
// Each refused request is a call until its answer's turn, and tiny ones
// cost more as calls than as bytes: past shedCalls calls queued the
// connection is answered "overloaded" once more and closed.
func (ic *inConn) shed(keep int) {
	need := ic.gc.InboundBuffered() - keep
	ic.shedding = true
	defer func() { ic.shedding = false }()
	f := gnetio.NewFrames(ic.gc, &ic.split)
	for need > 0 {
		if ic.queue.Len() >= shedCalls*ic.loop.lim.clientInflight {
			ic.fatal(codec.CodeOverloaded, "far past the in-flight cap without reading the answers: connection closed")
			return
		}
		body, err := f.Next()
		if gnetio.Incomplete(err) {
			break
		}
		if err != nil {
			ic.fatal(codec.ErrorAnswer(err, ic.split.Max))
			return
		}
		need -= len(body) + codec.HeaderLen
		ic.loop.metrics.n[mClientIn] += int64(f.Size())
		ic.message(body)
		if ic.gc == nil || ic.closing {
			return
		}
		f.Consume()
	}
	f.Done()
}

// shedCalls bounds a shedding connection's queue, in in-flight caps.
const shedCalls = 2

// fatal answers code after the requests already queued, then closes: the
// stream cannot be resynchronised.
func (ic *inConn) fatal(code, text string) {
	if !ic.readable() {
		return
	}
	ic.closing = true
	if ic.gc != nil {
		ic.gc.Discard(-1)
		ic.loop.p.cfg.Logger.Debug("closing a client connection", "peer", ic.gc.RemoteAddr().String(), "code", code, "reason", text)
	} else {
		ic.rest = nil
	}
	c := ic.loop.newCall(ic, 0, 0)
	ic.loop.answerError(c, code, text)
}

// message handles one framed message.
func (ic *inConn) message(body []byte) {
	l := ic.loop
	m := &l.msg
	var policy int64
	var err error
	if ic.role == roleClient {
		policy, err = l.dec.DecodeRequest(body, m)
	} else {
		// The first message decides the role; a lease takes only setups.
		err = l.dec.Decode(body, m)
		if err == nil && m.Has&codec.HasType == 0 {
			err = codec.ErrType
		}
		if err == nil && ic.role == roleUnknown && m.Type == codec.TypeSetup && ic.gc != nil {
			ic.role = roleLease // (after a half-close a setup could hold no lease: refused as a request)
		}
		if err == nil && ic.role == roleLease {
			ic.setup(m)
			return
		}
		if err == nil {
			policy, err = m.ValidateRequest()
		}
		if ic.role == roleUnknown {
			ic.role = roleClient
		}
		if ic.regOnly { // before the client's path: it never takes this conn
			ic.fatal(codec.CodeBadRequest, "this address takes only backend registrations")
			return
		}
	}
	c := l.newCall(ic, m.SrcID, policy)
	l.metrics.n[mRequests]++
	if err != nil {
		c.ps.n[pRequests]++
		code, text := codec.ErrorAnswer(err, 0)
		l.answerError(c, code, text)
		return
	}
	c.ps = l.metrics.pols.of(policy)
	c.ps.n[pRequests]++
	if l.p.draining.Load() {
		l.answerError(c, codec.CodeShuttingDown, "the proxy is shutting down")
		return
	}
	if ic.shedding {
		l.answerError(c, codec.CodeOverloaded, "too many requests of this connection held: read your replies, or slow down")
		return
	}
	l.earnRetries(l.lim.retryEarn)
	c.size = len(body)
	ic.held += c.size
	l.dispatch(c, body)
}

// setup registers the backend of a lease connection.
func (ic *inConn) setup(m *codec.Message) {
	l := ic.loop
	cfg := &l.p.live.Load().cfg
	policy, err := m.ValidateSetup()
	if err == nil && ic.backend != nil {
		err = errors.New("this connection already holds a registration")
	}
	if err != nil {
		_, text := codec.ErrorAnswer(err, 0)
		if errors.Is(err, codec.ErrType) {
			text = "a registration connection takes only setup messages"
		} else if errors.Is(err, codec.ErrMissingField) {
			text = "a setup needs id, privPolyId and listenport"
		} else if errors.Is(err, codec.ErrPort) {
			text = "listenport must be 1..65535"
		}
		if !ic.badLog { // once per lease: a peer looping on bad setups must not flood the log
			ic.badLog = true
			l.p.cfg.Logger.Warn("setup refused: bad_request: "+text+" (the lease stays open for a valid setup)",
				"id", m.ID, "peer", ic.gc.RemoteAddr().String(), "local", ic.gc.LocalAddr().String())
		}
		ic.reply(codec.AppendError(nil, m.ID, codec.CodeBadRequest, text))
		return
	}
	why := l.p.setupRefusal(ic)
	if why == "" && cfg.RegisterToken != "" &&
		subtle.ConstantTimeCompare([]byte(m.Token), []byte(cfg.RegisterToken)) != 1 {
		why = "wrong or missing token"
	}
	if why != "" {
		ic.refuseSetup(m.ID, why)
		return
	}
	host := "127.0.0.1"
	if ta, ok := ic.gc.RemoteAddr().(*net.TCPAddr); ok {
		host = ta.IP.String()
	}
	if l.p.isOwnAddr(host, int(m.ListenPort), ic.gc.LocalAddr()) {
		// Requests sent there would come back as requests: a loop.
		l.p.cfg.Logger.Warn("setup refused: its data address is the proxy's own", "id", m.ID,
			"peer", ic.gc.RemoteAddr().String())
		ic.reply(codec.AppendError(nil, m.ID, codec.CodeBadRequest, "listenport is the proxy's own address"))
		return
	}
	b := &pool.Backend{
		ID:      m.ID,
		Policy:  policy,
		Addr:    net.JoinHostPort(host, strconv.FormatInt(m.ListenPort, 10)),
		Framing: ic.split.Framing,
	}
	// The registry and the leases change together, and before the ack: a
	// newer setup of the id, which may follow the ack at once on another
	// loop, must find this lease to revoke it.
	l.p.mu.Lock()
	if l.p.static[b.ID] != nil {
		l.p.mu.Unlock()
		ic.refuseSetup(m.ID, "id "+itoa(m.ID)+" is a static backend's (configuration)")
		return
	}
	replaced := l.p.registry.Register(b)
	old := l.p.leases[replaced]
	delete(l.p.leases, replaced)
	l.p.leases[b] = ic
	l.p.fleetPublish(b)
	l.p.mu.Unlock()
	ic.backend = b
	peer := ic.gc.RemoteAddr().String()
	ic.reply(codec.AppendAck(nil, m.ID, policy))
	log := l.p.cfg.Logger.With("id", b.ID, "policy", b.Policy, "addr", b.Addr, "peer", peer)
	if replaced == nil {
		log.Info("backend registered", "framing", b.Framing.String())
		return
	}
	if old == nil && replaced.Via != "" { // the fleet's entry: this lease wins (fleet.go)
		log.Info("backend registered", "framing", b.Framing.String(), "in_place_of_fleet_entry_of", replaced.Via)
		return
	}
	if old == nil { // no lease: inherited from the older process of an upgrade (upgrade.go)
		log.Info("backend registered again", "framing", b.Framing.String())
		return
	}
	log.Warn("backend registered in place of an older registration of its id: closing the older lease",
		"older_addr", replaced.Addr, "older_policy", replaced.Policy)
	text := "replaced by a newer registration of id " + itoa(b.ID) + " from " + peer
	_ = old.loop.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		old.revoke(replaced, text)
		return nil
	}))
}

// refuseSetup answers a setup unauthorized, with why, and closes the lease.
func (ic *inConn) refuseSetup(id int64, why string) {
	ic.loop.p.cfg.Logger.Warn("setup refused: "+why, "id", id, "peer", ic.gc.RemoteAddr().String(),
		"local", ic.gc.LocalAddr().String())
	ic.reply(codec.AppendError(nil, id, codec.CodeUnauthorized, "setup refused: "+why))
	ic.closing = true
	if ic.gc != nil { // a failed write closed it already
		ic.gc.Close()
	}
}

// revoke tells a lease whose registration b was replaced why, with an
// unauthorized error, and closes it. It runs on the lease's loop, which may
// not be the loop of the newer setup; the lease may have closed meanwhile.
func (ic *inConn) revoke(b *pool.Backend, text string) {
	if ic.gc == nil || ic.backend != b {
		return
	}
	ic.loop.p.cfg.Logger.Warn("older lease closed: "+text, "id", b.ID, "addr", b.Addr,
		"peer", ic.gc.RemoteAddr().String())
	ic.reply(codec.AppendError(nil, b.ID, codec.CodeUnauthorized, text))
	ic.closing = true
	if ic.gc != nil { // a failed write closed it already
		ic.gc.Close()
	}
}

// reply writes one message of the proxy's own on a lease connection.
func (ic *inConn) reply(body []byte) {
	buf := bytebufferpool.Get()
	buf.B = codec.AppendFramed(buf.B[:0], ic.split.Framing, body)
	ic.gc.Write(buf.B)
	bytebufferpool.Put(buf)
}

// output returns the buffer of what flush writes next, to append to.
func (ic *inConn) output() []byte {
	if ic.out == nil {
		ic.out = ic.loop.getBuf()
		ic.loop.markClientDirty(ic)
	}
	return ic.out
}

// flush writes the delivered answers in one write; gnet keeps what the
// socket does not take.
func (ic *inConn) flush() {
	if ic.out != nil {
		out := ic.out
		ic.out = nil
		switch {
		case ic.gc != nil:
			ic.loop.metrics.n[mClientOut] += int64(len(out))
			ic.gc.Write(out) // on error OnClose runs inside
			ic.loop.putBuf(out)
		case ic.tail != nil && !ic.tail.gone():
			ic.tail.push(out) // its own now
		default:
			ic.loop.putBuf(out)
		}
	}
	if ic.gc == nil {
		switch {
		case ic.rest != nil: // half-closed, with requests to parse still
			if ic.paused && ic.canParse() {
				ic.loop.resume = append(ic.loop.resume, ic)
			}
		case ic.tail != nil && ic.queue.Len() == 0:
			ic.tail.finish()
			ic.tail = nil
			ic.loop.metrics.n[mConns]-- // counted while its tail wrote (OnClose)
		}
		return
	}
	if ic.gc.OutboundBuffered() > ic.loop.lim.outClose {
		ic.closing = true
		ic.loop.p.cfg.Logger.Debug("closing a client connection that does not read its answers",
			"peer", ic.gc.RemoteAddr().String(), "unsent", ic.gc.OutboundBuffered(), "queued", ic.queue.Len())
		ic.gc.Close() // the client does not read its replies
		return
	}
	if ic.closing && ic.queue.Len() == 0 {
		ic.linger(ic.loop.stamp)
		return
	}
	if ic.paused && ic.canParse() {
		ic.loop.resume = append(ic.loop.resume, ic)
	}
}

// closed releases the connection's calls; replies still due from backends
// are discarded when they come.
func (ic *inConn) closed(gc gnet.Conn, err error) {
	l := ic.loop
	ic.gc = nil
	l.held -= int64(ic.inbound)
	ic.inbound = 0
	delete(l.conns, ic)
	// A closing client too (its stream broke after valid requests): the
	// tail writes what is queued, the error last, as flush would have. And
	// one that sent requests but had none parsed yet (paused at once).
	client := ic.role == roleClient || ic.role == roleUnknown && !ic.regOnly
	if client && (ic.queue.Len() > 0 || ic.out != nil || gc.InboundBuffered() > 0) {
		if ic.tail = startTail(l.p, gc, err); ic.tail != nil {
			ic.finalParse(gc)
			l.markClientDirty(ic) // answers due go to the tail (halfclose.go)
			return
		}
	}
	if ic.backend != nil {
		l.p.mu.Lock()
		if l.p.leases[ic.backend] == ic {
			delete(l.p.leases, ic.backend)
		}
		l.p.mu.Unlock()
		if l.p.registry.Remove(ic.backend) {
			l.p.cfg.Logger.Info("backend left: its lease closed", "id", ic.backend.ID, "policy", ic.backend.Policy,
				"addr", ic.backend.Addr, "err", err)
			l.p.fleetLeft(ic.backend)
		}
	}
	for {
		c, ok := ic.queue.Pop()
		if !ok {
			break
		}
		l.leaveClient(c)
	}
	// Answers already in out are dropped by the flush that is due: the
	// connection is on the loop's dirty list.
}

// linger ends a connection the proxy closes once its answers are due
// (closing, its queue empty): when gnet has written them all it shuts
// down the write side (FIN), and what the peer still sends is dropped
// (traffic) until it closes its end, lingerFor at most. Closing at once
// with input unread would send a reset, and the peer could lose the last
// answers, the error that says why among them. While its answers are
// being written, a peer that reads none of them for twice the request
// timeout and a second (as a half-closed client's tail allows) is closed:
// one that does not read keeps neither its slot nor gnet's buffer; one
// that reads slowly gets them all. scanConns calls it again until then.
func (ic *inConn) linger(now int64) {
	unsent := ic.gc.OutboundBuffered()
	if ic.lingerAt == 0 || unsent < ic.lingerUnsent {
		ic.lingerAt, ic.lingerUnsent = now, unsent // begun, or the peer read some
	}
	wait := 2*ic.loop.lim.timeout + int64(time.Second) // to read some: as a half-closed client's tail
	if ic.finSent {
		wait = int64(lingerFor)
	}
	switch {
	case ic.role == roleLease: // its backend leaves rotation now, not when its peer closes
		ic.gc.Close()
	case now-ic.lingerAt > wait:
		ic.gc.Close()
	case ic.finSent:
	case ic.out != nil || unsent > 0:
		// gnet writes the rest as the socket takes it
	default:
		if err := unix.Shutdown(ic.gc.Fd(), unix.SHUT_WR); err != nil {
			ic.gc.Close()
			return
		}
		ic.finSent, ic.lingerAt = true, now
	}
}

// lingerFor bounds how long linger waits, after the FIN, for the peer to
// close its end.
const lingerFor = 5 * time.Second
