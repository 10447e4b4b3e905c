package codec

import (
	"encoding/binary"
	"unsafe"
)

// The plain scan: the first tier of request decoding and reply checking.
//
// Nearly every message a proxy sees has the same plain shape: one JSON
// object whose members are integers and strings of ASCII from space to 0x7f
// without escapes. For those a single hand-written pass validates the JSON and
// takes the fields, at a fraction of what a general decoder's call costs
// (BenchmarkDecodeRequest, BenchmarkReplyCheck; history in BENCHMARKS.md).
// It accepts a strict subset of what the general decoder accepts, and
// decodes what it accepts to the same Message: anything it is not sure of
// (an escape, a control character or a byte outside ASCII in a string, a fraction or an
// exponent, a nested value, a long number, a repeated protocol field, a
// field name in other letter case, a known field of the wrong JSON type,
// or any syntax error) makes it say "not sure" and the caller asks sonic,
// whose answer is the reference. FuzzScanPlain holds it to that.

// plainMax is the longest message the plain scan takes. Its string scan
// goes eight bytes at a time; sonic's goes 32 (AVX2) after a fixed cost of
// about 200 ns per call, so past about 1 KiB sonic is the quicker
// (BenchmarkDecodeRequest and BenchmarkReplyCheck at 64 B and 4 KiB).
const plainMax = 1 << 10

// scanPlain decodes body into m when body is a plain JSON object of at
// most plainMax bytes, and reports whether it was. m is overwritten either
// way; its strings alias body.
func scanPlain(body []byte, m *Message) bool {
	*m = Message{}
	n := len(body)
	if n > plainMax {
		return false
	}
	i := skipSpace(body, 0)
	if i >= n || body[i] != '{' {
		return false
	}
	i = skipSpace(body, i+1)
	if i < n && body[i] == '}' {
		return skipSpace(body, i+1) == n
	}
	for {
		// "key"
		if i >= n || body[i] != '"' {
			return false
		}
		k, e := knownKeyAt(body, i+1)
		if k == keyNone {
			if e = plainString(body, i+1); e < 0 {
				return false
			}
			key := body[i+1 : e]
			if k = keyOf(key); k == keyNone && foldsToKnown(key) {
				return false
			}
		}
		var bit uint32
		if k != keyNone {
			bit = 1 << (k - 1) // Has* bits follow the fieldKey order
			if m.Has&bit != 0 {
				return false // repeated: the general path refuses it precisely
			}
		}
		i = skipSpace(body, e+1)
		if i >= n || body[i] != ':' {
			return false
		}
		i = skipSpace(body, i+1)
		if i >= n {
			return false
		}
		// value
		switch c := body[i]; {
		case c == '"':
			e := plainString(body, i+1)
			if e < 0 {
				return false
			}
			if k != keyNone {
				if !setString(m, k, body[i+1:e]) {
					return false
				}
				m.Has |= bit
			}
			i = e + 1
		case c == '-' || c >= '0' && c <= '9':
			v, e := plainInt(body, i)
			if e < 0 {
				return false
			}
			if k != keyNone {
				if !setInt(m, k, v) {
					return false
				}
				m.Has |= bit
			}
			i = e
		case k == keyNone: // true, false or null of a field the proxy does not read
			e := literalEnd(body, i)
			if e < 0 {
				return false
			}
			i = e
		default:
			return false
		}
		i = skipSpace(body, i)
		if i >= n {
			return false
		}
		switch body[i] {
		case ',':
			i = skipSpace(body, i+1)
		case '}':
			return skipSpace(body, i+1) == n
		default:
			return false
		}
	}
}

// knownKeyAt matches the protocol's field names, with their closing quote,
// at body[i]: the field and the quote's index, or keyNone. Nearly every key
// is one of them, and this spares the string scan and the lookup.
func knownKeyAt(body []byte, i int) (fieldKey, int) {
	// Comparisons with constant strings: the compiler turns each into a
	// load or two, where a table of names would call memequal.
	n := len(body) - i
	if n < 3 {
		return keyNone, -1
	}
	b := body[i:]
	switch b[0] {
	case 't':
		switch {
		case n >= 5 && string(b[:5]) == `type"`:
			return keyType, i + 4
		case n >= 6 && string(b[:6]) == `token"`:
			return keyToken, i + 5
		}
	case 's':
		if n >= 6 && string(b[:6]) == `srcid"` {
			return keySrcID, i + 5
		}
	case 'p':
		switch {
		case n >= 8 && string(b[:8]) == `payload"`:
			return keyPayload, i + 7
		case n >= 11 && string(b[:11]) == `privPoliId"`:
			return keyPoliID, i + 10
		case n >= 11 && string(b[:11]) == `privPolyId"`:
			return keyPolyID, i + 10
		case n >= 12 && string(b[:12]) == `payloadsize"`:
			return keyPayloadSize, i + 11
		}
	case 'd':
		if n >= 7 && string(b[:7]) == `destid"` {
			return keyDestID, i + 6
		}
	case 'i':
		if string(b[:3]) == `id"` {
			return keyID, i + 2
		}
	}
	return keyNone, -1
}

// plainString returns the index of the quote that ends the string whose
// content starts at body[i], or -1 when the string is not plain: it holds
// an escape, a control character or a byte outside ASCII (all of which the
// general path judges), or it does not end. Eight bytes at a time.
func plainString(body []byte, i int) int {
	const (
		ones  = 0x0101010101010101
		highs = 0x8080808080808080
	)
	// For bytes below 0x80 adding 0x7f sets a byte's high bit exactly when
	// it is not zero, and adding 0x60 exactly when it is 0x20 or above:
	// no carry crosses bytes, so the test is exact.
	ok := func(x uint64) bool {
		q := (x ^ '"'*ones) + 0x7f*ones
		b := (x ^ '\\'*ones) + 0x7f*ones
		c := x + 0x60*ones
		return x&highs == 0 && q&b&c&highs == highs
	}
	n := len(body)
	for ; i+16 <= n; i += 16 {
		if !ok(binary.LittleEndian.Uint64(body[i:])) || !ok(binary.LittleEndian.Uint64(body[i+8:])) {
			break
		}
	}
	for ; i < n; i++ {
		switch c := body[i]; {
		case c == '"':
			return i
		case c == '\\' || c < 0x20 || c >= 0x80:
			return -1
		}
	}
	return -1
}

// plainInt reads the JSON integer at body[i] and returns it and the index
// after it, or -1 when it is not a plain integer: a fraction or exponent,
// a leading zero, "-0", more than 18 digits (no overflow to think of), or
// not a number at all.
func plainInt(body []byte, i int) (int64, int) {
	n := len(body)
	neg := i < n && body[i] == '-'
	if neg {
		i++
	}
	start := i
	var v int64
	for ; i < n && body[i] >= '0' && body[i] <= '9'; i++ {
		v = v*10 + int64(body[i]-'0')
	}
	digits := i - start
	switch {
	case digits == 0 || digits > 18:
		return 0, -1
	case body[start] == '0' && (digits > 1 || neg):
		return 0, -1
	case i < n && (body[i] == '.' || body[i] == 'e' || body[i] == 'E'):
		return 0, -1
	}
	if neg {
		v = -v
	}
	return v, i
}

// literalEnd returns the index after the true, false or null at body[i],
// or -1.
func literalEnd(body []byte, i int) int {
	for _, lit := range [...]string{"true", "false", "null"} {
		if len(body)-i >= len(lit) && string(body[i:i+len(lit)]) == lit {
			return i + len(lit)
		}
	}
	return -1
}

// setInt stores an integer field; false when k is a string field.
func setInt(m *Message, k fieldKey, v int64) bool {
	switch k {
	case keyType:
		m.Type = v
	case keySrcID:
		m.SrcID = v
	case keyDestID:
		m.DestID = v
	case keyID:
		m.ID = v
	case keyPoliID:
		m.PoliID = v
	case keyPolyID:
		m.PolyID = v
	case keyPayloadSize:
		m.PayloadSize = v
	case keyListenPort:
		m.ListenPort = v
	default:
		return false
	}
	return true
}

// setString stores a string field, aliasing s; false when k is an integer
// field.
func setString(m *Message, k fieldKey, s []byte) bool {
	var str string
	if len(s) > 0 {
		str = unsafe.String(&s[0], len(s))
	}
	switch k {
	case keyPayload:
		m.Payload = str
	case keyToken:
		m.Token = str
	case keyCode:
		m.Code = str
	case keyError:
		m.Error = str
	default:
		return false
	}
	return true
}
