package remote

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/reconcile-dev/reconcile/adapters/memory"
	"github.com/reconcile-dev/reconcile/merkle"
	"github.com/reconcile-dev/reconcile/reconcile"
)

// FuzzRequestMeta feeds the header and path parsers arbitrary strings: no panic, and what
// they accept is well formed.
func FuzzRequestMeta(f *testing.F) {
	f.Add("2", "1", "0123456789abcdef0123456789abcdef", "00112233445566778899aabbccddeeff", "Bearer tok")
	f.Add("", "0", "x", "zz", "bearer")
	f.Add("99999999999", "18446744073709551616", "0123456789ABCDEF0123456789ABCDEF", "0011", "Basic x")
	f.Fuzz(func(t *testing.T, proto, seq, id, key, auth string) {
		if p, err := parseProtocol(proto); err == nil && strings.TrimLeft(proto, "0") != strings.TrimLeft(strconv.FormatUint(uint64(p), 10), "0") {
			t.Fatalf("protocol %q read as %d", proto, p)
		}
		if n, err := parseSeq(seq); err == nil && (n < 1 || n > maxSeq) {
			t.Fatalf("seq %q read as %d", seq, n)
		}
		if v, err := parseSessionID(id); err == nil && (len(v) != 32 || v != id) {
			t.Fatalf("session id %q accepted as %q", id, v)
		}
		if v, err := parseOpenKey(key); err == nil && key != "" && (len(v) < 16 || len(v) > 64) {
			t.Fatalf("open key %q accepted as %q", key, v)
		}
		if tok, ok := bearer(auth); ok && len(tok) > len(auth) {
			t.Fatalf("bearer %q gave %q", auth, tok)
		}
		_ = tokenMatches(auth, "tok")
	})
}

// FuzzServerFrames posts arbitrary bodies as an open, a round and an apply of a live
// session: the server answers every one with a status (never a panic), and malformed
// frames with 400.
func FuzzServerFrames(f *testing.F) {
	store := memory.New(merkle.VersionOrder)
	for i := range 50 {
		store.Put(reconcile.Row{Key: []byte{byte(i)}, Version: uint64(i + 1), Value: []byte{byte(i), 1}})
	}
	srv := NewServer(store, ServerOptions{MaxBody: 1 << 20})
	open := &reconcile.OpenRequest{Protocol: reconcile.ProtocolVersion, Ordering: merkle.VersionOrder,
		Schema: reconcile.SchemaKV, Now: testNow}
	openFrame := reconcile.EncodeOpenRequest(open)
	post := func(path string, hdr map[string]string, body []byte) *httptest.ResponseRecorder {
		req := httptest.NewRequest("POST", path, bytes.NewReader(body))
		req.Header.Set(HeaderProtocol, strconv.Itoa(reconcile.ProtocolVersion))
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, req)
		return w
	}
	w := post(pathSessions, nil, openFrame)
	if w.Code != 200 {
		f.Fatalf("open: %d %s", w.Code, w.Body)
	}
	id := w.Header().Get(HeaderSession)
	seq := 0

	f.Add(openFrame)
	f.Add(reconcile.EncodeRoundRequest(open, &reconcile.RoundRequest{FPBits: 32, PrefixBits: 32, FetchBits: 32, Ops: []reconcile.Op{{Kind: reconcile.OpList, Limit: 10}}}))
	apply, _ := reconcile.EncodeApplyRequest(open, &reconcile.ApplyRequest{Now: testNow, Changes: []reconcile.Change{
		{Key: []byte("new"), Put: &reconcile.Row{Key: []byte("new"), Version: 9, Value: []byte("v")}}}})
	f.Add(apply)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, body []byte) {
		ok := func(what string, w *httptest.ResponseRecorder) {
			switch w.Code {
			case http.StatusOK, http.StatusBadRequest, http.StatusNotFound, http.StatusConflict, http.StatusRequestEntityTooLarge,
				http.StatusUnprocessableEntity, http.StatusInternalServerError, http.StatusServiceUnavailable:
			default:
				t.Fatalf("%s: status %d %s", what, w.Code, w.Body)
			}
			if w.Code != http.StatusOK && w.Body.Len() == 0 {
				t.Fatalf("%s: status %d without a message", what, w.Code)
			}
		}
		w := post(pathSessions, nil, body)
		ok("open", w)
		if w.Code == http.StatusOK {
			// Close the session this body opened.
			req := httptest.NewRequest("DELETE", pathSessions+"/"+w.Header().Get(HeaderSession), nil)
			req.Header.Set(HeaderProtocol, strconv.Itoa(reconcile.ProtocolVersion))
			srv.ServeHTTP(httptest.NewRecorder(), req)
		}
		for _, kind := range []string{"round", "apply"} {
			seq++
			ok(kind, post(pathSessions+"/"+id+"/"+kind, map[string]string{HeaderSeq: strconv.Itoa(seq)}, body))
		}
	})
}

// FuzzRelayAnswer: any bytes a client posts as a relay answer decode or fail, never
// panic, and an answer's encoding decodes to itself.
func FuzzRelayAnswer(f *testing.F) {
	f.Add(encodeRelayAnswer([]byte("frame"), merkle.ReadStats{Entries: 3, Nodes: 9}, nil))
	f.Add(encodeRelayAnswer(nil, merkle.ReadStats{}, errors.Join(errors.New("x"), reconcile.ErrReadOnly)))
	f.Add(encodeRelayAnswer(nil, merkle.ReadStats{}, &reconcile.RowRefusedError{Index: 300, Err: errors.New("too large")}))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := decodeRelayAnswer(b)
		if err != nil {
			return
		}
		if a.err != nil {
			// An error answer keeps its kinds and its refused row through a round trip.
			again, err := decodeRelayAnswer(encodeRelayAnswer(nil, merkle.ReadStats{}, a.err))
			if err != nil || again.err == nil {
				t.Fatalf("error answer lost in a round trip: %v", err)
			}
			for _, kind := range []error{reconcile.ErrReadOnly, reconcile.ErrSessionLost, reconcile.ErrStopped} {
				if errors.Is(a.err, kind) != errors.Is(again.err, kind) {
					t.Fatalf("error answer %v: %v changed in a round trip", a.err, kind)
				}
			}
			var r1, r2 *reconcile.RowRefusedError
			if errors.As(a.err, &r1) != errors.As(again.err, &r2) || (r1 != nil && r1.Index != r2.Index) {
				t.Fatalf("error answer %v: refused row changed in a round trip", a.err)
			}
			return
		}
		again, err := decodeRelayAnswer(encodeRelayAnswer(a.frame, a.stats, nil))
		if err != nil || again.stats != a.stats || string(again.frame) != string(a.frame) {
			t.Fatalf("relay answer changed in a round trip: %v", err)
		}
	})
}
