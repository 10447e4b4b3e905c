package codec

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

// FuzzStream feeds a byte stream to a Splitter whole and in chunks of every
// size the fuzzer picks, decodes each message, and checks that both ways cut
// the same messages and that what validates round-trips through the encoder.
func FuzzStream(f *testing.F) {
	req := AppendRequest(nil, 42, 7, "hello")
	setup := AppendSetup(nil, 1, 7, 9101, "tok")
	bin := append(AppendFramed(nil, Binary, req), AppendFramed(nil, Binary, setup)...)
	text := append(append(append([]byte{}, req...), '\n'), setup...)
	seeds := [][]byte{
		bin,
		bin[:len(bin)-3], // partial frame
		bin[:2],          // partial header
		text,
		text[:len(text)-1], // object cut short
		[]byte(`{"type":"0","srcid":4,"privPolyId":7,"payloadsize":3,"payload":"h\u00e9"}`),
		[]byte(` {"a":"}\"{"} {"b":[{"c":"]"}]}`),
		AppendFramed(nil, Binary, []byte(`{"type":0,"srcid":5,`)),
		AppendFramed(nil, Binary, []byte(`[1,2,3]`)),
		{0x7f, 0xff, 0xff, 0xf0, '{'},
	}
	for _, s := range seeds {
		f.Add(s, uint8(1))
		f.Add(s, uint8(7))
	}
	f.Fuzz(func(t *testing.T, stream []byte, chunk uint8) {
		whole, wholeErr := splitAll(stream, len(stream)+1)
		parts, partErr := splitAll(stream, int(chunk)+1)
		if !errors.Is(partErr, wholeErr) && !(wholeErr == nil && partErr == nil) {
			t.Fatalf("whole: %v, in chunks of %d: %v", wholeErr, int(chunk)+1, partErr)
		}
		if len(whole) != len(parts) {
			t.Fatalf("whole cut %d messages, chunks %d", len(whole), len(parts))
		}
		var d Decoder
		for i, body := range whole {
			if !bytes.Equal(body, parts[i]) {
				t.Fatalf("message %d differs: %q vs %q", i, body, parts[i])
			}
			var m Message
			if d.Decode(body, &m) != nil {
				continue
			}
			if !json.Valid(body) {
				t.Fatalf("decoder accepted invalid JSON %q", body)
			}
			policy, err := m.ValidateRequest()
			if err != nil {
				continue
			}
			again := AppendRequest(nil, m.SrcID, policy, m.Payload)
			var m2 Message
			if err := d.Decode(again, &m2); err != nil {
				t.Fatalf("re-encoded %q does not decode: %v", again, err)
			}
			if p2, err := m2.ValidateRequest(); err != nil || p2 != policy || m2.Payload != m.Payload {
				t.Fatalf("round trip of %q: %+v %v", body, m2, err)
			}
		}
	})
}

// splitAll splits stream feeding it chunk bytes at a time, like reads of a socket.
func splitAll(stream []byte, chunk int) ([][]byte, error) {
	var sp Splitter
	sp.Max = 1 << 16
	var out [][]byte
	var buf []byte
	for off := 0; off < len(stream); off += chunk {
		end := min(off+chunk, len(stream))
		buf = append(buf, stream[off:end]...)
		for {
			body, n, err := sp.Next(buf)
			if errors.Is(err, ErrIncomplete) {
				break
			}
			if err != nil {
				return out, err
			}
			out = append(out, append([]byte(nil), body...))
			buf = buf[n:]
			sp.text.Reset()
		}
	}
	return out, nil
}

// FuzzDecodeRequest checks that the request fast path agrees with the
// general path (Decode, then ValidateRequest) on every input.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range requestCases {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var d Decoder
		var fast, slow Message
		p1, e1 := d.DecodeRequest(body, &fast)
		p2, e2 := generalRequest(&d, body, &slow)
		if e1 != e2 {
			t.Fatalf("%q: DecodeRequest says %v, the general path %v", body, e1, e2)
		}
		if e1 != nil {
			return
		}
		const fields = HasSrcID | HasPoliId | HasPolyId | HasPayload | HasPayloadSize
		if p1 != p2 || fast.SrcID != slow.SrcID || fast.Payload != slow.Payload || fast.Has&fields != slow.Has&fields {
			t.Fatalf("%q: fast %+v policy %d, general %+v policy %d", body, fast, p1, slow, p2)
		}
	})
}

func generalRequest(d *Decoder, body []byte, m *Message) (int64, error) {
	if err := d.Decode(body, m); err != nil {
		return 0, err
	}
	return m.ValidateRequest()
}

// requestCases are requests the fast path must take or leave to the general path.
var requestCases = []string{
	`{"type":0,"srcid":42,"privPoliId":7,"payloadsize":5,"payload":"hello"}`,
	`{"type":0,"srcid":42,"privPolyId":7,"payloadsize":5,"payload":"hello"}`,
	`{"type":0,"srcid":42,"privPoliId":7,"privPolyId":7,"payloadsize":0,"payload":""}`,
	`{"type":0,"srcid":42,"privPoliId":7,"privPolyId":8,"payloadsize":5,"payload":"hello"}`,
	`{"type":0,"srcid":42,"privPoliId":7,"payloadsize":0}`,
	`{"type":0,"srcid":42,"privPoliId":7,"payloadsize":2,"payload":"h\u00e9"}`,
	`{"type":0,"srcid":42,"privPoliId":7,"payloadsize":1,"payload":"` + "\xff" + `"}`,
	`{"type":0,"srcid":42,"privPoliId":7,"payloadsize":2,"payload":"` + "\xc3\xa9" + `"}`,
	`{"type":0,"srcid":42,"privPoliId":7,"payloadsize":1,"payload":"` + "\x01" + `"}`,
	`{"type":0,"srcid":42,"srcid":null,"privPoliId":7,"payloadsize":1,"payload":"x"}`,
	`{"type":0,"srcid":null,"privPoliId":7,"payloadsize":1,"payload":"x"}`,
	`{"type":0,"SRCID":42,"privPoliId":7,"payloadsize":1,"payload":"x"}`,
	`{"type":"0","srcid":42,"privPoliId":7,"payloadsize":1,"payload":"x"}`,
	`{"type":0,"srcid":4.5,"privPoliId":7,"payloadsize":1,"payload":"x"}`,
	`{"type":0,"srcid":-9223372036854775808,"privPoliId":7,"payloadsize":1,"payload":"x"}`,
	`{"type":0,"srcid":42,"privPoliId":7,"payloadsize":1,"payload":"x"} {}`,
	`{"type":0,"srcid":42,"privPoliId":7,"payloadsize":1,"payload":"x"}}`,
	`{"type":0,"srcid":42,"privPoliId":7,"payloadsize":1,"payload":"x","extra":[1,{"a":"b"}]}`,
	`{"type":0,"srcid":42,"privPoliId":7,"payloadsize":1,"payload":"x","extra":[1,}`,
	`{"type":1,"id":3,"privPolyId":9,"listenport":9101}`,
	`{"type":0,"srcid":1,"privPoliId":7,"payloadsize":1,"payload":"a","x":1e999}`,
	`{"type":0,"srcid":1,"privPoliId":7,"payloadsize":1,"payload":"a","x":[1.8e308,{"y":-1e400}]}`,
	`{"type":0,"srcid":1e999,"privPoliId":7,"payloadsize":1,"payload":"a"}`,
	`{"type":0,"srcid":99999999999999999999,"privPoliId":7,"payloadsize":1,"payload":"a"}`,
	`{"type":0,"srcid":1,"privPoliId":-9223372036854775808,"privPolyId":5,"payloadsize":1,"payload":"a"}`,
	`{"type":0,"srcid":1,"privPoliId":5,"privPolyId":-9223372036854775808,"payloadsize":1,"payload":"a"}`,
	`{"type":0,"srcid":1,"privPoliId":5,"payloadsize":1,"payload":"-9223372036854775808"}`,
	`{"type":0,"srcid":1,"privPoliId":-0,"payloadsize":1,"payload":"a","n":-0.0e-0}`,
	`null`, `[]`, `"x"`, ``, ` `,
}
