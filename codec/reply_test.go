package codec

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
)

func TestReplyCheck(t *testing.T) {
	tests := []struct {
		name  string
		body  string
		srcid int64
		want  error
	}{
		{"reply", `{"type":2,"srcid":1,"destid":42,"payloadsize":2,"payload":"hi"}`, 42, nil},
		{"spaces", " \n{\"destid\":42,\"type\":2}\n ", 42, nil},
		{"other fields unjudged", `{"type":2,"destid":42,"payload":7,"x":[1,{"y":null}]}`, 42, nil},
		{"wrong destid", `{"type":2,"destid":43,"payload":"hi"}`, 42, ErrWrongDest},
		{"no destid", `{"type":2,"payload":"hi"}`, 42, ErrWrongDest},
		{"null destid", `{"type":2,"destid":null}`, 42, ErrWrongDest},
		{"destid as text", `{"type":2,"destid":"42"}`, 42, ErrSyntax},
		{"destid float", `{"type":2,"destid":42.0}`, 42, ErrSyntax},
		{"error", `{"type":3,"destid":42,"code":"timeout","error":"x"}`, 42, ErrNotReply},
		{"request", `{"type":0,"srcid":42,"privPoliId":7,"payloadsize":0,"payload":""}`, 42, ErrNotReply},
		{"setup ack", `{"type":4,"id":42,"privPolyId":7}`, 42, ErrNotReply},
		{"no type", `{"destid":42}`, 42, ErrNotReply},
		{"null type", `{"type":null,"destid":42}`, 42, ErrNotReply},
		{"empty", ``, 42, ErrSyntax},
		{"not JSON", `hello`, 42, ErrSyntax},
		{"array", `[{"type":2,"destid":42}]`, 42, ErrSyntax},
		{"null", `null`, 42, ErrSyntax},
		{"string", `"reply"`, 42, ErrSyntax},
		{"truncated", `{"type":2,"destid":42,"payload":"h`, 42, ErrSyntax},
		{"trailing", `{"type":2,"destid":42}{}`, 42, ErrSyntax},
		{"bad skipped value", `{"type":2,"destid":42,"x":[1,}`, 42, ErrSyntax},
		{"control char in string", "{\"type\":2,\"destid\":42,\"payload\":\"a\x01\"}", 42, ErrSyntax},
		{"bad escape", `{"type":2,"destid":42,"payload":"\q"}`, 42, ErrSyntax},
		{"repeated destid", `{"type":2,"destid":999,"payload":"x","destid":42}`, 42, ErrDuplicateKey},
		{"repeated type", `{"type":3,"destid":42,"type":2}`, 42, ErrDuplicateKey},
		{"key as a value is fine", `{"type":2,"destid":42,"payload":"destid","x":{"destid":1}}`, 42, nil},
		{"min int srcid", `{"type":2,"destid":-9223372036854775808}`, -1 << 63, ErrWrongDest},
	}
	var rc ReplyChecker
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := rc.Check([]byte(tt.body), tt.srcid); !errors.Is(got, tt.want) {
				t.Fatalf("Check(%q, %d) = %v; want %v", tt.body, tt.srcid, got, tt.want)
			}
		})
	}
}

// FuzzReplyCheck holds the checker to encoding/json: what it accepts is
// one valid JSON object whose type is the integer 2 and whose destid is
// srcid.
func FuzzReplyCheck(f *testing.F) {
	f.Add([]byte(`{"type":2,"srcid":1,"destid":42,"payloadsize":2,"payload":"hi"}`), int64(42))
	f.Add([]byte(`{"type":3,"destid":42,"code":"timeout","error":"x"}`), int64(42))
	f.Add([]byte(`{"type":2,"destid":42,"payload":"\u00e9\n"}`), int64(42))
	f.Add([]byte(`{"type":2,"destid":42,"type":0}`), int64(42))
	f.Add([]byte(`[]`), int64(0))
	for _, s := range plainCases {
		f.Add([]byte(s), int64(42))
	}
	var rc ReplyChecker
	f.Fuzz(func(t *testing.T, body []byte, srcid int64) {
		err := rc.Check(body, srcid)
		if ref := rc.checkSonic(body, srcid); err != ref {
			t.Fatalf("%q for %d: Check says %v, sonic's check %v", body, srcid, err, ref)
		}
		if err != nil {
			return
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("checker accepted %q, encoding/json refuses it: %v", body, err)
		}
		typ, err1 := strconv.ParseInt(string(m["type"]), 10, 64)
		dest, err2 := strconv.ParseInt(string(m["destid"]), 10, 64)
		if err1 != nil || err2 != nil || typ != TypeReply || dest != srcid {
			t.Fatalf("checker accepted %q for %d; encoding/json sees type %s destid %s", body, srcid, m["type"], m["destid"])
		}
	})
}

func BenchmarkReplyCheck(b *testing.B) {
	for _, size := range []int{64, 4096} {
		body := AppendReply(nil, 1, 42, strings.Repeat("x", size))
		var rc ReplyChecker
		b.Run("size="+itoa(size), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if err := rc.Check(body, 42); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPlainKeys is the cost of the repeated-key pass the fast paths
// take first; compare it with BenchmarkDecodeRequest in the same run.
func BenchmarkPlainKeys(b *testing.B) {
	for _, size := range []int{64, 4096} {
		body := AppendRequest(nil, 42, 7, strings.Repeat("x", size))
		b.Run("size="+itoa(size), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if !plainKeys(body) {
					b.Fatal("not plain")
				}
			}
		})
	}
}

// Escapes in the fields the check does not take are validated too (sonic
// skips them unchecked), and only that: the other fields are not judged,
// whatever else the reply holds.
func TestReplyCheckEscapes(t *testing.T) {
	var rc ReplyChecker
	for body, want := range map[string]error{
		`{"type":2,"destid":42,"x":"\0"}`:                     ErrSyntax,
		`{"type":2,"destid":42,"x":"\x41"}`:                   ErrSyntax,
		`{"type":2,"destid":42,"x":"\u00G9"}`:                 ErrSyntax,
		`{"type":2,"destid":42,"x":"\u12"}`:                   ErrSyntax,
		`{"type":2,"destid":42,"x":"\\\"\/\b\f\n\r\t\u00E9"}`: nil,
		`{"type":2,"destid":42,"x":"a\\"}`:                    nil,
		`{"type":2,"destid":42,"payload":1,"x":"\n"}`:         nil, // a wrong-typed field is not judged
	} {
		if err := rc.Check([]byte(body), 42); err != want {
			t.Errorf("%s: %v, want %v", body, err, want)
		}
	}
}
