// Package codec owns Prism's wire format: the two framings (binary: a 4-byte
// big-endian length before each JSON object; text: JSON objects back to back),
// the decoding of the five message types, request validation, and the encoding
// of the messages Prism writes itself.
//
// It does no I/O. Decoding never builds a map and never re-encodes: a Message
// holds the handful of fields routing needs, and strings in it alias the input
// bytes, so a request that is only forwarded is forwarded as received.
//
//	var sp codec.Splitter // per connection
//	var d codec.Decoder   // per goroutine
//	body, n, err := sp.Next(buf)   // codec.ErrIncomplete: wait for more bytes
//	var m codec.Message
//	err = d.Decode(body, &m)
//	err = m.ValidateRequest()
//
// Encoders append to a caller's buffer (a bytebufferpool.ByteBuffer's B, say):
//
//	start := len(dst)
//	dst = codec.BeginFrame(dst, codec.Binary)
//	dst = codec.AppendError(dst, 42, codec.CodeNoBackend, "no backend serves policy 9")
//	dst = codec.EndFrame(dst, codec.Binary, start)
//
// Decoder and Splitter values are not safe for concurrent use; the package
// functions are.
package codec
