package codec

import (
	"errors"
	"fmt"
	"io"
	"testing"
)

func TestErrorAnswer(t *testing.T) {
	for _, tt := range []struct {
		name      string
		err       error
		max       int
		code, txt string
	}{
		{"too large", ErrTooLarge, 100, CodeTooLarge, "message larger than 100 bytes"},
		{"too large default max", ErrTooLarge, 0, CodeTooLarge, "message larger than 1048576 bytes"},
		{"too large wrapped", fmt.Errorf("x: %w", ErrTooLarge), 7, CodeTooLarge, "message larger than 7 bytes"},
		{"framing", ErrFraming, 0, CodeBadRequest, "text stream is not a sequence of JSON objects"},
		{"type", ErrType, 0, CodeBadRequest, "not a request: type must be 0"},
		{"syntax", ErrSyntax, 0, CodeBadRequest, "malformed JSON"},
		{"not object", ErrNotObject, 0, CodeBadRequest, "message is not a JSON object"},
		{"field type", ErrFieldType, 0, CodeBadRequest, "srcid, privPoliId and payloadsize must be integers and payload a string"},
		{"missing field", ErrMissingField, 0, CodeBadRequest, "a request needs srcid, privPoliId, payloadsize and payload"},
		{"payload size", ErrPayloadSize, 0, CodeBadRequest, "payloadsize does not match the payload's UTF-8 length"},
		{"utf8", ErrUTF8, 0, CodeBadRequest, "payload is not valid UTF-8"},
		{"policy conflict", ErrPolicyConflict, 0, CodeBadRequest, "privPoliId and privPolyId disagree"},
		{"other", io.ErrUnexpectedEOF, 0, CodeBadRequest, "unexpected EOF"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, txt := ErrorAnswer(tt.err, tt.max)
			if code != tt.code || txt != tt.txt {
				t.Errorf("ErrorAnswer(%v, %d) = %q, %q; want %q, %q", tt.err, tt.max, code, txt, tt.code, tt.txt)
			}
		})
	}
}

func TestParseHeader(t *testing.T) {
	for _, tt := range []struct {
		name string
		hdr  []byte
		max  int
		size int
		err  error
	}{
		{"short", []byte{0, 0, 1}, 0, 0, ErrIncomplete},
		{"empty body", []byte{0, 0, 0, 0}, 0, 0, nil},
		{"at max", []byte{0, 0, 0, 10, 'x'}, 10, 10, nil},
		{"past max", []byte{0, 0, 0, 11}, 10, 11, ErrTooLarge},
		{"default max", []byte{0, 0x10, 0, 1}, 0, 1<<20 + 1, ErrTooLarge},
		{"largest header", []byte{0x7f, 0xff, 0xff, 0xff}, 1 << 30, 1<<31 - 1, ErrTooLarge},
	} {
		t.Run(tt.name, func(t *testing.T) {
			size, err := ParseHeader(tt.hdr, tt.max)
			if size != tt.size || !errors.Is(err, tt.err) || (tt.err == nil) != (err == nil) {
				t.Errorf("ParseHeader(%v, %d) = %d, %v; want %d, %v", tt.hdr, tt.max, size, err, tt.size, tt.err)
			}
		})
	}
}
