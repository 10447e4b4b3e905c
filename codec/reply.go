package codec

import (
	"bytes"
	"errors"
	"unsafe"

	"github.com/bytedance/sonic/decoder"
)

var (
	// ErrNotReply means a backend's answer is not a reply (type 2): an
	// error, a request, a setup, or no type at all.
	ErrNotReply = errors.New("codec: not a reply")
	// ErrWrongDest means a reply's destid is not the srcid of the request
	// it would answer: it is for another request.
	ErrWrongDest = errors.New("codec: reply for another request")
)

// ReplyChecker checks the replies a proxy forwards. Its zero value is
// ready; it allocates nothing. Not safe for concurrent use: one per event
// loop.
type ReplyChecker struct {
	r         fastReply
	typ, dest int64
	sonic     decoder.Decoder
	general   Decoder // for what the quick pass cannot tell
	msg       Message
}

// fastReply holds the two fields a check looks at; sonic skips the others
// with full validation (syntax, strings) and never copies them.
type fastReply struct {
	Type   *int64 `json:"type"`
	DestID *int64 `json:"destid"`
}

// Check reports whether body is a reply to a request whose srcid is srcid:
// one well-formed JSON object (syntax and strings checked throughout,
// nothing after it) whose "type" is 2 and whose "destid" is srcid, both
// JSON integers, and no field of the protocol appears twice. It returns
// ErrSyntax (not one JSON object), ErrNotReply, ErrWrongDest or
// ErrDuplicateKey. The other fields are not judged: a client gets the reply
// as its backend wrote it.
func (rc *ReplyChecker) Check(body []byte, srcid int64) error {
	var m Message // on the stack: it aliases body, which must not be kept alive
	if scanPlain(body, &m) {
		switch {
		case m.Has&HasType == 0 || m.Type != TypeReply:
			return ErrNotReply
		case m.Has&HasDestID == 0 || m.DestID != srcid || srcid == unset:
			return ErrWrongDest
		}
		return nil
	}
	return rc.checkSonic(body, srcid)
}

// checkSonic is Check for what the plain scan is not sure of: sonic's
// struct decoder validates the whole object and takes the two fields.
func (rc *ReplyChecker) checkSonic(body []byte, srcid int64) error {
	if len(body) == 0 {
		return ErrSyntax
	}
	rc.typ, rc.dest = unset, unset
	rc.r = fastReply{&rc.typ, &rc.dest}
	rc.sonic.Reset(unsafe.String(&body[0], len(body)))
	rc.sonic.SetOptions(fastOptions)
	err := rc.sonic.Decode(&rc.r)
	if err == nil {
		err = rc.sonic.CheckTrailings()
	}
	rc.sonic.Reset("") // do not keep the input alive
	if err == nil && !plainKeys(body) && rc.repeated(body) {
		return ErrDuplicateKey
	}
	// sonic skips the strings of fields it does not take without checking
	// their escapes ("\0" passes).
	if err == nil && !escapesValid(body) {
		err = ErrSyntax
	}
	switch {
	case err != nil || firstByte(body) != '{':
		return ErrSyntax
	case rc.r.Type == nil || rc.typ != TypeReply:
		return ErrNotReply
	case rc.r.DestID == nil || rc.dest != srcid || srcid == unset:
		return ErrWrongDest
	}
	return nil
}

// repeated reports whether a known field appears twice in body, which the
// quick pass could not rule out: the general decoder decides.
func (rc *ReplyChecker) repeated(body []byte) bool {
	dup := errors.Is(rc.general.Decode(body, &rc.msg), ErrDuplicateKey)
	rc.msg = Message{} // do not keep the input alive
	return dup
}

// firstByte returns the first byte of body that is not JSON white space.
func firstByte(body []byte) byte {
	for _, c := range body {
		if !isSpace(c) {
			return c
		}
	}
	return 0
}

// escapesValid reports whether every backslash in body starts a JSON
// escape: \" \\ \/ \b \f \n \r \t, or \u and four hex digits. For a body
// whose structure is known valid, where a backslash can only be inside a
// string, so that escapes can be read from one backslash to the next.
func escapesValid(body []byte) bool {
	for i := 0; ; {
		j := bytes.IndexByte(body[i:], '\\')
		if j < 0 {
			return true
		}
		i += j + 1
		if i >= len(body) {
			return false
		}
		switch body[i] {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			i++
		case 'u':
			if i+5 > len(body) {
				return false
			}
			for _, c := range body[i+1 : i+5] {
				if !isHex(c) {
					return false
				}
			}
			i += 5
		default:
			return false
		}
	}
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }
