package codec

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
)

func benchRequest(size int) []byte {
	return AppendRequest(nil, 42, 7, strings.Repeat("x", size))
}

// stdRequest is what a straightforward encoding/json decoder of a request
// needs: pointers for presence, and a json.RawMessage for the lenient type.
type stdRequest struct {
	Type        json.RawMessage `json:"type"`
	SrcID       *int64          `json:"srcid"`
	PoliID      *int64          `json:"privPoliId"`
	PolyID      *int64          `json:"privPolyId"`
	PayloadSize *int64          `json:"payloadsize"`
	Payload     *string         `json:"payload"`
}

func BenchmarkDecodeRequest(b *testing.B) {
	if err := Prepare(); err != nil {
		b.Fatal(err)
	}
	for _, size := range []int{64, 4096} {
		body := benchRequest(size)
		for _, path := range []struct {
			name   string
			decode func(*Decoder, []byte, *Message) (int64, error)
		}{
			{"sonic", generalRequest}, // the visitor, then ValidateRequest
			{"sonic_struct", func(d *Decoder, body []byte, m *Message) (int64, error) { // sonic's struct decoder
				if p, ok := d.fast(body, m); ok {
					return p, nil
				}
				return 0, errors.New("not taken")
			}},
			{"request", (*Decoder).DecodeRequest}, // DecodeRequest: the plain scan, else sonic's struct decoder
		} {
			b.Run(path.name+"/"+sizeName(size), func(b *testing.B) {
				var d Decoder
				var m Message
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := path.decode(&d, body, &m); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		b.Run("encoding_json/"+sizeName(size), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				var r stdRequest
				if err := json.Unmarshal(body, &r); err != nil {
					b.Fatal(err)
				}
				if r.Payload == nil || int64(len(*r.Payload)) != *r.PayloadSize {
					b.Fatal("bad")
				}
			}
		})
	}
}

func BenchmarkSplitText(b *testing.B) {
	body := benchRequest(64)
	stream := []byte(strings.Repeat(string(body)+"\n", 16))
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	var s TextScanner
	for b.Loop() {
		s.Reset()
		buf := stream
		for len(buf) > 0 {
			_, n, err := s.Scan(buf, 0)
			if err != nil {
				break
			}
			buf = buf[n:]
		}
	}
}

func BenchmarkEncodeError(b *testing.B) {
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = BeginFrame(buf[:0], Binary)
		buf = AppendError(buf, 42, CodeNoBackend, "no backend serves policy 9")
		buf = EndFrame(buf, Binary, 0)
	}
}

func sizeName(n int) string {
	if n >= 1024 {
		return itoa(n/1024) + "KiB"
	}
	return itoa(n) + "B"
}

func itoa(n int) string { return strconv.Itoa(n) }
