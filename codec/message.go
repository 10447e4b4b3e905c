package codec

import (
	"encoding/json"
	"errors"
	"strconv"
	"unicode/utf8"
	"unsafe"

	"github.com/bytedance/sonic/ast"
	"github.com/bytedance/sonic/decoder"
)

// Message types of the protocol.
const (
	TypeRequest = 0
	TypeSetup   = 1
	TypeReply   = 2
	TypeError   = 3
	TypeAck     = 4
)

// Error codes of the protocol.
const (
	CodeBadRequest         = "bad_request"
	CodeTooLarge           = "too_large"
	CodeNoBackend          = "no_backend"
	CodeBackendUnavailable = "backend_unavailable"
	CodeTimeout            = "timeout"
	CodeOverloaded         = "overloaded"
	CodeUnauthorized       = "unauthorized"
	CodeShuttingDown       = "shutting_down"
)

// Field bits of Message.Has.
const (
	HasType uint32 = 1 << iota
	HasSrcID
	HasDestID
	HasID
	HasPoliId // "privPoliId", the request's spelling
	HasPolyId // "privPolyId", the setup's spelling
	HasPayloadSize
	HasPayload
	HasListenPort
	HasToken
	HasCode
	HasError
)

// Message holds the fields of one decoded message that Prism acts on; other
// fields are left in the raw bytes. Strings alias the decoded bytes unless
// they held escape sequences: do not keep a Message past the life of its input.
type Message struct {
	Has         uint32 // which fields were present (Has* bits)
	Type        int64
	SrcID       int64
	DestID      int64
	ID          int64
	PoliID      int64 // "privPoliId"
	PolyID      int64 // "privPolyId"
	PayloadSize int64
	ListenPort  int64
	Payload     string
	Token       string
	Code        string
	Error       string
}

var (
	// ErrSyntax means the bytes are not one well-formed JSON object.
	ErrSyntax = errors.New("codec: malformed JSON")
	// ErrNotObject means the message is JSON but not an object.
	ErrNotObject = errors.New("codec: message is not a JSON object")
	// ErrFieldType means a known field holds a value of the wrong JSON type.
	ErrFieldType = errors.New("codec: field has the wrong JSON type")
	// ErrMissingField means a field the message type needs is absent.
	ErrMissingField = errors.New("codec: missing field")
	// ErrPayloadSize means payloadsize differs from the payload's UTF-8 length.
	ErrPayloadSize = errors.New("codec: payloadsize does not match the payload's UTF-8 length")
	// ErrPolicyConflict means both spellings of the policy field are present
	// with different values.
	ErrPolicyConflict = errors.New("codec: privPoliId and privPolyId disagree")
	// ErrDuplicateKey means a field the protocol knows appears twice in one
	// object, or under a name that differs from it only in letter case
	// ("PrivPoliId"). Parsers disagree on which one counts (the first, the
	// last, a case-insensitive match), so a proxy that routed by one while
	// its backend read the other could send a request to another policy's
	// backend: it is refused.
	ErrDuplicateKey = errors.New("codec: a field appears twice")
	// ErrType means the type field is absent or not a known message type.
	ErrType = errors.New("codec: unknown message type")
	// ErrUTF8 means the payload is not valid UTF-8, so its size is undefined.
	ErrUTF8 = errors.New("codec: payload is not valid UTF-8")
	// ErrPort means listenport is not a TCP port number.
	ErrPort = errors.New("codec: listenport out of range")
)

// Decoder decodes message bodies. Its zero value is ready; reuse one per
// goroutine so decoding allocates nothing.
type Decoder struct {
	v     visitor
	req   fastRequest
	vals  fastValues
	sonic decoder.Decoder
}

// Decode decodes one JSON object into m, which it resets first. It checks the
// syntax of the whole object and the JSON types of the known fields; use the
// Validate methods for what a message type requires.
func (d *Decoder) Decode(body []byte, m *Message) error {
	*m = Message{}
	if len(body) == 0 {
		return ErrSyntax
	}
	if !trailingSpaceOnly(body) {
		return ErrSyntax
	}
	err := d.walk(body, m, false)
	if err == errSonic {
		// sonic converts numbers as it goes and refuses one beyond float64
		// (1e999), which JSON allows. Rare as failures are, walk once more
		// taking numbers as text and converting only the known fields': if
		// that passes, a number was the trouble.
		*m = Message{}
		if err = d.walk(body, m, true); err == errSonic {
			err = ErrSyntax
		}
	}
	return err
}

// errSonic means sonic refused the input (the visitor had no objection).
var errSonic = errors.New("codec: sonic refused the input")

var numbersAsText = &ast.VisitorOptions{OnlyNumber: true}

func (d *Decoder) walk(body []byte, m *Message, asText bool) error {
	v := &d.v
	v.m, v.depth, v.key, v.err, v.seen, v.asText, v.keys = m, 0, keyNone, nil, false, asText, 0
	opts := (*ast.VisitorOptions)(nil)
	if asText {
		opts = numbersAsText
	}
	err := ast.Preorder(unsafe.String(&body[0], len(body)), v, opts)
	v.m = nil
	if v.err != nil {
		return v.err
	}
	if err != nil {
		return errSonic
	}
	return nil
}

// trailingSpaceOnly reports whether body is one object followed by nothing but
// whitespace: sonic stops after the first value and ignores what follows.
func trailingSpaceOnly(body []byte) bool {
	i := len(body) - 1
	for i >= 0 && isSpace(body[i]) {
		i--
	}
	if i < 0 {
		return false
	}
	// A trailing '}' or ']' closes the first value only if the scan of
	// balanced brackets ends there; TextScanner knows how.
	s := TextScanner{strict: true}
	j := 0
	for j < len(body) && isSpace(body[j]) {
		j++
	}
	if j == len(body) || body[j] != '{' {
		return true // not an object: let the decoder say so
	}
	_, n, err := s.Scan(body, len(body)+1)
	return err == nil && n == i+1
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

type fieldKey uint8

const (
	keyNone fieldKey = iota
	keyType
	keySrcID
	keyDestID
	keyID
	keyPoliID
	keyPolyID
	keyPayloadSize
	keyPayload
	keyListenPort
	keyToken
	keyCode
	keyError
)

func lookupKey(k string) fieldKey {
	switch k {
	case "type":
		return keyType
	case "srcid":
		return keySrcID
	case "destid":
		return keyDestID
	case "id":
		return keyID
	case "privPoliId":
		return keyPoliID
	case "privPolyId":
		return keyPolyID
	case "payloadsize":
		return keyPayloadSize
	case "payload":
		return keyPayload
	case "listenport":
		return keyListenPort
	case "token":
		return keyToken
	case "code":
		return keyCode
	case "error":
		return keyError
	}
	return keyNone
}

// visitor receives sonic's preorder traversal. Only depth-1 keys matter;
// nested values of unknown fields are walked (for syntax) and ignored.
type visitor struct {
	m      *Message
	depth  int
	key    fieldKey
	seen   bool   // a value has been seen (the top-level one started)
	keys   uint32 // known depth-1 keys met (1<<fieldKey)
	asText bool   // numbers come as text (OnlyNumber): convert the known fields'
	err    error
}

func (v *visitor) fail(err error) error {
	if v.err == nil {
		v.err = err
	}
	return err
}

// scalar checks that a scalar at depth 1 belongs to a known field and returns
// that field.
func (v *visitor) scalar() (fieldKey, error) {
	if !v.seen {
		v.seen = true
		return keyNone, v.fail(ErrNotObject)
	}
	if v.depth != 1 {
		return keyNone, nil
	}
	k := v.key
	v.key = keyNone
	return k, nil
}

func (v *visitor) setInt(k fieldKey, n int64) {
	m := v.m
	switch k {
	case keyType:
		m.Type, m.Has = n, m.Has|HasType
	case keySrcID:
		m.SrcID, m.Has = n, m.Has|HasSrcID
	case keyDestID:
		m.DestID, m.Has = n, m.Has|HasDestID
	case keyID:
		m.ID, m.Has = n, m.Has|HasID
	case keyPoliID:
		m.PoliID, m.Has = n, m.Has|HasPoliId
	case keyPolyID:
		m.PolyID, m.Has = n, m.Has|HasPolyId
	case keyPayloadSize:
		m.PayloadSize, m.Has = n, m.Has|HasPayloadSize
	case keyListenPort:
		m.ListenPort, m.Has = n, m.Has|HasListenPort
	}
}

func (v *visitor) OnNull() error {
	k, err := v.scalar()
	if err != nil || k == keyNone {
		return err
	}
	return v.fail(ErrFieldType)
}

func (v *visitor) OnBool(bool) error { return v.OnNull() }

func (v *visitor) OnString(s string) error {
	k, err := v.scalar()
	if err != nil || k == keyNone {
		return err
	}
	m := v.m
	switch k {
	case keyType: // the seed's scripts send "0"
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return v.fail(ErrFieldType)
		}
		m.Type, m.Has = n, m.Has|HasType
	case keyPayload:
		m.Payload, m.Has = s, m.Has|HasPayload
	case keyToken:
		m.Token, m.Has = s, m.Has|HasToken
	case keyCode:
		m.Code, m.Has = s, m.Has|HasCode
	case keyError:
		m.Error, m.Has = s, m.Has|HasError
	default:
		return v.fail(ErrFieldType)
	}
	return nil
}

func (v *visitor) OnInt64(n int64, _ json.Number) error {
	k, err := v.scalar()
	if err != nil || k == keyNone {
		return err
	}
	switch k {
	case keyPayload, keyToken, keyCode, keyError:
		return v.fail(ErrFieldType)
	}
	v.setInt(k, n)
	return nil
}

func (v *visitor) OnFloat64(_ float64, text json.Number) error {
	k, err := v.scalar()
	if err != nil || k == keyNone {
		return err
	}
	if v.asText {
		switch k {
		case keyPayload, keyToken, keyCode, keyError:
		default:
			if n, err := strconv.ParseInt(string(text), 10, 64); err == nil {
				v.setInt(k, n)
				return nil
			}
		}
	}
	return v.fail(ErrFieldType) // ids, policies, sizes and ports are integers
}

func (v *visitor) OnObjectBegin(int) error {
	if !v.seen {
		v.seen = true
		v.depth = 1
		return nil
	}
	return v.nestedBegin()
}

func (v *visitor) nestedBegin() error {
	if v.depth == 1 && v.key != keyNone {
		return v.fail(ErrFieldType)
	}
	v.depth++
	return nil
}

func (v *visitor) OnObjectKey(key string) error {
	if v.depth == 1 {
		v.key = lookupKey(key)
		if v.key != keyNone {
			if v.keys&(1<<v.key) != 0 {
				return v.fail(ErrDuplicateKey)
			}
			v.keys |= 1 << v.key
		} else if foldsToKnown(unsafe.Slice(unsafe.StringData(key), len(key))) {
			return v.fail(ErrDuplicateKey)
		}
	}
	return nil
}

func (v *visitor) OnObjectEnd() error {
	v.depth--
	return nil
}

func (v *visitor) OnArrayBegin(int) error {
	if !v.seen {
		v.seen = true
		return v.fail(ErrNotObject)
	}
	return v.nestedBegin()
}

func (v *visitor) OnArrayEnd() error {
	v.depth--
	return nil
}

// Policy returns the request's policy, accepting either spelling, and whether
// one was present. Conflicting spellings return ErrPolicyConflict.
func (m *Message) Policy() (int64, error) {
	switch {
	case m.Has&HasPoliId != 0 && m.Has&HasPolyId != 0:
		if m.PoliID != m.PolyID {
			return 0, ErrPolicyConflict
		}
		return m.PoliID, nil
	case m.Has&HasPoliId != 0:
		return m.PoliID, nil
	case m.Has&HasPolyId != 0:
		return m.PolyID, nil
	}
	return 0, ErrMissingField
}

// ValidateRequest checks what PROTOCOL.md requires of a request: srcid, a
// policy, payloadsize and payload present, and payloadsize equal to the UTF-8
// length of the decoded payload. It returns the policy.
func (m *Message) ValidateRequest() (policy int64, err error) {
	return m.validateRequest(true)
}

// validateRequest is ValidateRequest; checkUTF8 false skips the payload's
// UTF-8 check, for a payload known to be ASCII (scanPlain).
func (m *Message) validateRequest(checkUTF8 bool) (policy int64, err error) {
	if m.Has&HasType == 0 || m.Type != TypeRequest {
		return 0, ErrType
	}
	const need = HasSrcID | HasPayloadSize | HasPayload
	if m.Has&need != need {
		return 0, ErrMissingField
	}
	if policy, err = m.Policy(); err != nil {
		return 0, err
	}
	if m.PayloadSize != int64(len(m.Payload)) {
		return 0, ErrPayloadSize
	}
	if checkUTF8 && !utf8.ValidString(m.Payload) {
		return 0, ErrUTF8
	}
	return policy, nil
}

// ValidateSetup checks a setup: id, a policy and listenport present, the port
// in 1..65535. It returns the policy.
func (m *Message) ValidateSetup() (policy int64, err error) {
	if m.Has&HasType == 0 || m.Type != TypeSetup {
		return 0, ErrType
	}
	const need = HasID | HasListenPort
	if m.Has&need != need {
		return 0, ErrMissingField
	}
	if policy, err = m.Policy(); err != nil {
		return 0, err
	}
	if m.ListenPort < 1 || m.ListenPort > 65535 {
		return 0, ErrPort
	}
	return policy, nil
}
