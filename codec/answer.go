package codec

import (
	"errors"
	"strconv"
)

// ErrorAnswer maps an error of this package to the protocol error a peer is
// answered with: ErrTooLarge is CodeTooLarge (the text names max, where
// max <= 0 means DefaultMaxFrame); a broken text stream (ErrFraming) and
// every decoding or validation error are CodeBadRequest, with a text that
// tells the sender what to fix. Other errors are CodeBadRequest with their
// own text. Callers that know more (a setup, say) may say it better.
func ErrorAnswer(err error, max int) (code, text string) {
	switch {
	case errors.Is(err, ErrTooLarge):
		if max <= 0 {
			max = DefaultMaxFrame
		}
		return CodeTooLarge, "message larger than " + strconv.Itoa(max) + " bytes"
	case errors.Is(err, ErrFraming):
		return CodeBadRequest, "text stream is not a sequence of JSON objects"
	case errors.Is(err, ErrType):
		return CodeBadRequest, "not a request: type must be 0"
	case errors.Is(err, ErrSyntax):
		return CodeBadRequest, "malformed JSON"
	case errors.Is(err, ErrNotObject):
		return CodeBadRequest, "message is not a JSON object"
	case errors.Is(err, ErrFieldType):
		return CodeBadRequest, "srcid, privPoliId and payloadsize must be integers and payload a string"
	case errors.Is(err, ErrMissingField):
		return CodeBadRequest, "a request needs srcid, privPoliId, payloadsize and payload"
	case errors.Is(err, ErrPayloadSize):
		return CodeBadRequest, "payloadsize does not match the payload's UTF-8 length"
	case errors.Is(err, ErrUTF8):
		return CodeBadRequest, "payload is not valid UTF-8"
	case errors.Is(err, ErrPolicyConflict):
		return CodeBadRequest, "privPoliId and privPolyId disagree"
	case errors.Is(err, ErrDuplicateKey):
		return CodeBadRequest, "a field appears twice (or in other letter case)"
	}
	return CodeBadRequest, err.Error()
}
