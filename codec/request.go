package codec

import (
	"bytes"
	"math"
	"reflect"
	"unsafe"

	"github.com/bytedance/sonic/decoder"
	"github.com/bytedance/sonic/option"
)

// The request fast path. Nearly every message a proxy decodes is a
// well-formed request, and for it sonic's JIT-compiled struct decoder is
// cheaper than the general visitor: it validates syntax, strings (control
// characters, UTF-8) and trailing bytes in the same pass, and fills fixed
// fields instead of calling back per token (figures in BENCHMARKS.md,
// validation included). It accepts only what the general path accepts;
// anything it is not sure of — a missing or null field, an escaped or
// repaired payload, a string where a number should be, any error — goes
// through Decode and ValidateRequest, which give the precise answer.
// Before it, the plain scan (scan.go) takes plain messages up to 1 KiB.

// unset marks an integer field the fast path did not see. A message that
// really holds this value takes the general path, which decides.
const unset = math.MinInt64

// unsetPayload marks an absent payload by its address.
var unsetPayload = "\x00unset"

// minInt64 is unset as it appears in JSON.
var minInt64 = []byte("9223372036854775808")

// fastRequest is what sonic decodes a request into. The fields point into
// fastValues: sonic decodes a value into the pointed-to variable and sets
// the pointer to nil on null, so a null is seen, even one that repeats a
// field (which plain fields would let keep the earlier value).
type fastRequest struct {
	Type        *int64  `json:"type"`
	SrcID       *int64  `json:"srcid"`
	PoliID      *int64  `json:"privPoliId"`
	PolyID      *int64  `json:"privPolyId"`
	PayloadSize *int64  `json:"payloadsize"`
	Payload     *string `json:"payload"`

	// The other fields the general path knows: it refuses a request where
	// one holds the wrong JSON type, and so must this.
	DestID     *int64  `json:"destid"`
	ID         *int64  `json:"id"`
	ListenPort *int64  `json:"listenport"`
	Token      *string `json:"token"`
	Code       *string `json:"code"`
	Error      *string `json:"error"`
}

type fastValues struct {
	typ, srcID, poliID, polyID, payloadSize int64
	payload                                 string
	other                                   int64
	otherStr                                string
}

const fastOptions = decoder.OptionValidateString | decoder.OptionCaseSensitive

// DecodeRequest decodes a request and validates it: the same result as
// Decode followed by ValidateRequest, usually at less cost. m holds the
// fields on return (all of them when err is not nil); like Decode's, its
// strings may alias body.
func (d *Decoder) DecodeRequest(body []byte, m *Message) (policy int64, err error) {
	if scanPlain(body, m) {
		return m.validateRequest(false) // plain strings are ASCII
	}
	if policy, ok := d.fast(body, m); ok {
		return policy, nil
	}
	if err := d.Decode(body, m); err != nil {
		return 0, err
	}
	return m.ValidateRequest()
}

func (d *Decoder) fast(body []byte, m *Message) (int64, bool) {
	if len(body) == 0 || !plainKeys(body) {
		return 0, false
	}
	v, r := &d.vals, &d.req
	*v = fastValues{typ: unset, srcID: unset, poliID: unset, polyID: unset, payloadSize: unset, payload: unsetPayload}
	*r = fastRequest{&v.typ, &v.srcID, &v.poliID, &v.polyID, &v.payloadSize, &v.payload,
		&v.other, &v.other, &v.other, &v.otherStr, &v.otherStr, &v.otherStr}
	s := unsafe.String(&body[0], len(body))
	d.sonic.Reset(s)
	d.sonic.SetOptions(fastOptions)
	ok := d.sonic.Decode(r) == nil && d.sonic.CheckTrailings() == nil
	d.sonic.Reset("") // do not keep the input alive
	payload := v.payload
	v.payload, v.otherStr = "", "" // do not keep the input alive
	if !ok || r.Type == nil || r.SrcID == nil || r.PoliID == nil || r.PolyID == nil ||
		r.PayloadSize == nil || r.Payload == nil || r.DestID == nil || r.ID == nil ||
		r.ListenPort == nil || r.Token == nil || r.Code == nil || r.Error == nil {
		return 0, false // an error, or a null: the general path says which
	}
	if v.typ != TypeRequest || v.srcID == unset || v.payloadSize != int64(len(payload)) {
		return 0, false
	}
	policy := v.poliID
	switch {
	case v.poliID == unset:
		policy = v.polyID
	case v.polyID != unset && v.polyID != v.poliID:
		return 0, false
	}
	if policy == unset {
		return 0, false
	}
	// One spelling looks absent: unless the message holds the one number
	// that reads as absent, it is. (Both present and different is a
	// conflict the general path must answer.)
	if (v.poliID == unset) != (v.polyID == unset) && bytes.Contains(body, minInt64) {
		return 0, false
	}
	// The payload must be the bytes of the message themselves: sonic copies
	// a string it unescapes or repairs (invalid UTF-8), and the general path
	// judges those.
	if len(payload) > 0 {
		p := uintptr(unsafe.Pointer(unsafe.StringData(payload)))
		b := uintptr(unsafe.Pointer(&body[0]))
		if p < b || p+uintptr(len(payload)) > b+uintptr(len(body)) {
			return 0, false
		}
	} else if unsafe.StringData(payload) == unsafe.StringData(unsetPayload) {
		return 0, false
	}
	*m = Message{
		Has:         HasType | HasSrcID | HasPayloadSize | HasPayload,
		Type:        TypeRequest,
		SrcID:       v.srcID,
		PayloadSize: v.payloadSize,
		Payload:     payload,
	}
	if v.poliID != unset {
		m.PoliID, m.Has = v.poliID, m.Has|HasPoliId
	}
	if v.polyID != unset {
		m.PolyID, m.Has = v.polyID, m.Has|HasPolyId
	}
	return policy, true
}

// Prepare compiles the request decoder and the reply checker now rather
// than on the first message, which would otherwise wait for sonic's JIT.
func Prepare() error {
	if err := decoder.Pretouch(reflect.TypeOf(fastRequest{}), option.WithCompileRecursiveDepth(0)); err != nil {
		return err
	}
	return decoder.Pretouch(reflect.TypeOf(fastReply{}), option.WithCompileRecursiveDepth(0))
}
