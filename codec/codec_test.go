package codec

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestDecodeRequest(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		policy  int64
		payload string
		err     error
	}{
		{"plain", `{"type":0,"srcid":42,"privPoliId":7,"payloadsize":3,"payload":"xyz"}`, 7, "xyz", nil},
		{"string type", `{"type":"0","srcid":4,"privPolyId":7,"payloadsize":2,"payload":"ok"}`, 7, "ok", nil},
		{"utf8 escape", `{"type":0,"srcid":1,"privPoliId":7,"payloadsize":3,"payload":"h\u00e9"}`, 7, "h\u00e9", nil},
		{"extra fields", `{"type":0,"x":{"srcid":"no","a":[1,{"b":null}]},"srcid":1,"privPoliId":7,"payloadsize":1,"payload":"a","z":true}`, 7, "a", nil},
		{"both spellings agree", `{"type":0,"srcid":1,"privPoliId":7,"privPolyId":7,"payloadsize":0,"payload":""}`, 7, "", nil},
		{"both spellings differ", `{"type":0,"srcid":1,"privPoliId":7,"privPolyId":8,"payloadsize":0,"payload":""}`, 0, "", ErrPolicyConflict},
		{"size mismatch", `{"type":0,"srcid":5,"privPoliId":7,"payloadsize":99,"payload":"short"}`, 0, "", ErrPayloadSize},
		{"size counts bytes", `{"type":0,"srcid":5,"privPoliId":7,"payloadsize":2,"payload":"h\u00e9"}`, 0, "", ErrPayloadSize},
		{"no size", `{"type":0,"srcid":5,"privPoliId":7,"payload":"no size"}`, 0, "", ErrMissingField},
		{"no policy", `{"type":0,"srcid":5,"payloadsize":1,"payload":"x"}`, 0, "", ErrMissingField},
		{"string srcid", `{"type":0,"srcid":"five","privPoliId":7,"payloadsize":1,"payload":"x"}`, 0, "", ErrFieldType},
		{"number payload", `{"type":0,"srcid":5,"privPoliId":7,"payloadsize":1,"payload":1}`, 0, "", ErrFieldType},
		{"float policy", `{"type":0,"srcid":5,"privPoliId":7.5,"payloadsize":1,"payload":"x"}`, 0, "", ErrFieldType},
		{"object payload", `{"type":0,"srcid":5,"privPoliId":7,"payloadsize":1,"payload":{}}`, 0, "", ErrFieldType},
		{"unknown type", `{"type":77,"srcid":5}`, 0, "", ErrType},
		{"no type", `{"srcid":5,"privPoliId":7,"payloadsize":1,"payload":"x"}`, 0, "", ErrType},
		{"array", `[1,2,3]`, 0, "", ErrNotObject},
		{"number", `12`, 0, "", ErrNotObject},
		{"truncated", `{"type":0,"srcid":5,`, 0, "", ErrSyntax},
		{"two objects", `{"type":0,"srcid":1,"privPoliId":7,"payloadsize":1,"payload":"a"} {}`, 0, "", ErrSyntax},
		{"trailing junk", `{"type":0,"srcid":1,"privPoliId":7,"payloadsize":1,"payload":"a"}x`, 0, "", ErrSyntax},
		{"empty", ``, 0, "", ErrSyntax},
		{"bad literal", `{"type":0,"srcid":tru}`, 0, "", ErrSyntax},
	}
	var d Decoder
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m Message
			err := d.Decode([]byte(tt.in), &m)
			var policy int64
			if err == nil {
				policy, err = m.ValidateRequest()
			}
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v; want %v", err, tt.err)
			}
			if err != nil {
				return
			}
			if policy != tt.policy || m.Payload != tt.payload {
				t.Fatalf("got policy %d payload %q; want %d %q", policy, m.Payload, tt.policy, tt.payload)
			}
		})
	}
}

func TestDecodeSetup(t *testing.T) {
	var d Decoder
	var m Message
	if err := d.Decode([]byte(`{"type":"1","id":3,"privPoliId":9,"listenport":9101,"token":"s3"}`), &m); err != nil {
		t.Fatal(err)
	}
	policy, err := m.ValidateSetup()
	if err != nil || policy != 9 || m.ID != 3 || m.ListenPort != 9101 || m.Token != "s3" {
		t.Fatalf("got %+v policy %d err %v", m, policy, err)
	}
	if err := d.Decode([]byte(`{"type":1,"id":3,"privPolyId":9,"listenport":70000}`), &m); err != nil {
		t.Fatal(err)
	}
	if _, err := m.ValidateSetup(); !errors.Is(err, ErrPort) {
		t.Fatalf("port 70000: err = %v; want ErrPort", err)
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	payloads := []string{"", "hello", "h\u00e9 \"q\" \\ \n\t\x01 \u2028", "\xff bad utf8"}
	var d Decoder
	for _, p := range payloads {
		for _, f := range []Framing{Binary, Text} {
			buf := BeginFrame(nil, f)
			buf = AppendReply(buf, 1, 42, p)
			buf = EndFrame(buf, f, 0)
			var sp Splitter
			body, n, err := sp.Next(buf)
			if f == Text && err == nil && n != len(buf)-1 {
				t.Fatalf("text frame took %d of %d bytes", n, len(buf))
			}
			if err != nil {
				t.Fatalf("%v %q: split: %v", f, p, err)
			}
			var std map[string]any
			if err := json.Unmarshal(body, &std); err != nil {
				t.Fatalf("encoding/json rejects %s: %v", body, err)
			}
			var m Message
			if err := d.Decode(body, &m); err != nil {
				t.Fatal(err)
			}
			if m.Payload != std["payload"] || m.PayloadSize != int64(len(m.Payload)) {
				t.Fatalf("payload %q size %d; want %q", m.Payload, m.PayloadSize, std["payload"])
			}
		}
	}
	e := AppendError(nil, 42, CodeNoBackend, `no backend serves "9"`)
	var std struct {
		Type   int
		Destid int64
		Code   string
		Error  string
	}
	if err := json.Unmarshal(e, &std); err != nil || std.Type != 3 || std.Destid != 42 || std.Code != CodeNoBackend || std.Error != `no backend serves "9"` {
		t.Fatalf("error message %s decodes to %+v, %v", e, std, err)
	}
}

func TestTextScannerSplits(t *testing.T) {
	stream := []byte(" {\"a\":\"}{\\\"\"}\n{\"b\":[{}]}{\"c\":1}\n")
	want := []string{`{"a":"}{\""}`, `{"b":[{}]}`, `{"c":1}`}
	// Feed the stream one byte at a time, as a slow client would.
	var s TextScanner
	var got []string
	buf := []byte{}
	for _, c := range stream {
		buf = append(buf, c)
		for {
			obj, n, err := s.Scan(buf, 0)
			if errors.Is(err, ErrIncomplete) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, string(obj))
			buf = buf[n:]
			s.Reset()
		}
	}
	if len(got) != len(want) {
		t.Fatalf("got %q; want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("object %d = %q; want %q", i, got[i], want[i])
		}
	}
	if _, _, err := (&TextScanner{}).Scan([]byte("  x{}"), 0); !errors.Is(err, ErrFraming) {
		t.Fatalf("junk before object: err = %v; want ErrFraming", err)
	}
	if _, _, err := (&TextScanner{}).Scan([]byte(`{"a":"0123456789"`), 8); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("growing object: err = %v; want ErrTooLarge", err)
	}
}

func TestSplitBinary(t *testing.T) {
	frame := AppendFramed(nil, Binary, []byte(`{"type":0}`))
	for i := 0; i < len(frame); i++ {
		if _, _, err := SplitBinary(frame[:i], 0); !errors.Is(err, ErrIncomplete) {
			t.Fatalf("prefix %d: err = %v; want ErrIncomplete", i, err)
		}
	}
	body, n, err := SplitBinary(append(frame, 0, 0), 0)
	if err != nil || n != len(frame) || !bytes.Equal(body, []byte(`{"type":0}`)) {
		t.Fatalf("got %q %d %v", body, n, err)
	}
	if _, _, err := SplitBinary([]byte{0x7f, 0xff, 0xff, 0xf0, '{'}, 0); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("huge header: err = %v; want ErrTooLarge", err)
	}
}

// The canonical request takes the fast path, without allocating.
func TestDecodeRequestFastPath(t *testing.T) {
	var d Decoder
	var m Message
	body := AppendRequest(nil, 42, 7, strings.Repeat("é", 40))
	if _, ok := d.fast(body, &m); !ok {
		t.Fatal("the encoder's own request missed the fast path")
	}
	if m.SrcID != 42 || m.Payload != strings.Repeat("é", 40) || m.PayloadSize != 80 {
		t.Fatalf("fast path decoded %+v", m)
	}
	if n := testing.AllocsPerRun(100, func() { d.DecodeRequest(body, &m) }); n != 0 {
		t.Fatalf("DecodeRequest allocates %.0f times", n)
	}
	for _, s := range requestCases {
		var fast, slow Message
		p1, e1 := d.DecodeRequest([]byte(s), &fast)
		p2, e2 := generalRequest(&d, []byte(s), &slow)
		if e1 != e2 || p1 != p2 {
			t.Errorf("%q: fast %d %v, general %d %v", s, p1, e1, p2, e2)
		}
	}
}

func TestRepeatedKeysRefused(t *testing.T) {
	tests := []struct {
		name string
		body string
		want error
	}{
		{"policy twice", `{"type":0,"srcid":1,"privPoliId":7,"privPoliId":8,"payloadsize":1,"payload":"x"}`, ErrDuplicateKey},
		{"srcid twice", `{"type":0,"srcid":1,"privPoliId":7,"payloadsize":1,"payload":"x","srcid":2}`, ErrDuplicateKey},
		{"type twice", `{"type":1,"type":0,"srcid":1,"privPoliId":7,"payloadsize":1,"payload":"x"}`, ErrDuplicateKey},
		{"escaped key twice", `{"type":0,"srcid":1,"privPoliId":7,"priv\u0050oliId":8,"payloadsize":1,"payload":"x"}`, ErrDuplicateKey},
		{"both spellings agree", `{"type":0,"srcid":1,"privPoliId":7,"privPolyId":7,"payloadsize":1,"payload":"x"}`, nil},
		{"key name as a value", `{"type":0,"srcid":1,"privPoliId":7,"payloadsize":5,"payload":"srcid","x":"srcid"}`, nil},
		{"nested repeat is not top level", `{"type":0,"srcid":1,"privPoliId":7,"payloadsize":1,"payload":"x","n":{"srcid":1,"srcid":2}}`, nil},
		{"a field in other case", `{"type":0,"srcid":1,"privPoliId":7,"PrivPoliId":8,"payloadsize":1,"payload":"x"}`, ErrDuplicateKey},
		{"unknown key twice", `{"type":0,"srcid":1,"privPoliId":7,"payloadsize":1,"payload":"x","u":1,"u":2}`, nil},
	}
	var d Decoder
	var m Message
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := d.DecodeRequest([]byte(tt.body), &m); !errors.Is(err, tt.want) {
				t.Fatalf("DecodeRequest(%s) = %v; want %v", tt.body, err, tt.want)
			}
			if err := d.Decode([]byte(tt.body), &m); !errors.Is(err, tt.want) {
				t.Fatalf("Decode(%s) = %v; want %v", tt.body, err, tt.want)
			}
		})
	}
}

func TestKeyOfAgreesWithLookupKey(t *testing.T) {
	for _, k := range []string{"type", "srcid", "destid", "id", "privPoliId", "privPolyId", "payloadsize",
		"payload", "listenport", "token", "code", "error", "", "x", "Type", "srcids", "privPoliid"} {
		if got, want := keyOf([]byte(k)), lookupKey(k); got != want {
			t.Errorf("keyOf(%q) = %d; lookupKey says %d", k, got, want)
		}
	}
}
