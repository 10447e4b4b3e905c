package codec

import (
	"testing"
)

// plainCases are messages the plain scan must take, or leave to the
// general path, as the general path would decode them.
var plainCases = []string{
	`{}`, ` { } `, `{"a":1}`, `{"":""}`,
	`{"type":2,"srcid":1,"destid":42,"payloadsize":2,"payload":"hi"}`,
	`{"type":2,"destid":42,"payload":"HELLO WORLD ~!@#$%^&*()"}`,
	`{"type":2,"destid":42,"payload":"tab	inside"}`,
	`{"type":2,"destid":42,"payload":"\u0041"}`,
	`{"type":2,"destid":42,"payload":"é"}`,
	`{"type":2,"destid":-42}`, `{"type":2,"destid":-0}`, `{"type":2,"destid":042}`,
	`{"type":2,"destid":4.2}`, `{"type":2,"destid":4e2}`, `{"type":2,"destid":123456789012345678}`,
	`{"type":2,"destid":1234567890123456789}`, `{"type":2,"destid":"42"}`, `{"type":2,"destid":null}`,
	`{"type":2,"destid":42,"x":true,"y":false,"z":null}`, `{"type":2,"destid":42,"x":tru}`,
	`{"type":2,"destid":42,"x":nul}`, `{"type":2,"destid":42,"x":[]}`, `{"type":2,"destid":42,"x":{}}`,
	`{"type":2,"destid":42,"payload":1}`, `{"type":2,"destid":42,"Destid":1}`,
	`{"type":2,"destid":42,"destid":42}`, `{"type":2,"destid":42,"x":1,"x":2}`,
	`{"type":2,"destid":42,}`, `{"type":2,"destid":42`, `{"type":2 "destid":42}`,
	`{"type":2,"destid":42}x`, `{"type":2,"destid":42} `, "\t\r\n{\"type\":2}\n",
	"{\"type\":2,\"destid\":42}\x00", `{"type" : 2 , "destid" : 42 }`, `{type:2}`,
	`{"type":2,"destid":42,"payload":"` + "\x7f" + `"}`, `{"type":2,"destid":42,"payload":"` + "\x1f" + `"}`,
	`{"type":2,"destid":42,"payload":"abcdefgh\"ijklmnop"}`, `{"type":2,"destid":42,"payload":"abcdefghijklmnop\\"}`,
	`{"type":2,"destid":42,"payload":"0123456789abcdef0123456789abcdef"}`,
}

// FuzzScanPlain checks the plain scan against the general decoder: what
// it accepts, the general decoder accepts too, with the same fields.
func FuzzScanPlain(f *testing.F) {
	for _, s := range plainCases {
		f.Add([]byte(s))
	}
	for _, s := range requestCases {
		f.Add([]byte(s))
	}
	var d Decoder
	f.Fuzz(func(t *testing.T, body []byte) {
		var fast, slow Message
		if !scanPlain(body, &fast) {
			return
		}
		if err := d.Decode(body, &slow); err != nil {
			t.Fatalf("%q: the plain scan took it, the general decoder says %v", body, err)
		}
		if fast != slow {
			t.Fatalf("%q: the plain scan gives %+v, the general decoder %+v", body, fast, slow)
		}
	})
}

// TestScanPlainTakesTheCommonShapes keeps the fast tier in use: the
// messages the proxy's own encoders write are plain.
func TestScanPlainTakesTheCommonShapes(t *testing.T) {
	var m Message
	for _, body := range [][]byte{
		AppendRequest(nil, 42, 7, "hello"),
		AppendReply(nil, 1, 42, "HELLO"),
		AppendError(nil, 42, CodeTimeout, "the backend did not answer in time"),
		AppendSetup(nil, 1, 7, 9101, "tok"),
		[]byte(`{"type":0,"srcid":42,"privPolyId":7,"payloadsize":0,"payload":""}`),
	} {
		if !scanPlain(body, &m) {
			t.Errorf("%s: not taken by the plain scan", body)
		}
	}
	if !scanPlain([]byte(`{"type":2,"destid":-42,"payload":"x"}`), &m) || m.DestID != -42 || m.Payload != "x" {
		t.Errorf("negative destid: %+v", m)
	}
}

// TestFoldedKeysOfOtherLengths: a key that folds to a protocol field's name
// only through a non-ASCII rune ("ſ", U+017F, folds to "s") is the field to
// encoding/json, so it counts as a repeat, on requests and replies.
func TestFoldedKeysOfOtherLengths(t *testing.T) {
	var d Decoder
	var m Message
	req := []byte(`{"type":0,"srcid":1,"ſrcid":2,"privPoliId":7,"payloadsize":1,"payload":"x"}`)
	if _, err := d.DecodeRequest(req, &m); err == nil {
		t.Errorf("%s: accepted", req)
	}
	var rc ReplyChecker
	if err := rc.Check([]byte(`{"type":2,"destid":42,"deſtid":1}`), 42); err == nil {
		t.Error("reply with deſtid: accepted")
	}
	if foldsToKnown([]byte("sourceid")) || !foldsToKnown([]byte("SRCID")) || !foldsToKnown([]byte("ſrcid")) {
		t.Error("foldsToKnown")
	}
}
