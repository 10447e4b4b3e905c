package codec

import "bytes"

// plainKeys reports whether body is one JSON object whose depth-1 keys
// are free of escapes and whose known keys each appear at most once, as
// far as a quick structural pass can tell: the fast paths (sonic's struct
// decoding, which keeps the last of a repeated key) rely on it. It skips
// strings with IndexByte, so it costs about one pass over the bytes. When
// it cannot tell (an escaped key, a nested object or array, anything
// unusual) it says false, and the caller takes the general path, which
// refuses repeated keys precisely (ErrDuplicateKey). It does not validate
// the JSON: the decoders do.
func plainKeys(body []byte) bool {
	i := skipSpace(body, 0)
	if i >= len(body) || body[i] != '{' {
		return false
	}
	var seen uint32
	for i = skipSpace(body, i+1); i < len(body); {
		if body[i] == '}' {
			return true
		}
		if body[i] != '"' {
			return false
		}
		end := bytes.IndexByte(body[i+1:], '"')
		if end < 0 {
			return false
		}
		key := body[i+1 : i+1+end]
		if bytes.IndexByte(key, '\\') >= 0 {
			return false
		}
		if k := lookupKey(string(key)); k != keyNone { // no allocation: a switch on string(b)
			if seen&(1<<k) != 0 {
				return false
			}
			seen |= 1 << k
		}
		i = skipSpace(body, i+2+end)
		if i >= len(body) || body[i] != ':' {
			return false
		}
		i = skipSpace(body, i+1)
		if i >= len(body) {
			return false
		}
		switch body[i] {
		case '"':
			n := stringEnd(body[i+1:])
			if n < 0 {
				return false
			}
			i += n + 2
		case '{', '[':
			return false
		default: // a number, true, false or null
			for i < len(body) && body[i] != ',' && body[i] != '}' && !isSpace(body[i]) {
				i++
			}
		}
		i = skipSpace(body, i)
		if i < len(body) && body[i] == ',' {
			i = skipSpace(body, i+1)
		}
	}
	return false
}

// stringEnd returns the index of the quote that closes a JSON string whose
// content starts s, or -1.
func stringEnd(s []byte) int {
	for off := 0; ; {
		j := bytes.IndexByte(s[off:], '"')
		if j < 0 {
			return -1
		}
		j += off
		bs := 0
		for k := j - 1; k >= 0 && s[k] == '\\'; k-- {
			bs++
		}
		if bs%2 == 0 {
			return j
		}
		off = j + 1
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}
