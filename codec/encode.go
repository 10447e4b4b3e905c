package codec

import (
	"strconv"
	"unicode/utf8"
)

// AppendError appends an error message (type 3) addressed to destid.
func AppendError(dst []byte, destid int64, code, text string) []byte {
	dst = append(dst, `{"type":3,"destid":`...)
	dst = strconv.AppendInt(dst, destid, 10)
	dst = append(dst, `,"code":`...)
	dst = AppendString(dst, code)
	dst = append(dst, `,"error":`...)
	dst = AppendString(dst, text)
	return append(dst, '}')
}

// AppendAck appends a setup acknowledgement (type 4).
func AppendAck(dst []byte, id, policy int64) []byte {
	dst = append(dst, `{"type":4,"id":`...)
	dst = strconv.AppendInt(dst, id, 10)
	dst = append(dst, `,"privPolyId":`...)
	dst = strconv.AppendInt(dst, policy, 10)
	return append(dst, '}')
}

// AppendRequest appends a request (type 0).
func AppendRequest(dst []byte, srcid, policy int64, payload string) []byte {
	dst = append(dst, `{"type":0,"srcid":`...)
	dst = strconv.AppendInt(dst, srcid, 10)
	dst = append(dst, `,"privPoliId":`...)
	dst = strconv.AppendInt(dst, policy, 10)
	return appendPayload(dst, payload)
}

// AppendReply appends a reply (type 2) from server srcid to client destid.
func AppendReply(dst []byte, srcid, destid int64, payload string) []byte {
	dst = append(dst, `{"type":2,"srcid":`...)
	dst = strconv.AppendInt(dst, srcid, 10)
	dst = append(dst, `,"destid":`...)
	dst = strconv.AppendInt(dst, destid, 10)
	return appendPayload(dst, payload)
}

// AppendSetup appends a setup (type 1); token is left out when empty.
func AppendSetup(dst []byte, id, policy int64, port int, token string) []byte {
	dst = append(dst, `{"type":1,"id":`...)
	dst = strconv.AppendInt(dst, id, 10)
	dst = append(dst, `,"privPolyId":`...)
	dst = strconv.AppendInt(dst, policy, 10)
	dst = append(dst, `,"listenport":`...)
	dst = strconv.AppendInt(dst, int64(port), 10)
	if token != "" {
		dst = append(dst, `,"token":`...)
		dst = AppendString(dst, token)
	}
	return append(dst, '}')
}

func appendPayload(dst []byte, payload string) []byte {
	dst = append(dst, `,"payloadsize":`...)
	dst = strconv.AppendInt(dst, int64(EncodedLen(payload)), 10)
	dst = append(dst, `,"payload":`...)
	dst = AppendString(dst, payload)
	return append(dst, '}')
}

// EncodedLen is the payloadsize of payload once AppendString has written it
// and a peer decoded it: its UTF-8 length, with each invalid byte counted as
// the three bytes of U+FFFD that replace it.
func EncodedLen(payload string) int {
	if utf8.ValidString(payload) {
		return len(payload)
	}
	n := 0
	for i := 0; i < len(payload); {
		r, size := utf8.DecodeRuneInString(payload[i:])
		if r == utf8.RuneError && size == 1 {
			n += 3
		} else {
			n += size
		}
		i += size
	}
	return n
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD, as
// encoding/json does; '<', '>' and '&' are left as they are.
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
