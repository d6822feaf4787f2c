// Package remote serves a reconcile.Endpoint over HTTP(S) (Server) and answers sessions
// against such a server (Client, a reconcile.Peer), so that two machines compare
// fingerprints instead of rows. The package lives in adapters/http but is named remote:
// a package named http would shadow net/http in every file that uses both.
//
// Request and response bodies are the protocol's binary frames (docs/protocol.md); the
// HTTP layer adds a path per call, a few headers, and status codes. docs/http.md is the
// reference.
package remote

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Paths. {id} is a session id: 32 lowercase hex digits.
const (
	pathRoot     = "/v1/root"
	pathSessions = "/v1/sessions"
	pathDump     = "/v1/dump"
	pathLoad     = "/v1/load"
)

// Headers.
const (
	// HeaderProtocol carries reconcile.ProtocolVersion on every request and response.
	HeaderProtocol = "Reconcile-Protocol"
	// HeaderSession carries the session id the server assigned, on an open's response.
	HeaderSession = "Reconcile-Session"
	// HeaderOpenKey is a random key the client picks per open; a retried open with the
	// same key and body gets the same session back instead of a second one.
	HeaderOpenKey = "Reconcile-Open-Key"
	// HeaderSeq numbers the rounds and applies of one session from 1, increasing; a
	// request repeating the last number (a retry) gets the stored answer, so nothing is
	// applied twice.
	HeaderSeq = "Reconcile-Seq"
	// HeaderEntriesRead and HeaderNodesRead report the server snapshot's reads so far.
	HeaderEntriesRead = "Reconcile-Entries-Read"
	HeaderNodesRead   = "Reconcile-Nodes-Read"
	// HeaderKeyFormat describes the served endpoint's keys (ServerOptions.KeyFormat), on
	// every response of a server that has one, so clients can name rows in reports.
	HeaderKeyFormat = "Reconcile-Key-Format"
	// HeaderVersionFormat says how the served endpoint's versions read
	// (ServerOptions.VersionFormat: reconcile.VersionUnixNano for timestamps), on every
	// response of a server that has one, so clients show them as times in reports.
	HeaderVersionFormat = "Reconcile-Version-Format"
	// HeaderReadOnly is "1" on every response of a server that refuses writes
	// (ServerOptions.ReadOnly), so a mirror sync into it stops before its descent.
	HeaderReadOnly = "Reconcile-Read-Only"
	// HeaderRefusedRow, on a 422 answer to an apply, is the index in the batch of the
	// change the endpoint refuses for what it is (reconcile.RowRefusedError): the client
	// quarantines that row and goes on with the rest.
	HeaderRefusedRow = "Reconcile-Refused-Row"
)

const frameType = "application/x-reconcile-frame"

// maxSeq bounds a sequence number (far more calls than any session makes).
const maxSeq = 1 << 40

// parseProtocol reads a protocol header; "" is an error.
func parseProtocol(v string) (uint32, error) {
	if v == "" {
		return 0, fmt.Errorf("missing %s header", HeaderProtocol)
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%s header %q is not a number", HeaderProtocol, clip(v))
	}
	return uint32(n), nil
}

// parseSeq reads a sequence number header: 1 ≤ seq ≤ maxSeq.
func parseSeq(v string) (uint64, error) {
	if v == "" {
		return 0, fmt.Errorf("missing %s header", HeaderSeq)
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n < 1 || n > maxSeq {
		return 0, fmt.Errorf("%s header %q is not a number from 1 to %d", HeaderSeq, clip(v), uint64(maxSeq))
	}
	return n, nil
}

// parseSessionID checks a session id: 32 lowercase hex digits.
func parseSessionID(v string) (string, error) {
	if len(v) != 32 || strings.ToLower(v) != v {
		return "", fmt.Errorf("session id %q is not 32 lowercase hex digits", clip(v))
	}
	if _, err := hex.DecodeString(v); err != nil {
		return "", fmt.Errorf("session id %q is not 32 lowercase hex digits", clip(v))
	}
	return v, nil
}

// parseOpenKey checks an open key: empty (none) or 16 to 64 hex digits.
func parseOpenKey(v string) (string, error) {
	if v == "" {
		return "", nil
	}
	if len(v) < 16 || len(v) > 64 {
		return "", fmt.Errorf("%s header must be 16 to 64 hex digits", HeaderOpenKey)
	}
	if _, err := hex.DecodeString(v); err != nil || len(v)%2 != 0 {
		return "", fmt.Errorf("%s header must be 16 to 64 hex digits", HeaderOpenKey)
	}
	return strings.ToLower(v), nil
}

// bearer extracts the token of an "Authorization: Bearer T" header; ok is false when the
// header is missing or of another kind.
func bearer(h string) (token string, ok bool) {
	const p = "bearer "
	if len(h) < len(p) || !strings.EqualFold(h[:len(p)], p) {
		return "", false
	}
	return strings.TrimSpace(h[len(p):]), true
}

// tokenMatches compares a presented token with the configured one in constant time. Both
// are hashed first, so neither the content nor the length of the token leaks through
// timing.
func tokenMatches(got, want string) bool {
	g, w := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}

// clip shortens a client-supplied string for an error message.
func clip(s string) string { return clipTo(s, 40) }

// clipTo cuts s to at most n bytes, at a character's start, marking the cut.
func clipTo(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// errProtocol is wrapped by the client's error when the server speaks another protocol.
var errProtocol = errors.New("protocol version mismatch")
