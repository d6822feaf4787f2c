package bench

import (
	"errors"
	"maps"
	"testing"
	"unicode/utf8"
)

type row struct {
	value     string
	version   uint64
	expiresAt int64
}

// memSink is the simplest store: the final state, plus the order checks tests need.
type memSink struct {
	rows    map[string]row
	lastVer uint64
	backs   int // puts whose version is below an earlier put's
	puts    int
	deletes int
	failAt  int // fail the failAt-th call (1-based); 0 never
}

func newMem() *memSink { return &memSink{rows: map[string]row{}} }

var errFail = errors.New("sink failure")

func (m *memSink) Put(key, value []byte, version uint64, expiresAt int64) error {
	m.puts++
	if m.failAt > 0 && m.puts+m.deletes == m.failAt {
		return errFail
	}
	if version < m.lastVer {
		m.backs++
	}
	m.lastVer = max(m.lastVer, version)
	m.rows[string(key)] = row{string(value), version, expiresAt}
	return nil
}

func (m *memSink) Delete(key []byte) error {
	m.deletes++
	if m.failAt > 0 && m.puts+m.deletes == m.failAt {
		return errFail
	}
	delete(m.rows, string(key))
	return nil
}

func (m *memSink) clone() *memSink {
	return &memSink{rows: maps.Clone(m.rows), lastVer: m.lastVer}
}

const testNow = int64(1_700_000_000_000_000_000)

func testHistory() History {
	return History{Rows: 3000, DeleteRatio: 1, UpdateRatio: 0.5, TTLFraction: 0.1, ValueSize: 24, Seed: 7, Now: testNow}
}

func TestGenerateDeterministic(t *testing.T) {
	a, b := newMem(), newMem()
	sa, err := testHistory().Generate(a)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := testHistory().Generate(b)
	if err != nil {
		t.Fatal(err)
	}
	if sa != sb || !maps.Equal(a.rows, b.rows) {
		t.Fatalf("same history, different results: %+v vs %+v", sa, sb)
	}
	h := testHistory()
	h.Seed++
	c := newMem()
	if _, err := h.Generate(c); err != nil {
		t.Fatal(err)
	}
	if maps.Equal(a.rows, c.rows) {
		t.Fatal("another seed gave the same rows")
	}
}

func TestGenerateShape(t *testing.T) {
	h := testHistory()
	m := newMem()
	st, err := h.Generate(m)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.rows) != h.Rows || st.Live != h.Rows {
		t.Fatalf("live rows: store %d, stats %d, want %d", len(m.rows), st.Live, h.Rows)
	}
	if st.Deletes != 3000 || m.deletes != 3000 || st.Inserts != 6000 || st.Updates != 1500 {
		t.Fatalf("counts: %+v (sink deletes %d)", st, m.deletes)
	}
	if m.backs != 0 {
		t.Fatalf("%d puts went backwards in version", m.backs)
	}
	if st.MinVersion != 1 || st.MaxVersion != uint64(st.Commits) || st.BulkRows == 0 {
		t.Fatalf("versions: %+v", st)
	}
	perVersion := map[uint64]int{}
	var withTTL, expired, binary int
	for k, r := range m.rows {
		perVersion[r.version]++
		if len(r.value) != h.ValueSize {
			t.Fatalf("value of %d bytes", len(r.value))
		}
		if r.expiresAt != 0 {
			withTTL++
			if r.expiresAt <= h.Now {
				expired++
			}
		}
		if !utf8.ValidString(k) {
			binary++
		}
	}
	shared := 0
	for _, n := range perVersion {
		if n > 1 {
			shared += n
		}
	}
	if shared < h.Rows/10 {
		t.Errorf("only %d live rows share a version with another", shared)
	}
	if withTTL < h.Rows/20 || withTTL > h.Rows/5 || expired == 0 || expired == withTTL {
		t.Errorf("%d rows with an expiry, %d of them expired", withTTL, expired)
	}
	if expired != st.Expired || binary != st.BinaryKeys || binary == 0 {
		t.Errorf("expired %d (stats %d), binary keys %d (stats %d)", expired, st.Expired, binary, st.BinaryKeys)
	}
}

func TestGenerateEdges(t *testing.T) {
	for _, h := range []History{
		{Now: testNow},
		{Rows: 0, DeleteRatio: 1, UpdateRatio: 1, Now: testNow},
		{Rows: 1, Now: testNow},
		{Rows: 10, DeleteRatio: 5, Now: testNow},
	} {
		m := newMem()
		st, err := h.Generate(m)
		if err != nil {
			t.Fatal(err)
		}
		if len(m.rows) != h.Rows || st.Live != h.Rows {
			t.Errorf("%+v: %d live rows", h, len(m.rows))
		}
	}
	if _, err := (History{Rows: -1}).Generate(newMem()); err == nil {
		t.Error("negative rows accepted")
	}
	m := newMem()
	m.failAt = 10
	if _, err := testHistory().Generate(m); !errors.Is(err, errFail) {
		t.Errorf("sink error: %v", err)
	}
}

// diffAt classifies the difference between two states as a diff would at now.
func diffAt(src, dst map[string]row, now int64) (onlySrc, onlyDst, changed int) {
	vis := func(r row, ok bool) bool { return ok && (r.expiresAt == 0 || r.expiresAt > now) }
	keys := maps.Clone(src)
	maps.Copy(keys, dst)
	for k := range keys {
		a, aok := src[k]
		b, bok := dst[k]
		av, bv := vis(a, aok), vis(b, bok)
		switch {
		case av && bv && a != b:
			changed++
		case av && !bv:
			onlySrc++
		case bv && !av:
			onlyDst++
		}
	}
	return
}

func TestDrift(t *testing.T) {
	h := testHistory()
	d := Drift{Updates: 0.01, Deletes: 0.005, Inserts: 0.004, RollbackVersions: 0.002, Swaps: 5, Seed: 3}
	src := newMem()
	if _, err := h.Generate(src); err != nil {
		t.Fatal(err)
	}
	dst := src.clone()
	ds, err := h.ApplyDrift(dst, d)
	if err != nil {
		t.Fatal(err)
	}
	if ds.Updated != 30 || ds.SameVersion != 15 || ds.Deleted != 15 || ds.Inserted != 12 || ds.Swapped != 5 {
		t.Fatalf("drift sizes: %+v", ds)
	}
	if ds.RolledBack+ds.Removed == 0 || ds.Cutoff == 0 {
		t.Fatalf("no rollback: %+v", ds)
	}
	if dst.backs == 0 {
		t.Fatal("rollback wrote no older version")
	}
	s, o, c := diffAt(src.rows, dst.rows, h.Now)
	if s != ds.OnlySource || o != ds.OnlyTarget || c != ds.Changed {
		t.Fatalf("diff found %d/%d/%d (only source/only target/changed), stats say %+v", s, o, c, ds)
	}

	// GenerateDrifted is the same as Generate then ApplyDrift.
	both := newMem()
	_, ds2, err := h.GenerateDrifted(both, d)
	if err != nil {
		t.Fatal(err)
	}
	if ds2 != ds || !maps.Equal(both.rows, dst.rows) {
		t.Fatal("GenerateDrifted differs from Generate + ApplyDrift")
	}
}

// Swaps alone keep the number of visible rows at every version.
func TestDriftSwapsPreserveCounts(t *testing.T) {
	h := testHistory()
	src := newMem()
	if _, err := h.Generate(src); err != nil {
		t.Fatal(err)
	}
	dst := src.clone()
	ds, err := h.ApplyDrift(dst, Drift{Swaps: 20, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if ds.Swapped != 20 || ds.OnlySource != 20 || ds.OnlyTarget != 20 {
		t.Fatalf("%+v", ds)
	}
	count := func(m map[string]row) map[uint64]int {
		out := map[uint64]int{}
		for _, r := range m {
			if r.expiresAt == 0 || r.expiresAt > h.Now {
				out[r.version]++
			}
		}
		return out
	}
	if !maps.Equal(count(src.rows), count(dst.rows)) {
		t.Fatal("swaps changed the count of rows at some version")
	}
	if maps.Equal(src.rows, dst.rows) {
		t.Fatal("swaps changed nothing")
	}
}

func TestDriftTooLarge(t *testing.T) {
	h := History{Rows: 10, Now: testNow}
	if _, err := h.ApplyDrift(newMem(), Drift{Deletes: 2}); err == nil {
		t.Fatal("deleting 200% of the rows was accepted")
	}
}
