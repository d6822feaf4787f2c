// Package endpointtest is the conformance suite every reconcile.Endpoint adapter runs from
// its tests. It writes rows through the adapter's native API, keeps a naive model of them
// (a merkle.Sorted over the live entries), and checks every snapshot answer against it:
// roots, range digests, splits, entries, rows, expiry, snapshot isolation, conditional
// Apply, bulk loads and edge sizes.
package endpointtest

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/reconcile-dev/reconcile/merkle"
	"github.com/reconcile-dev/reconcile/reconcile"
)

// Harness is one fresh, empty endpoint with its native write API. Open returns a new one
// per subtest and releases it with t.Cleanup.
type Harness struct {
	Endpoint reconcile.Endpoint
	// Put upserts one row through the adapter's own API (not Apply). Tombstone is false in
	// every row the suite writes.
	Put func(reconcile.Row) error
	// Delete removes the row under key through the adapter's own API; an absent key is
	// not an error.
	Delete func(key []byte) error
	// PutMany upserts rows in bulk; nil means calling Put for each.
	PutMany func([]reconcile.Row) error
	// RejectValueBytes, when positive, is a value size the endpoint refuses: Apply of a
	// batch holding such a row must fail and write nothing. Zero skips that check.
	RejectValueBytes int
	// Value, when set, maps the suite's value payloads (arbitrary bytes) to the values the
	// endpoint stores, for endpoints whose values have a structure (a SQL table's canonical
	// rows). Every value the suite writes, through Put or Apply, goes through it.
	Value func(payload []byte) []byte
	// MaxVersion, when positive, is the largest version the endpoint stores (a signed
	// 64-bit SQL column); the suite writes no larger one.
	MaxVersion uint64
	// SplitGranularity, when above 1, is the mean number of entries per node of an index
	// whose Split cuts only at node boundaries where a range spans several nodes (the SQL
	// maintained index's chunks): the suite then asks k/2 cuts only of ranges of at least
	// 2·k·SplitGranularity entries, and allows parts larger by 8·SplitGranularity.
	SplitGranularity int
}

// Run runs the suite. open must return a fresh, empty, writable endpoint each call. The
// whole suite writes about 25,000 rows.
func Run(t *testing.T, open func(t *testing.T) Harness) {
	tests := []struct {
		name string
		fn   func(t *testing.T, h *harness)
	}{
		{"Empty", testEmpty},
		{"Model", testModel},
		{"Expiry", testExpiry},
		{"Isolation", testIsolation},
		{"Fork", testFork},
		{"Apply", testApply},
		{"ApplyAllOrNothing", testApplyAllOrNothing},
		{"Bulk", testBulk},
		{"EdgeSizes", testEdgeSizes},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := &harness{Harness: open(t), t: t, rows: map[string]reconcile.Row{}}
			if h.Value == nil {
				h.Value = func(b []byte) []byte { return b }
			}
			if h.PutMany == nil {
				h.PutMany = func(rows []reconcile.Row) error {
					for _, r := range rows {
						if err := h.Put(r); err != nil {
							return err
						}
					}
					return nil
				}
			}
			tc.fn(t, h)
		})
	}
}

// base is the suite's clock: far from zero so that negative offsets stay valid times.
const base = int64(1_700_000_000) * int64(time.Second)

// harness is a Harness with the model of what the suite wrote.
type harness struct {
	Harness
	t    *testing.T
	ord  merkle.Ordering
	rows map[string]reconcile.Row // every row written, expired or not
}

// put writes rows (values as payloads) and records them in the model.
func (h *harness) put(rows ...reconcile.Row) {
	h.t.Helper()
	enc := make([]reconcile.Row, len(rows))
	for i := range rows {
		if h.MaxVersion > 0 && rows[i].Version > h.MaxVersion {
			rows[i].Version = h.MaxVersion
		}
		enc[i] = h.stored(rows[i])
	}
	if err := h.PutMany(enc); err != nil {
		h.t.Fatalf("put %d rows: %v", len(rows), err)
	}
	for _, r := range rows {
		h.rows[string(r.Key)] = r
	}
}

// stored is the model row r as the endpoint stores it: its value mapped by Value.
func (h *harness) stored(r reconcile.Row) reconcile.Row {
	r.Value = h.Value(r.Value)
	return r
}

// apply runs Apply with the changes' values mapped by Value.
func (h *harness) apply(ctx context.Context, now int64, changes []reconcile.Change) ([]reconcile.Outcome, error) {
	enc := make([]reconcile.Change, len(changes))
	for i, c := range changes {
		enc[i] = c
		if c.Put != nil {
			r := h.stored(*c.Put)
			enc[i].Put = &r
		}
	}
	return h.Endpoint.Apply(ctx, now, enc)
}

func (h *harness) del(key []byte) {
	h.t.Helper()
	if err := h.Delete(key); err != nil {
		h.t.Fatalf("delete %q: %v", key, err)
	}
	delete(h.rows, string(key))
}

func (h *harness) open(now int64) reconcile.Snapshot {
	h.t.Helper()
	snap, err := h.Endpoint.Open(context.Background(), now)
	if err != nil {
		h.t.Fatalf("open snapshot: %v", err)
	}
	h.t.Cleanup(func() { snap.Close() })
	info := snap.Info()
	if info.Ordering != merkle.VersionOrder && info.Ordering != merkle.KeyOrder {
		h.t.Fatalf("Info().Ordering = %v", info.Ordering)
	}
	if info.Schema == "" {
		h.t.Fatalf("Info().Schema is empty")
	}
	h.ord = info.Ordering
	return snap
}

// entry is the model's entry for the model row r: key order carries no version.
func (h *harness) entry(r reconcile.Row) merkle.Entry {
	return h.seen(h.stored(r))
}

// seen is the entry for a row the endpoint returned.
func (h *harness) seen(r reconcile.Row) merkle.Entry {
	if h.ord == merkle.KeyOrder {
		r.Version = 0
	}
	return r.Entry()
}

// model returns the index the endpoint must match at now, with its positions in order.
func (h *harness) model(now int64) (*merkle.Sorted, [][]byte) {
	var es []merkle.Entry
	for _, r := range h.rows {
		if e := h.entry(r); !e.Expired(now) {
			es = append(es, e)
		}
	}
	m := merkle.NewSorted(h.ord, es)
	var pos [][]byte
	m.Entries(nil, nil, func(e merkle.Entry) bool { pos = append(pos, e.Position(h.ord)); return true })
	return m, pos
}

func testEmpty(t *testing.T, h *harness) {
	snap := h.open(base)
	if root := snap.Info().Root; !root.IsZero() {
		t.Fatalf("root of an empty endpoint = %+v", root)
	}
	ctx := context.Background()
	ds, err := snap.Digests(ctx, nil, nil, nil)
	if err != nil || len(ds) != 1 || !ds[0].IsZero() {
		t.Fatalf("Digests(all) = %v, %v; want one zero digest", ds, err)
	}
	if bs, err := snap.Split(ctx, nil, nil, 4); err != nil || len(bs) != 0 {
		t.Fatalf("Split(all) = %q, %v; want none", bs, err)
	}
	if es, err := snap.Entries(ctx, nil, nil, 0); err != nil || len(es) != 0 {
		t.Fatalf("Entries(all) = %v, %v; want none", es, err)
	}
	rows, err := snap.Rows(ctx, [][]byte{[]byte("a"), {}})
	if err != nil || len(rows) != 2 || rows[0].Key != nil || rows[1].Key != nil {
		t.Fatalf("Rows = %v, %v; want two missing rows", rows, err)
	}
}

// randomRows makes n rows with random keys (1-24 bytes), versions, values and expiries
// around base: about one in five expires before base, one in five after.
func randomRows(rng *rand.Rand, n int, prefix string) []reconcile.Row {
	rows := make([]reconcile.Row, n)
	for i := range rows {
		key := make([]byte, 1+rng.IntN(24))
		for j := range key {
			key[j] = byte(rng.IntN(256))
		}
		key = append([]byte(prefix), key...)
		value := make([]byte, rng.IntN(200))
		for j := range value {
			value[j] = byte(rng.IntN(256))
		}
		var exp int64
		switch rng.IntN(5) {
		case 0:
			exp = base - 1 - rng.Int64N(int64(time.Hour))
		case 1:
			exp = base + 1 + rng.Int64N(int64(time.Hour))
		}
		rows[i] = reconcile.Row{Key: key, Version: 1 + rng.Uint64N(1000), Value: value, ExpiresAt: exp}
	}
	return rows
}

func testModel(t *testing.T, h *harness) {
	rng := rand.New(rand.NewPCG(1, 2))
	h.put(randomRows(rng, 3000, "")...)
	// Updates (new version, value or expiry) and deletes, some of absent keys.
	var keys [][]byte
	for k := range h.rows {
		keys = append(keys, []byte(k))
	}
	sort.Slice(keys, func(i, j int) bool { return bytes.Compare(keys[i], keys[j]) < 0 })
	for i, k := range keys {
		switch i % 7 {
		case 0:
			h.del(k)
		case 1:
			r := h.rows[string(k)]
			r.Version += 1 + rng.Uint64N(5)
			r.Value = append(r.Value, 'u')
			h.put(r)
		case 2:
			r := h.rows[string(k)]
			r.ExpiresAt = 0
			h.put(r)
		}
	}
	h.del([]byte("never written"))
	snap := h.open(base)
	checkSnapshot(t, h, snap, base, rng)
}

// checkSnapshot compares snap, taken at now, with the model.
func checkSnapshot(t *testing.T, h *harness, snap reconcile.Snapshot, now int64, rng *rand.Rand) {
	t.Helper()
	ctx := context.Background()
	m, pos := h.model(now)
	want, _ := m.Digest(nil, nil)
	if got := snap.Info().Root; got != want {
		t.Fatalf("root = %d entries %x, model %d entries %x", got.Count, got.Sum[:8], want.Count, want.Sum[:8])
	}
	if es, err := snap.Entries(ctx, nil, nil, 0); err != nil {
		t.Fatalf("Entries(all): %v", err)
	} else {
		checkEntries(t, h, m, es, nil, nil, 0)
	}

	// A pool of range ends: model positions, positions between them, nil and empty.
	pick := func() []byte {
		switch x := rng.IntN(10); {
		case x == 0 || len(pos) == 0:
			return nil
		case x == 1:
			return []byte{}
		case x < 6:
			return pos[rng.IntN(len(pos))]
		default:
			p := append([]byte(nil), pos[rng.IntN(len(pos))]...)
			return append(p, byte(rng.IntN(256)))
		}
	}
	for range 200 {
		lo, hi := pick(), pick()
		if lo != nil && hi != nil && bytes.Compare(lo, hi) > 0 {
			lo, hi = hi, lo
		}
		if hi != nil && len(hi) == 0 {
			hi = nil // [lo, empty) is empty whatever lo is; keep ranges interesting
		}
		var bounds [][]byte
		for range rng.IntN(6) {
			b := pick()
			if b != nil && (lo == nil || bytes.Compare(b, lo) > 0) && (hi == nil || bytes.Compare(b, hi) < 0) {
				bounds = append(bounds, b)
			}
		}
		sort.Slice(bounds, func(i, j int) bool { return bytes.Compare(bounds[i], bounds[j]) < 0 })
		bounds = dedup(bounds)
		got, err := snap.Digests(ctx, lo, hi, bounds)
		if err != nil {
			t.Fatalf("Digests(%x, %x, %d bounds): %v", lo, hi, len(bounds), err)
		}
		wantDs, _ := m.Digests(lo, hi, bounds)
		if len(got) != len(wantDs) {
			t.Fatalf("Digests(%x, %x) returned %d digests for %d bounds", lo, hi, len(got), len(bounds))
		}
		for i := range got {
			if got[i] != wantDs[i] {
				t.Fatalf("Digests(%x, %x, %x) part %d = %d entries, model %d", lo, hi, bounds, i, got[i].Count, wantDs[i].Count)
			}
		}

		k := 2 + rng.IntN(15)
		split, err := snap.Split(ctx, lo, hi, k)
		if err != nil {
			t.Fatalf("Split(%x, %x, %d): %v", lo, hi, k, err)
		}
		checkSplit(t, h, m, lo, hi, k, split)

		limit := rng.IntN(3) * rng.IntN(50)
		es, err := snap.Entries(ctx, lo, hi, limit)
		if err != nil {
			t.Fatalf("Entries(%x, %x, %d): %v", lo, hi, limit, err)
		}
		checkEntries(t, h, m, es, lo, hi, limit)
	}

	// Rows: every key written (live, expired), plus deleted and never-written keys.
	var keys [][]byte
	for k := range h.rows {
		keys = append(keys, []byte(k))
	}
	keys = append(keys, []byte("never written"), []byte{})
	got, err := snap.Rows(ctx, keys)
	if err != nil {
		t.Fatalf("Rows(%d keys): %v", len(keys), err)
	}
	if len(got) != len(keys) {
		t.Fatalf("Rows(%d keys) returned %d rows", len(keys), len(got))
	}
	for i, k := range keys {
		r, ok := h.rows[string(k)]
		if !ok || h.entry(r).Expired(now) {
			if got[i].Key != nil {
				t.Fatalf("Rows: key %x (deleted, expired or never written) returned %+v", k, got[i])
			}
			continue
		}
		checkRow(t, h, got[i], r)
	}
}

func checkRow(t *testing.T, h *harness, got, want reconcile.Row) {
	t.Helper()
	if h.ord == merkle.KeyOrder {
		want.Version = 0
	}
	want = h.stored(want)
	if got.Key == nil || !bytes.Equal(got.Key, want.Key) || got.Version != want.Version ||
		!bytes.Equal(got.Value, want.Value) || got.ExpiresAt != want.ExpiresAt || got.Tombstone != want.Tombstone {
		t.Fatalf("row for key %x = {%x v%d %d value bytes exp %d}, want {v%d %d value bytes exp %d}",
			want.Key, got.Key, got.Version, len(got.Value), got.ExpiresAt, want.Version, len(want.Value), want.ExpiresAt)
	}
}

func checkEntries(t *testing.T, h *harness, m *merkle.Sorted, got []merkle.Entry, lo, hi []byte, limit int) {
	t.Helper()
	var want []merkle.Entry
	m.Entries(lo, hi, func(e merkle.Entry) bool {
		want = append(want, e)
		return limit <= 0 || len(want) < limit
	})
	if len(got) != len(want) {
		t.Fatalf("Entries(%x, %x, %d) returned %d entries, model %d", lo, hi, limit, len(got), len(want))
	}
	for i := range got {
		if !entryEqual(got[i], want[i]) {
			t.Fatalf("Entries(%x, %x) #%d = %+v, model %+v", lo, hi, i, got[i], want[i])
		}
	}
}

func entryEqual(a, b merkle.Entry) bool { return merkle.SameEntry(&a, &b) }

// checkSplit checks Split's contract: at most k-1 positions of live entries, sorted,
// strictly inside the range, cutting it into parts of near-equal count. "Near" allows an
// index that splits at its own node boundaries: no part holds more than twice its share
// plus a few, and a range of at least 2k entries is cut at least k/2 times.
func checkSplit(t *testing.T, h *harness, m *merkle.Sorted, lo, hi []byte, k int, split [][]byte) {
	t.Helper()
	all, _ := m.Digest(lo, hi)
	n := int(all.Count)
	if len(split) > k-1 {
		t.Fatalf("Split(%x, %x, %d) returned %d positions", lo, hi, k, len(split))
	}
	if n <= 1 && len(split) > 0 {
		t.Fatalf("Split(%x, %x, %d) over %d entries returned %d positions", lo, hi, k, n, len(split))
	}
	for i, b := range split {
		if (lo != nil && bytes.Compare(b, lo) <= 0) || (hi != nil && bytes.Compare(b, hi) >= 0) {
			t.Fatalf("Split(%x, %x, %d) position %x is not strictly inside the range", lo, hi, k, b)
		}
		if i > 0 && bytes.Compare(split[i-1], b) >= 0 {
			t.Fatalf("Split(%x, %x, %d) positions not strictly increasing: %x then %x", lo, hi, k, split[i-1], b)
		}
		if d, _ := m.Digest(b, append(append([]byte(nil), b...), 0)); d.Count != 1 {
			t.Fatalf("Split(%x, %x, %d) position %x is not a live entry's", lo, hi, k, b)
		}
	}
	g := max(1, h.SplitGranularity)
	if n >= 2*k*g && len(split) < k/2 {
		t.Fatalf("Split(%x, %x, %d) over %d entries returned only %d positions", lo, hi, k, n, len(split))
	}
	parts, _ := m.Digests(lo, hi, split)
	share := n / (len(split) + 1)
	for i, p := range parts {
		// Near-equal, with room for indexes that cut only at their own node boundaries
		// (the Badger index's level-1 nodes hold 16 entries on average, a few many more).
		if int(p.Count) > 3*share+64+8*(g-1) {
			t.Fatalf("Split(%x, %x, %d) over %d entries: part %d holds %d (parts of ~%d wanted)", lo, hi, k, n, i, p.Count, share)
		}
	}
}

func dedup(bs [][]byte) [][]byte {
	out := bs[:0]
	for _, b := range bs {
		if len(out) == 0 || !bytes.Equal(out[len(out)-1], b) {
			out = append(out, b)
		}
	}
	return out
}

func testExpiry(t *testing.T, h *harness) {
	rows := []reconcile.Row{
		{Key: []byte("never"), Version: 1, Value: []byte("n")},
		{Key: []byte("before"), Version: 1, Value: []byte("b"), ExpiresAt: base - 1},
		{Key: []byte("at"), Version: 1, Value: []byte("a"), ExpiresAt: base},
		{Key: []byte("after"), Version: 1, Value: []byte("f"), ExpiresAt: base + 1},
		{Key: []byte("later"), Version: 2, Value: []byte("l"), ExpiresAt: base + int64(time.Hour)},
		{Key: []byte("negative"), Version: 3, Value: []byte("-"), ExpiresAt: -5},
	}
	h.put(rows...)
	ctx := context.Background()
	for _, now := range []int64{base - 2, base - 1, base, base + 1, base + int64(time.Hour)} {
		snap := h.open(now)
		m, _ := h.model(now)
		want, _ := m.Digest(nil, nil)
		if got := snap.Info().Root; got != want {
			t.Fatalf("now %+d: root has %d entries, model %d", now-base, got.Count, want.Count)
		}
		es, err := snap.Entries(ctx, nil, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		checkEntries(t, h, m, es, nil, nil, 0)
		rng := rand.New(rand.NewPCG(uint64(now), 3))
		checkSnapshot(t, h, snap, now, rng)
	}
	// Splits must skip expired entries even when most of a range is expired.
	var many []reconcile.Row
	for i := range 400 {
		r := reconcile.Row{Key: fmt.Appendf(nil, "bulk%04d", i), Version: 7, Value: []byte{byte(i)}}
		if i%4 != 0 {
			r.ExpiresAt = base - int64(i)
		}
		many = append(many, r)
	}
	h.put(many...)
	snap := h.open(base)
	checkSnapshot(t, h, snap, base, rand.New(rand.NewPCG(4, 5)))
	m, _ := h.model(base)
	for _, k := range []int{2, 3, 8, 50} {
		split, err := snap.Split(ctx, nil, nil, k)
		if err != nil {
			t.Fatal(err)
		}
		checkSplit(t, h, m, nil, nil, k, split)
	}
}

func testIsolation(t *testing.T, h *harness) {
	rng := rand.New(rand.NewPCG(6, 7))
	rows := randomRows(rng, 500, "iso")
	h.put(rows...)
	snap := h.open(base)
	before := maps.Clone(h.rows)
	// Change the endpoint: new rows, deletes, updates; and through Apply too.
	h.put(randomRows(rng, 100, "new")...)
	for _, r := range rows[:50] {
		h.del(r.Key)
	}
	for _, r := range rows[50:100] {
		r.Version++
		r.Value = []byte("updated")
		h.put(r)
	}
	_, err := h.apply(context.Background(), base, []reconcile.Change{{
		Key: []byte("applied"), Put: &reconcile.Row{Key: []byte("applied"), Version: 9, Value: []byte("x")},
	}})
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	h.rows["applied"] = reconcile.Row{Key: []byte("applied"), Version: 9, Value: []byte("x")}
	after := h.rows
	h.rows = before
	checkSnapshot(t, h, snap, base, rng) // the old snapshot sees none of it
	h.rows = after
	var added [][]byte
	for k := range after {
		if _, ok := before[k]; !ok {
			added = append(added, []byte(k))
		}
	}
	got, err := snap.Rows(context.Background(), added)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range got {
		if r.Key != nil {
			t.Fatalf("old snapshot returns row %x written after it opened", added[i])
		}
	}
	checkSnapshot(t, h, h.open(base), base, rng)
}

// testFork checks a Forker snapshot's forks (skipped for a snapshot that does not fork):
// forks taken after the endpoint changed still see the snapshot's moment, they and the
// snapshot answer the same while read at once from several goroutines, and their reads
// count in the snapshot's ReadStats once closed.
func testFork(t *testing.T, h *harness) {
	rng := rand.New(rand.NewPCG(8, 9))
	rows := randomRows(rng, 2000, "fork")
	h.put(rows...)
	snap := h.open(base - int64(time.Hour)) // some rows expire between then and base
	f, ok := snap.(reconcile.Forker)
	if !ok {
		t.Skip("the snapshot does not fork")
	}
	before := maps.Clone(h.rows)
	h.put(randomRows(rng, 100, "later")...)
	for _, r := range rows[:100] {
		h.del(r.Key)
	}
	after := h.rows
	h.rows = before
	defer func() { h.rows = after }()
	views := []reconcile.Snapshot{snap}
	for range 3 {
		v, err := f.Fork()
		if err != nil {
			t.Fatalf("Fork: %v", err)
		}
		views = append(views, v)
	}
	start := snap.ReadStats()
	t.Run("concurrent", func(t *testing.T) {
		for i, v := range views {
			t.Run(fmt.Sprint("view", i), func(t *testing.T) {
				t.Parallel()
				checkSnapshot(t, h, v, base-int64(time.Hour), rand.New(rand.NewPCG(uint64(i), 10)))
			})
		}
	})
	mid := snap.ReadStats()
	for _, v := range views[1:] {
		if err := v.Close(); err != nil {
			t.Fatalf("closing a fork: %v", err)
		}
	}
	end := snap.ReadStats()
	if end.Entries+end.Nodes <= mid.Entries+mid.Nodes && mid.Entries+mid.Nodes > start.Entries+start.Nodes {
		t.Fatalf("ReadStats did not count the forks' reads: %+v before, %+v with the snapshot's own, %+v after the forks closed", start, mid, end)
	}
	checkSnapshot(t, h, snap, base-int64(time.Hour), rng) // the snapshot outlives its forks
}

func testApply(t *testing.T, h *harness) {
	ctx := context.Background()
	row := func(key string, version uint64, value string, exp int64) *reconcile.Row {
		return &reconcile.Row{Key: []byte(key), Version: version, Value: []byte(value), ExpiresAt: exp}
	}
	h.put(*row("live", 5, "L", 0), *row("expired", 5, "E", base-10), *row("gone", 3, "G", 0), *row("stale", 8, "S", 0))
	snap := h.open(base)
	cur := func(key string) *merkle.Entry {
		es, err := snap.Rows(ctx, [][]byte{[]byte(key)})
		if err != nil || es[0].Key == nil {
			t.Fatalf("row %q missing from the snapshot: %v", key, err)
		}
		e := h.seen(es[0])
		return &e
	}
	liveE, goneE := cur("live"), cur("gone")
	staleE := *cur("stale")
	staleE.Version-- // what an older snapshot would have seen
	changes := []reconcile.Change{
		{Key: []byte("new"), Put: row("new", 1, "N", 0)},                          // absent, expect none: applied
		{Key: []byte("live"), Put: row("live", 6, "L2", 0)},                       // present, expect none: raced
		{Key: []byte("expired"), Put: row("expired", 6, "E2", base+int64(1e9))},   // expired counts as none: applied
		{Key: []byte("live"), Expect: liveE, Put: row("live", 7, "L3", base+100)}, // expect current: applied
		{Key: []byte("gone"), Expect: goneE},                                      // delete, expect current: applied
		{Key: []byte("stale"), Expect: &staleE, Put: row("stale", 9, "S2", 0)},    // stale expectation: raced
		{Key: []byte("absent"), Expect: liveE},                                    // deletes a row that is not there: in place, applied
		{Key: []byte("nothing")},                                                  // delete of nothing, expect none: applied
	}
	want := []reconcile.Outcome{reconcile.Applied, reconcile.Raced, reconcile.Applied, reconcile.Applied,
		reconcile.Applied, reconcile.Raced, reconcile.Applied, reconcile.Applied}
	got, err := h.apply(ctx, base, changes)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	if len(got) != len(want) {
		t.Fatalf("apply returned %d outcomes for %d changes", len(got), len(changes))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("change %d (%s): outcome %d, want %d", i, changes[i].Key, got[i], want[i])
		}
	}
	h.rows["new"] = *row("new", 1, "N", 0)
	h.rows["expired"] = *row("expired", 6, "E2", base+int64(1e9))
	h.rows["live"] = *row("live", 7, "L3", base+100)
	delete(h.rows, "gone")
	checkSnapshot(t, h, h.open(base), base, rand.New(rand.NewPCG(8, 9)))

	// The same batch again (a retry whose first answer was lost) finds its writes in
	// place: applied, though it expected the old state. A change that expected the old
	// state and would write something else races.
	replay := append(changes[3:5:5], reconcile.Change{Key: []byte("live"), Expect: liveE, Put: row("live", 8, "L4", 0)})
	got, err = h.apply(ctx, base, replay)
	if err != nil {
		t.Fatalf("apply again: %v", err)
	}
	if want := []reconcile.Outcome{reconcile.Applied, reconcile.Applied, reconcile.Raced}; !slices.Equal(got, want) {
		t.Fatalf("replayed changes: outcomes %v, want %v (in place, in place, raced)", got, want)
	}
	checkSnapshot(t, h, h.open(base), base, rand.New(rand.NewPCG(8, 10)))
}

func testApplyAllOrNothing(t *testing.T, h *harness) {
	if h.RejectValueBytes <= 0 {
		t.Skip("the harness names no value size the endpoint refuses")
	}
	ctx := context.Background()
	h.put(reconcile.Row{Key: []byte("keep"), Version: 1, Value: []byte("k")})
	snap := h.open(base)
	keep, err := snap.Rows(ctx, [][]byte{[]byte("keep")})
	if err != nil {
		t.Fatal(err)
	}
	keepE := h.seen(keep[0])
	big := make([]byte, h.RejectValueBytes)
	changes := []reconcile.Change{
		{Key: []byte("a"), Put: &reconcile.Row{Key: []byte("a"), Version: 1, Value: []byte("a")}},
		{Key: []byte("keep"), Expect: &keepE},
		{Key: []byte("big"), Put: &reconcile.Row{Key: []byte("big"), Version: 1, Value: big}},
		{Key: []byte("z"), Put: &reconcile.Row{Key: []byte("z"), Version: 1, Value: []byte("z")}},
	}
	if _, err := h.apply(ctx, base, changes); err == nil {
		t.Fatalf("apply of a %d-byte value succeeded; want an error", len(big))
	}
	checkSnapshot(t, h, h.open(base), base, rand.New(rand.NewPCG(10, 11)))
	// Without the bad row the rest goes through.
	changes = append(changes[:2], changes[3])
	if _, err := h.apply(ctx, base, changes); err != nil {
		t.Fatalf("apply without the refused row: %v", err)
	}
	delete(h.rows, "keep")
	h.rows["a"] = *changes[0].Put
	h.rows["z"] = *changes[2].Put
	checkSnapshot(t, h, h.open(base), base, rand.New(rand.NewPCG(12, 13)))
}

func testBulk(t *testing.T, h *harness) {
	const n = 20000
	rows := make([]reconcile.Row, n)
	for i := range rows {
		rows[i] = reconcile.Row{Key: fmt.Appendf(nil, "user/%08d", (i*7919)%n), Version: 42, Value: fmt.Appendf(nil, "value %d", i)}
	}
	h.put(rows...)
	snap := h.open(base)
	m, _ := h.model(base)
	if got, want := snap.Info().Root, must(m.Digest(nil, nil)); got != want {
		t.Fatalf("root has %d entries, model %d", got.Count, want.Count)
	}
	ctx := context.Background()
	for _, k := range []int{2, 16, 64} {
		split, err := snap.Split(ctx, nil, nil, k)
		if err != nil {
			t.Fatal(err)
		}
		checkSplit(t, h, m, nil, nil, k, split)
		ds, err := snap.Digests(ctx, nil, nil, split)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := m.Digests(nil, nil, split)
		for i := range ds {
			if ds[i] != want[i] {
				t.Fatalf("Digests over split %d part %d: %d entries, model %d", k, i, ds[i].Count, want[i].Count)
			}
		}
	}
	checkSnapshot(t, h, snap, base, rand.New(rand.NewPCG(14, 15)))
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func testEdgeSizes(t *testing.T, h *harness) {
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte(i * 31)
	}
	h.put(
		reconcile.Row{Key: []byte{}, Version: 1, Value: []byte("empty key")},
		reconcile.Row{Key: []byte("empty value"), Version: 2, Value: []byte{}},
		reconcile.Row{Key: []byte("big"), Version: 3, Value: big},
		reconcile.Row{Key: []byte{0}, Version: 4, Value: []byte{0}},
		reconcile.Row{Key: []byte{0xff, 0xff}, Version: ^uint64(0), Value: []byte{0xff}},
	)
	snap := h.open(base)
	checkSnapshot(t, h, snap, base, rand.New(rand.NewPCG(16, 17)))
	ctx := context.Background()
	rows, err := snap.Rows(ctx, [][]byte{{}, []byte("big")})
	if err != nil {
		t.Fatal(err)
	}
	checkRow(t, h, rows[0], h.rows[""])
	checkRow(t, h, rows[1], h.rows["big"])

	// The same sizes through Apply, replacing and deleting them.
	emptyE, bigE := h.seen(rows[0]), h.seen(rows[1])
	big2 := append([]byte("v2"), big...)
	changes := []reconcile.Change{
		{Key: []byte{}, Expect: &emptyE, Put: &reconcile.Row{Key: []byte{}, Version: 5, Value: []byte{}}},
		{Key: []byte("big"), Expect: &bigE, Put: &reconcile.Row{Key: []byte("big"), Version: 6, Value: big2}},
		{Key: []byte("big new"), Put: &reconcile.Row{Key: []byte("big new"), Version: 7, Value: big}},
	}
	out, err := h.apply(ctx, base, changes)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	for i, o := range out {
		if o != reconcile.Applied {
			t.Fatalf("change %d: outcome %d, want applied", i, o)
		}
	}
	for _, c := range changes {
		h.rows[string(c.Key)] = *c.Put
	}
	checkSnapshot(t, h, h.open(base), base, rand.New(rand.NewPCG(18, 19)))
	h.del([]byte{})
	h.del([]byte("big"))
	checkSnapshot(t, h, h.open(base), base, rand.New(rand.NewPCG(20, 21)))
}
