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
	n := len(body)
	i := skipSpace(body, 0)
	if i >= n || body[i] != '{' {
		return false
	}
	var seen uint32
	i++
	for {
		for i < n && body[i] <= ' ' {
			i++
		}
		if i >= n {
			return false
		}
		if body[i] == '}' {
			return true
		}
		if body[i] != '"' {
			return false
		}
		// A key: short, scanned byte by byte; an escape means "ask the
		// general path".
		start := i + 1
		for i = start; i < n && body[i] != '"'; i++ {
			if body[i] == '\\' {
				return false
			}
		}
		if i >= n {
			return false
		}
		if k := keyOf(body[start:i]); k != keyNone {
			if seen&(1<<k) != 0 {
				return false
			}
			seen |= 1 << k
		} else if foldsToKnown(body[start:i]) {
			return false
		}
		for i++; i < n && body[i] <= ' '; i++ {
		}
		if i >= n || body[i] != ':' {
			return false
		}
		for i++; i < n && body[i] <= ' '; i++ {
		}
		if i >= n {
			return false
		}
		switch body[i] {
		case '"':
			e := stringEnd(body[i+1:])
			if e < 0 {
				return false
			}
			i += e + 2
		case '{', '[':
			return false
		default: // a number, true, false or null
			for i < n && body[i] != ',' && body[i] != '}' && body[i] > ' ' {
				i++
			}
		}
		for i < n && body[i] <= ' ' {
			i++
		}
		if i < n && body[i] == ',' {
			i++
		}
	}
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

// keyOf is lookupKey for bytes, without converting them: by length first,
// then one comparison (string(b) == "…" neither copies nor allocates).
func keyOf(b []byte) fieldKey {
	switch len(b) {
	case 2:
		if string(b) == "id" {
			return keyID
		}
	case 4:
		if string(b) == "type" {
			return keyType
		}
		if string(b) == "code" {
			return keyCode
		}
	case 5:
		switch {
		case string(b) == "srcid":
			return keySrcID
		case string(b) == "token":
			return keyToken
		case string(b) == "error":
			return keyError
		}
	case 6:
		if string(b) == "destid" {
			return keyDestID
		}
	case 7:
		if string(b) == "payload" {
			return keyPayload
		}
	case 10:
		switch {
		case string(b) == "privPoliId":
			return keyPoliID
		case string(b) == "privPolyId":
			return keyPolyID
		case string(b) == "listenport":
			return keyListenPort
		}
	case 11:
		if string(b) == "payloadsize" {
			return keyPayloadSize
		}
	}
	return keyNone
}

// knownKeys are the protocol's field names.
var knownKeys = [...]string{"type", "srcid", "destid", "id", "privPoliId", "privPolyId",
	"payloadsize", "payload", "listenport", "token", "code", "error"}

// foldsToKnown reports whether key is a protocol field's name in other
// letter case ("PrivPoliId"): encoding/json, among others, matches names
// without regard to case, so a backend could read it as the field.
//
// An ASCII key can only fold to a name of its own length; a key with other
// bytes can fold at another length ("ſrcid", with U+017F, is "srcid" to
// bytes.EqualFold and encoding/json), so it is compared whatever its length,
// up to the longest a name's runes can take.
func foldsToKnown(key []byte) bool {
	ascii := true
	for _, c := range key {
		if c >= 0x80 {
			ascii = false
			break
		}
	}
	for _, k := range knownKeys {
		if (len(k) == len(key) || !ascii && len(key) <= 3*len(k)) && bytes.EqualFold(key, []byte(k)) {
			return true
		}
	}
	return false
}
