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
// fields instead of calling back per token (64 B: ~0.27 vs ~0.38 µs; 4 KiB:
// ~0.5 vs ~1.1 µs). It accepts only what the general path accepts; anything
// it is not sure of — a missing or repeated-with-null field, an escaped or
// repaired payload, a string where a number should be, any error — goes
// through Decode and ValidateRequest, which give the precise answer.

// unset marks an integer field the fast path did not see. A message that
// really holds this value takes the general path, which decides.
const unset = math.MinInt64

// unsetPayload marks an absent payload by its address.
var unsetPayload = "\x00unset"

var nullToken = []byte("null")

// fastRequest is what sonic decodes a request into.
type fastRequest struct {
	Type        int64  `json:"type"`
	SrcID       int64  `json:"srcid"`
	PoliID      int64  `json:"privPoliId"`
	PolyID      int64  `json:"privPolyId"`
	PayloadSize int64  `json:"payloadsize"`
	Payload     string `json:"payload"`
}

const fastOptions = decoder.OptionValidateString | decoder.OptionCaseSensitive

// DecodeRequest decodes a request and validates it: the same result as
// Decode followed by ValidateRequest, usually at less cost. m holds the
// fields on return (all of them when err is not nil); like Decode's, its
// strings may alias body.
func (d *Decoder) DecodeRequest(body []byte, m *Message) (policy int64, err error) {
	if policy, ok := d.fast(body, m); ok {
		return policy, nil
	}
	if err := d.Decode(body, m); err != nil {
		return 0, err
	}
	return m.ValidateRequest()
}

func (d *Decoder) fast(body []byte, m *Message) (int64, bool) {
	if len(body) == 0 {
		return 0, false
	}
	r := &d.req
	*r = fastRequest{Type: unset, SrcID: unset, PoliID: unset, PolyID: unset, PayloadSize: unset, Payload: unsetPayload}
	s := unsafe.String(&body[0], len(body))
	d.sonic.Reset(s)
	d.sonic.SetOptions(fastOptions)
	if d.sonic.Decode(r) != nil || d.sonic.CheckTrailings() != nil {
		return 0, false
	}
	if r.Type != TypeRequest || r.SrcID == unset || r.PayloadSize != int64(len(r.Payload)) {
		return 0, false
	}
	policy := r.PoliID
	switch {
	case r.PoliID == unset:
		policy = r.PolyID
	case r.PolyID != unset && r.PolyID != r.PoliID:
		return 0, false
	}
	if policy == unset {
		return 0, false
	}
	// The payload must be the bytes of the message themselves: sonic copies
	// a string it unescapes or repairs (invalid UTF-8), and the general path
	// judges those.
	if len(r.Payload) > 0 {
		p := uintptr(unsafe.Pointer(unsafe.StringData(r.Payload)))
		b := uintptr(unsafe.Pointer(&body[0]))
		if p < b || p+uintptr(len(r.Payload)) > b+uintptr(len(body)) {
			return 0, false
		}
	} else if unsafe.StringData(r.Payload) == unsafe.StringData(unsetPayload) {
		return 0, false
	}
	// sonic lets null leave a field as it was, so a field given twice, the
	// second time as null, would pass; the general path refuses null.
	if bytes.Contains(body, nullToken) {
		return 0, false
	}
	*m = Message{
		Has:         HasType | HasSrcID | HasPayloadSize | HasPayload,
		Type:        TypeRequest,
		SrcID:       r.SrcID,
		PayloadSize: r.PayloadSize,
		Payload:     r.Payload,
	}
	if r.PoliID != unset {
		m.PoliID, m.Has = r.PoliID, m.Has|HasPoliId
	}
	if r.PolyID != unset {
		m.PolyID, m.Has = r.PolyID, m.Has|HasPolyId
	}
	r.Payload = ""
	return policy, true
}

// Prepare compiles the request decoder now rather than on the first
// request, which would otherwise wait for sonic's JIT.
func Prepare() error {
	return decoder.Pretouch(reflect.TypeOf(fastRequest{}), option.WithCompileRecursiveDepth(0))
}
