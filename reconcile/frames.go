package reconcile

import "errors"

// Exported encoders and decoders of the round and apply frames, for peers in other
// packages (adapters/http). The frames are those of docs/protocol.md, byte for byte the
// ones Local counts; a round's fields are sized by the session's open request, which is
// why each function takes it.

// EncodeRoundRequest returns the frame for m in the session opened by open.
func EncodeRoundRequest(open *OpenRequest, m *RoundRequest) []byte {
	return encodeRound(open.params(), m)
}

// DecodeRoundRequest parses a frame written by EncodeRoundRequest.
func DecodeRoundRequest(open *OpenRequest, b []byte) (*RoundRequest, error) {
	return decodeRound(open.params(), b)
}

// EncodeRoundResponse returns the frame for m, which answers req.
func EncodeRoundResponse(open *OpenRequest, req *RoundRequest, m *RoundResponse) []byte {
	return encodeRoundResponse(open.params(), req, m)
}

// DecodeRoundResponse parses a frame written by EncodeRoundResponse for req.
func DecodeRoundResponse(open *OpenRequest, req *RoundRequest, b []byte) (*RoundResponse, error) {
	return decodeRoundResponse(open.params(), req, b)
}

// EncodeApplyRequest returns the frame for m and how many of its bytes are row values.
func EncodeApplyRequest(open *OpenRequest, m *ApplyRequest) (frame []byte, valueBytes int64) {
	return encodeApply(open.params(), m)
}

// DecodeApplyRequest parses a frame written by EncodeApplyRequest.
func DecodeApplyRequest(b []byte) (*ApplyRequest, error) { return decodeApply(b) }

// EncodeApplyResponse returns the frame for m.
func EncodeApplyResponse(m *ApplyResponse) []byte { return encodeApplyResponse(m) }

// DecodeApplyResponse parses a frame written by EncodeApplyResponse that answers want
// changes.
func DecodeApplyResponse(b []byte, want int) (*ApplyResponse, error) {
	return decodeApplyResponse(b, want)
}

// ErrSessionLost is wrapped by a Peer's errors after which no request of the session can
// succeed (a remote server lost the session, refused the credentials, speaks another
// protocol): the apply phase stops at once instead of halving batches and quarantining
// rows that were never the problem.
var ErrSessionLost = errors.New("the peer lost the session")

// ErrUnreachable is wrapped by a Peer's errors when no attempt of a request got an
// answer (the server is down, or the network between): as with ErrSessionLost, the apply
// phase stops at once rather than halving batches down to single rows and blaming them.
var ErrUnreachable = errors.New("the peer cannot be reached")

// ErrEndpointFailed is wrapped by an Endpoint's errors after which none of its calls can
// succeed (a store whose directory was removed while it was open, a disk that refused to
// create its files): as with ErrSessionLost, the apply phase stops at once rather than
// halving batches and blaming rows. Unlike ErrUnreachable the failed batch was not
// committed: the endpoint said so itself.
var ErrEndpointFailed = errors.New("the endpoint can no longer be used")
