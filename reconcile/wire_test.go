package reconcile

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/reconcile-dev/reconcile/merkle"
)

var testParams = frameParams{ordering: merkle.VersionOrder}

func sampleRound() *RoundRequest {
	pos := func(v uint64, k string) []byte { return merkle.VersionOrder.Position([]byte(k), v) }
	return &RoundRequest{FPBits: 20, PrefixBits: 32, FetchBits: 16, Ops: []Op{
		{Kind: OpCompare, Lo: nil, Hi: pos(90, "z"), Bounds: [][]byte{pos(10, "a"), pos(20, "b")}, FPs: bytes.Repeat([]byte{0xAB, 0xCD, 0xE0}, 3), ListMax: 16},
		{Kind: OpList, Lo: pos(1, ""), Hi: pos(2, ""), Levels: Levels{Lo: 2, Hi: 2, Bounds: 1}, Limit: 100},
		{Kind: OpFetch, Lo: pos(3, "q"), Hi: pos(4, "q"), Levels: Levels{Lo: 1, Hi: 4, Bounds: 1}, Prefixes: []byte{1, 2, 3, 4, 5, 6, 7, 8}},
	}}
}

func sampleAnswer() *RoundResponse {
	e := merkle.Entry{Key: []byte("k"), Version: 5, ExpiresAt: -3, Flags: 1, ValueHash: merkle.ValueHash([]byte("v"))}
	return &RoundResponse{Answers: []Answer{
		{Mismatch: []bool{true, false, true}, Counts: []uint64{3, 1000}, Listed: [][]byte{bytes.Repeat([]byte{9}, 12), nil}},
		{Entries: []merkle.Entry{e}, More: true},
		{Entries: []merkle.Entry{}},
	}}
}

func TestRoundTrip(t *testing.T) {
	req := sampleRound()
	got, err := decodeRound(testParams, encodeRound(testParams, req))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, req) {
		t.Fatalf("round request changed in transit:\n got %+v\nwant %+v", got, req)
	}
	ans := sampleAnswer()
	gotA, err := decodeRoundResponse(testParams, req, encodeRoundResponse(testParams, req, ans))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gotA, ans) {
		t.Fatalf("round answer changed in transit:\n got %+v\nwant %+v", gotA, ans)
	}
	ap := &ApplyRequest{Now: 42, Changes: []Change{
		{Key: []byte("a"), Put: &Row{Key: []byte("a"), Version: 9, Value: []byte("hello"), ExpiresAt: 77}},
		{Key: []byte("b"), Expect: &merkle.Entry{Key: []byte("b"), Version: 3}},
		{Key: []byte{}, Put: &Row{Key: []byte{}, Value: []byte{}}},
	}}
	frame, values := encodeApply(testParams, ap)
	if values != 5 {
		t.Fatalf("value bytes %d, want 5", values)
	}
	gotAp, err := decodeApply(frame)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gotAp, ap) {
		t.Fatalf("apply changed in transit:\n got %+v\nwant %+v", gotAp, ap)
	}
}

func TestDecodeRejectsTruncated(t *testing.T) {
	frame := encodeRound(testParams, sampleRound())
	for n := 0; n < len(frame); n++ {
		if _, err := decodeRound(testParams, frame[:n]); err == nil {
			t.Fatalf("truncated frame of %d/%d bytes decoded without error", n, len(frame))
		}
	}
}

func FuzzDecodeRound(f *testing.F) {
	f.Add(encodeRound(testParams, sampleRound()))
	f.Add([]byte{tagRound, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := decodeRound(testParams, b)
		if err != nil {
			return
		}
		again, err := decodeRound(testParams, encodeRound(testParams, req))
		if err != nil || !reflect.DeepEqual(again, req) {
			t.Fatalf("re-encoding a decoded frame changed it: %v", err)
		}
	})
}

func FuzzDecodeRoundResponse(f *testing.F) {
	req := sampleRound()
	f.Add(encodeRoundResponse(testParams, req, sampleAnswer()))
	f.Fuzz(func(t *testing.T, b []byte) {
		resp, err := decodeRoundResponse(testParams, req, b)
		if err != nil {
			return
		}
		if len(resp.Answers) != len(req.Ops) {
			t.Fatalf("%d answers for %d ops", len(resp.Answers), len(req.Ops))
		}
	})
}

func FuzzDecodeApply(f *testing.F) {
	frame, _ := encodeApply(testParams, &ApplyRequest{Now: 1, Changes: []Change{{Key: []byte("k"), Put: &Row{Key: []byte("k"), Value: []byte("v")}}}})
	f.Add(frame)
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := decodeApply(b)
		if err != nil {
			return
		}
		again, _ := encodeApply(testParams, req)
		if _, err := decodeApply(again); err != nil {
			t.Fatalf("re-encoding a decoded frame broke it: %v", err)
		}
	})
}

func sampleOpen() *OpenRequest {
	return &OpenRequest{Protocol: 1, Ordering: merkle.VersionOrder, Schema: "kv",
		Root: merkle.Digest{Count: 3}, First: sampleRound()}
}

func TestOpenRoundTrip(t *testing.T) {
	req := sampleOpen()
	got, err := DecodeOpenRequest(EncodeOpenRequest(req))
	if err != nil || !reflect.DeepEqual(got, req) {
		t.Fatalf("open request changed in transit (%v):\n got %+v\nwant %+v", err, got, req)
	}
	resp := &OpenResponse{Protocol: 1, Ordering: merkle.VersionOrder, Schema: "kv", Root: merkle.Digest{Count: 9}, CutLevels: 4, First: sampleAnswer()}
	gotR, err := DecodeOpenResponse(req, EncodeOpenResponse(req, resp))
	if err != nil || !reflect.DeepEqual(gotR, resp) {
		t.Fatalf("open response changed in transit (%v):\n got %+v\nwant %+v", err, gotR, resp)
	}
}

func FuzzDecodeOpen(f *testing.F) {
	req := sampleOpen()
	f.Add(EncodeOpenRequest(req))
	f.Add(EncodeOpenResponse(req, &OpenResponse{Protocol: 1, Ordering: merkle.KeyOrder, Schema: "kv", First: sampleAnswer()}))
	f.Fuzz(func(t *testing.T, b []byte) {
		DecodeOpenRequest(b)
		DecodeOpenResponse(req, b)
	})
}

func TestShortestAbove(t *testing.T) {
	for _, tc := range []struct{ b, p, want string }{
		{"abc", "", "a"},
		{"abc", "a", "ab"},
		{"abc", "abb", "abc"},
		{"b", "azzz", "b"},
		{"bcd", "a", "b"},
	} {
		if got := shortestAbove([]byte(tc.b), []byte(tc.p)); string(got) != tc.want {
			t.Errorf("shortestAbove(%q, %q) = %q, want %q", tc.b, tc.p, got, tc.want)
		}
	}
	if got := shortestAbove([]byte("abc"), nil); string(got) != "abc" {
		t.Errorf("shortestAbove with no predecessor = %q, want the whole bound", got)
	}
}

func TestSeparator(t *testing.T) {
	for _, tc := range []struct {
		b, p  string
		nilP  bool
		known bool
		want  string
	}{
		{b: "abc", nilP: true, known: true, want: "a"},  // no cut entry before b
		{b: "abc", p: "abb", known: true, want: "abc"},  // b itself is the shortest
		{b: "abc", p: "aaz", known: true, want: "ab"},   // above the previous cut entry
		{b: "abc", p: "aaz", known: false, want: "abc"}, // predecessor unknown: whole
		{b: "\x00\x01xyz", p: "\x00\x00zz", known: true, want: "\x00\x01"},
	} {
		var p []byte
		if !tc.nilP {
			p = []byte(tc.p)
		}
		if got := separator(merkle.KeyOrder, []byte(tc.b), p, tc.known); string(got) != tc.want {
			t.Errorf("separator(%q, %q, %v) = %q, want %q", tc.b, tc.p, tc.known, got, tc.want)
		}
	}
}

// In version order a separator is the cut entry's version alone where the entry before
// has a lower version, and otherwise adds the shortest prefix of its key above that
// entry's key.
func TestSeparatorVersionOrder(t *testing.T) {
	pos := func(v uint64, k string) []byte { return merkle.VersionOrder.Position([]byte(k), v) }
	for _, tc := range []struct {
		b, p []byte
		want []byte
	}{
		{b: pos(70, "key/9"), p: nil, want: pos(70, "")},
		{b: pos(70, "key/9"), p: pos(52, "zzz"), want: pos(70, "")},
		{b: pos(70, "key/9"), p: pos(70, "key/1"), want: pos(70, "key/9")},
		{b: pos(70, "key/9x"), p: pos(70, "key/1"), want: pos(70, "key/9")},
		{b: pos(70, "b"), p: pos(70, "a"), want: pos(70, "b")},
		{b: pos(70, "bcd"), p: pos(70, ""), want: pos(70, "b")},           // p is a bare version
		{b: pos(1<<40, "k"), p: pos(1<<40-1, "k"), want: pos(1<<40, "")},  // a version above p's
		{b: pos(70, "key/9"), p: pos(70, "key/1")[:5], want: pos(70, "")}, // a short p below the version
	} {
		got := separator(merkle.VersionOrder, tc.b, tc.p, true)
		if !bytes.Equal(got, tc.want) {
			t.Errorf("separator(%x, %x) = %x, want %x", tc.b, tc.p, got, tc.want)
		}
		if bytes.Compare(got, tc.b) > 0 || (tc.p != nil && bytes.Compare(got, tc.p) <= 0) {
			t.Errorf("separator(%x, %x) = %x: not in (p, b]", tc.b, tc.p, got)
		}
	}
}

// Points of a version-ordered round go as version differences: a round trip gives back
// every point, padded to 8 bytes where shorter, and the bounds of a typical split cost a
// byte or two each.
func TestVersionPoints(t *testing.T) {
	pos := func(v uint64, k string) []byte { return merkle.VersionOrder.Position([]byte(k), v) }
	bounds := [][]byte{pos(1000, ""), pos(1040, ""), pos(1099, ""), pos(1099, "key/12"), pos(1099, "key/19"), pos(5000, "x"), pos(1<<63, ""), pos(1<<63+1, "y"), pos(^uint64(0), "")}
	req := &RoundRequest{FPBits: 24, PrefixBits: 24, FetchBits: 32, Ops: []Op{
		{Kind: OpFetch, Lo: pos(0, "first"), Hi: pos(0, "then"), Prefixes: []byte{9, 9, 9, 9}}, // version 0 first, with a key
		{Kind: OpCompare, Lo: pos(999, ""), Hi: nil, Bounds: bounds, FPs: make([]byte, 3*(len(bounds)+1)), ListMax: 32},
		{Kind: OpFetch, Lo: []byte{0, 0, 0, 0, 0, 0, 3}, Hi: pos(1<<40, "q"), Prefixes: []byte{1, 2, 3, 4}},
		{Kind: OpList, Lo: pos(3, ""), Hi: pos(2, "")[:8], Levels: Levels{Lo: 2, Hi: 1, Bounds: 1}, Limit: 7},
	}}
	frame := encodeRound(testParams, req)
	got, err := decodeRound(testParams, frame)
	if err != nil {
		t.Fatal(err)
	}
	req.Ops[2].Lo = pos(3<<8, "") // sent padded: the same bound
	if !reflect.DeepEqual(got, req) {
		t.Fatalf("round changed in transit:\n got %+v\nwant %+v", got, req)
	}
	// The bounds' bytes: the frame less the same op without bounds (an open hi, one byte).
	split := func(bounds [][]byte) int {
		op := Op{Kind: OpCompare, Lo: pos(1000, ""), FPs: make([]byte, 3*(len(bounds)+1)), ListMax: 32, Bounds: bounds}
		r := &RoundRequest{FPBits: 24, PrefixBits: 24, FetchBits: 24, Ops: []Op{op}}
		got, err := decodeRound(testParams, encodeRound(testParams, r))
		if err != nil || !reflect.DeepEqual(got, r) {
			t.Fatalf("bounds changed in transit: %v", err)
		}
		op.Bounds, op.FPs = nil, make([]byte, 3)
		return len(encodeRound(testParams, r)) - len(encodeRound(testParams, &RoundRequest{FPBits: 24, PrefixBits: 24, FetchBits: 24, Ops: []Op{op}})) - 3*len(bounds)
	}
	var small, bulk [][]byte
	for i := 0; i < 8; i++ {
		small = append(small, pos(uint64(1030+45*i), ""))
		bulk = append(bulk, pos(1200, fmt.Sprintf("user/3%d", i+1)))
	}
	if n := split(small); n != 8 {
		t.Errorf("8 bounds 45 versions apart took %d bytes, want 8", n)
	}
	// Inside one version (a bulk load) a bound that changes its key's last byte costs two
	// (the first one: version, key length and the key).
	if n := split(bulk); n != 11+7*2 {
		t.Errorf("8 bounds inside one version took %d bytes, want %d", n, 11+7*2)
	}
}

// Random points of every shape (versions at 0, near each other, far apart and at the top;
// keys empty, sharing prefixes, longer than 7 bytes) survive a version-ordered round and
// an answer's listed entries, in both orderings.
func TestPointsRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	versions := []uint64{0, 1, 2, 1000, 1 << 40, 1<<62 - 1, 1 << 62, 1<<63 + 5, ^uint64(0)}
	keys := []string{"", "a", "ab", "abc", "user/1", "user/12", "user/123456789", "user/2", "\x00", "\xff\xff"}
	point := func() []byte {
		v := versions[rng.IntN(len(versions))]
		if rng.IntN(2) == 0 {
			v += uint64(rng.IntN(100))
		}
		return merkle.VersionOrder.Position([]byte(keys[rng.IntN(len(keys))]), v)
	}
	for _, o := range []merkle.Ordering{merkle.VersionOrder, merkle.KeyOrder} {
		params := frameParams{ordering: o}
		for i := 0; i < 2000; i++ {
			req := &RoundRequest{FPBits: uint8(8 + rng.IntN(57)), PrefixBits: uint8(8 + rng.IntN(57)), FetchBits: uint8(8 + rng.IntN(57))}
			var ans RoundResponse
			for j := rng.IntN(4); j >= 0; j-- {
				// Points of one level only increase: lo, the bounds and hi from a sorted
				// set of distinct points.
				ps := [][]byte{point(), point(), point(), point(), point()}
				slices.SortFunc(ps, bytes.Compare)
				uniq := ps[:1]
				for _, p := range ps[1:] {
					if !bytes.Equal(p, uniq[len(uniq)-1]) {
						uniq = append(uniq, p)
					}
				}
				if len(uniq) < 2 {
					continue
				}
				op := Op{Kind: OpList, Lo: uniq[0], Hi: uniq[len(uniq)-1], Limit: 5}
				if rng.IntN(3) == 0 {
					op.Lo = nil
				}
				if rng.IntN(2) == 0 {
					op.Kind, op.ListMax, op.Limit = OpCompare, 32, 0
					if rng.IntN(2) == 0 {
						op.Levels = Levels{Lo: 2, Hi: 2, Bounds: 3}
					}
					op.Bounds = uniq[1 : len(uniq)-1]
					op.FPs = make([]byte, (len(op.Bounds)+1)*shortBytes(int(req.FPBits)))
				}
				req.Ops = append(req.Ops, op)
				a := Answer{}
				if op.Kind == OpList {
					for k := rng.IntN(3); k > 0; k-- {
						key, v, _ := merkle.VersionOrder.Split(point())
						if o == merkle.KeyOrder {
							v = 0 // key order: Version is 0 in every entry
						}
						a.Entries = append(a.Entries, merkle.Entry{Key: key, Version: v, ValueHash: merkle.ValueHash(key)})
					}
					if a.Entries == nil {
						a.Entries = []merkle.Entry{}
					}
				} else {
					a.Mismatch = make([]bool, len(op.Bounds)+1)
				}
				ans.Answers = append(ans.Answers, a)
			}
			got, err := decodeRound(params, encodeRound(params, req))
			if err != nil || !reflect.DeepEqual(got, req) {
				t.Fatalf("%v: round changed in transit (%v):\n got %+v\nwant %+v", o, err, got, req)
			}
			gotA, err := decodeRoundResponse(params, req, encodeRoundResponse(params, req, &ans))
			if err != nil {
				t.Fatalf("%v: answer: %v", o, err)
			}
			for k := range ans.Answers {
				if !reflect.DeepEqual(gotA.Answers[k].Entries, ans.Answers[k].Entries) {
					t.Fatalf("%v: entries changed in transit:\n got %+v\nwant %+v", o, gotA.Answers[k].Entries, ans.Answers[k].Entries)
				}
			}
		}
	}
}

func sampleRows() (*RowsRequest, *RowsResponse) {
	req := &RowsRequest{Keys: [][]byte{[]byte("user/1"), []byte("user/2"), []byte("user/20")}, MaxBytes: 1 << 20}
	resp := &RowsResponse{Rows: []Row{
		{Key: []byte("user/1"), Version: 300, Value: []byte("alice"), ExpiresAt: 0},
		{},
		{Key: []byte("user/20"), Version: 7, Value: []byte{}, ExpiresAt: 1_700_000_000_000_000_000},
	}}
	return req, resp
}

func reencodeRows(req *RowsRequest, m *RowsResponse) []byte {
	frame, _ := EncodeRowsResponse(req, m)
	return frame
}

// TestRowsTooLarge: a row longer than MaxValue crosses as its length, and a frame that
// says a row is too large to send when its length would fit is malformed.
func TestRowsTooLarge(t *testing.T) {
	req := &RowsRequest{Keys: [][]byte{[]byte("a"), []byte("b")}}
	huge := make([]byte, MaxValue+1)
	frame, values := EncodeRowsResponse(req, &RowsResponse{Rows: []Row{{Key: []byte("a"), Version: 3, Value: huge}, {Key: []byte("b"), Version: 4, Value: []byte("x")}}})
	if len(frame) > 100 || values != 1 {
		t.Fatalf("a too-large row made a frame of %d bytes, %d of them values", len(frame), values)
	}
	got, err := DecodeRowsResponse(req, frame)
	if err != nil || got.TooLarge[0] != MaxValue+1 || len(got.TooLarge) != 1 || got.Rows[0].Value != nil || string(got.Rows[1].Value) != "x" {
		t.Fatalf("decoded %+v, %v", got, err)
	}
	frame, _ = EncodeRowsResponse(req, &RowsResponse{Rows: []Row{{Key: []byte("a"), Version: 3}}, TooLarge: map[int]int64{0: 10}})
	if _, err := DecodeRowsResponse(req, frame); err == nil || !strings.Contains(err.Error(), "which would fit") {
		t.Fatalf("a too-large flag on a 10-byte row: %v", err)
	}
}

func TestRowsRoundTrip(t *testing.T) {
	req, resp := sampleRows()
	got, err := DecodeRowsRequest(EncodeRowsRequest(req))
	if err != nil || !reflect.DeepEqual(got, req) {
		t.Fatalf("rows request changed in transit (%v): %+v", err, got)
	}
	frame, values := EncodeRowsResponse(req, resp)
	if values != 5 {
		t.Fatalf("value bytes %d, want 5", values)
	}
	gotR, err := DecodeRowsResponse(req, frame)
	if err != nil || !reflect.DeepEqual(gotR, resp) {
		t.Fatalf("rows answer changed in transit (%v):\n got %+v\nwant %+v", err, gotR, resp)
	}
	for n := 0; n < len(frame); n++ {
		if _, err := DecodeRowsResponse(req, frame[:n]); err == nil {
			t.Fatalf("truncated rows answer of %d/%d bytes decoded", n, len(frame))
		}
	}
}

func FuzzDecodeRows(f *testing.F) {
	req, resp := sampleRows()
	f.Add(EncodeRowsRequest(req))
	frame, _ := EncodeRowsResponse(req, resp)
	f.Add(frame)
	resp.Rows[2].Value, resp.TooLarge = nil, map[int]int64{2: MaxValue + 5} // sent without its value
	frame, _ = EncodeRowsResponse(req, resp)
	f.Add(frame)
	f.Fuzz(func(t *testing.T, b []byte) {
		if m, err := DecodeRowsRequest(b); err == nil {
			if again, err := DecodeRowsRequest(EncodeRowsRequest(m)); err != nil || !reflect.DeepEqual(again, m) {
				t.Fatalf("re-encoding a decoded rows request changed it: %v", err)
			}
		}
		if m, err := DecodeRowsResponse(req, b); err == nil {
			if len(m.Rows) > len(req.Keys) || len(m.Rows) == 0 {
				t.Fatalf("%d rows for %d keys", len(m.Rows), len(req.Keys))
			}
			for i, n := range m.TooLarge {
				if n <= MaxValue || m.Rows[i].Key == nil || m.Rows[i].Value != nil {
					t.Fatalf("row %d sent without its value of %d bytes: %+v", i, n, m.Rows[i])
				}
			}
			if again, err := DecodeRowsResponse(req, reencodeRows(req, m)); err != nil || !reflect.DeepEqual(again, m) {
				t.Fatalf("re-encoding a decoded rows answer changed it: %v", err)
			}
		}
	})
}

// TestGoldenFrames pins the bytes of one frame of each kind (testdata/frames.golden, hex;
// docs/protocol.md shows them). A change here is a protocol version change. Run with
// RECONCILE_UPDATE_GOLDEN=1 to rewrite the file after such a change.
func TestGoldenFrames(t *testing.T) {
	open := sampleOpen()
	apply, _ := encodeApply(testParams, &ApplyRequest{Now: 42, Changes: []Change{
		{Key: []byte("a"), Put: &Row{Key: []byte("a"), Version: 9, Value: []byte("hello"), ExpiresAt: 77}},
		{Key: []byte("b"), Expect: &merkle.Entry{Key: []byte("b"), Version: 3}},
	}})
	rowsReq, rowsResp := sampleRows()
	rowsAnswer, _ := EncodeRowsResponse(rowsReq, rowsResp)
	frames := []struct {
		name  string
		frame []byte
	}{
		{"OpenRequest", EncodeOpenRequest(&OpenRequest{Protocol: ProtocolVersion, Ordering: merkle.VersionOrder, Schema: "kv", Now: 1_700_000_000_000_000_000, Root: merkle.Digest{Count: 3}})},
		{"OpenResponse", EncodeOpenResponse(open, &OpenResponse{Protocol: ProtocolVersion, Ordering: merkle.VersionOrder, Schema: "kv", Root: merkle.Digest{Count: 9}, CutLevels: MaxCutLevel})},
		{"RoundRequest", encodeRound(testParams, sampleRound())},
		{"RoundResponse", encodeRoundResponse(testParams, sampleRound(), sampleAnswer())},
		{"ApplyRequest", apply},
		{"ApplyResponse", encodeApplyResponse(&ApplyResponse{Outcomes: []Outcome{Applied, Raced, Applied}})},
		{"RowsRequest", EncodeRowsRequest(rowsReq)},
		{"RowsResponse", rowsAnswer},
	}
	var b strings.Builder
	for _, f := range frames {
		fmt.Fprintf(&b, "%s %x\n", f.name, f.frame)
	}
	path := filepath.Join("testdata", "frames.golden")
	if os.Getenv("RECONCILE_UPDATE_GOLDEN") != "" {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(want) != b.String() {
		t.Fatalf("frame bytes changed (a protocol change: bump ProtocolVersion and regenerate):\n got %s\nwant %s", b.String(), want)
	}
}

// TestDecodeExpansionBounded: a frame whose positions repeat a long predecessor in a few
// bytes each is refused instead of decoded into memory far larger than itself.
func TestDecodeExpansionBounded(t *testing.T) {
	keys := [][]byte{bytes.Repeat([]byte{'k'}, MaxKey)}
	for i := 0; i < 300; i++ {
		keys = append(keys, keys[0]) // shares all of the key before: 2 bytes each
	}
	frame := EncodeRowsRequest(&RowsRequest{Keys: keys})
	if _, err := DecodeRowsRequest(frame); err == nil || !strings.Contains(err.Error(), "times the frame") {
		t.Fatalf("a %d-byte frame naming %d MiB of keys: %v", len(frame), len(keys), err)
	}
	ok := EncodeRowsRequest(&RowsRequest{Keys: keys[:2]}) // two long keys: fine
	if _, err := DecodeRowsRequest(ok); err != nil {
		t.Fatal(err)
	}
}

func TestLimitRows(t *testing.T) {
	rows := []Row{{Value: make([]byte, 10)}, {Value: make([]byte, 10)}, {Value: make([]byte, 10)}}
	for _, tc := range []struct {
		max  int64
		want int
	}{{0, 3}, {5, 1}, {10, 1}, {20, 2}, {25, 2}, {30, 3}, {100, 3}} {
		if got := len(LimitRows(rows, tc.max)); got != tc.want {
			t.Errorf("LimitRows(30 bytes, %d) kept %d rows, want %d", tc.max, got, tc.want)
		}
	}
}

// A round's fingerprints and prefixes are as short as keep a collision about 2^-10
// likely, given the parts it can find mismatching: ⌈log₂ m + 10⌉ bits, 16 for tens, 17
// for a hundred, 24 for 10,000, 27 for 100,000; never more than the maximum, and the
// maximum itself after a collision (not adaptive).
func TestRoundBits(t *testing.T) {
	s := &session{opts: Options{}.Defaults(), depth: 4, adaptive: true}
	ranges := func(n int, cI, cR uint64) []rng {
		rs := make([]rng, n)
		for i := range rs {
			rs[i] = rng{cI: cI, cR: cR, depth: 3}
		}
		return rs
	}
	for _, tc := range []struct {
		ranges []rng
		want   int
	}{
		{nil, 16},
		{ranges(10, 256, 256), 16},
		{ranges(60, 256, 257), 16},
		{ranges(100, 256, 257), 17},
		{ranges(10_000, 256, 255), 24},
		{ranges(10, 1000, 5000), 20}, // counts far apart: up to a range's 63 parts mismatch
		{ranges(100_000, 256, 256), 27},
	} {
		if got := s.roundBits(tc.ranges, 32); got != tc.want {
			t.Errorf("%d ranges: %d bits, want %d", len(tc.ranges), got, tc.want)
		}
	}
	if got := s.roundBits(ranges(100_000, 256, 256), 24); got != 24 {
		t.Errorf("with a 24-bit maximum: %d bits, want 24", got)
	}
	if got := s.roundBits(ranges(10, 256, 256), 8); got != 8 {
		t.Errorf("with an 8-bit maximum: %d bits, want 8", got)
	}
	s.adaptive = false
	if got := s.roundBits(ranges(10, 256, 256), 32); got != 32 {
		t.Errorf("after a collision: %d bits, want the maximum 32", got)
	}
}

func FuzzDecodeApplyResponse(f *testing.F) {
	f.Add(encodeApplyResponse(&ApplyResponse{Outcomes: []Outcome{Applied, Raced, Applied}}), 3)
	f.Add([]byte{tagApplyAnswer, 0}, 0)
	f.Add([]byte{tagApplyAnswer, 9, 0xff, 0x01}, 9)
	f.Fuzz(func(t *testing.T, b []byte, want int) {
		if want < 0 || want > 1<<16 {
			return // the caller passes the length of the batch it sent
		}
		m, err := decodeApplyResponse(b, want)
		if err != nil {
			return
		}
		if len(m.Outcomes) != want {
			t.Fatalf("%d outcomes for %d changes", len(m.Outcomes), want)
		}
		again, err := decodeApplyResponse(encodeApplyResponse(m), want)
		if err != nil || !reflect.DeepEqual(again, m) {
			t.Fatalf("re-encoding a decoded apply answer changed it: %v", err)
		}
	})
}

// TestOpenUnknownOrdering: an ordering byte other than version or key order makes a
// malformed frame (an open with ordering 9 and no first round was taken, and answered as
// endpoints in different orderings).
func TestOpenUnknownOrdering(t *testing.T) {
	req := &OpenRequest{Protocol: ProtocolVersion, Ordering: merkle.Ordering(9), Schema: "kv"}
	if _, err := DecodeOpenRequest(EncodeOpenRequest(req)); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "unknown ordering 9") {
		t.Fatalf("open request with ordering 9: %v", err)
	}
	req.Ordering = merkle.KeyOrder
	resp := EncodeOpenResponse(req, &OpenResponse{Protocol: ProtocolVersion, Ordering: merkle.Ordering(0), Schema: "kv", CutLevels: 1})
	if _, err := DecodeOpenResponse(req, resp); !errors.Is(err, ErrMalformed) {
		t.Fatalf("open response with ordering 0: %v", err)
	}
}
