package baseline

import (
	"context"
	"fmt"
	"sort"
	"testing"

	"github.com/reconcile-dev/reconcile/adapters/memory"
	"github.com/reconcile-dev/reconcile/merkle"
	"github.com/reconcile-dev/reconcile/reconcile"
)

const now = int64(1_000_000)

// pair returns a source of n rows at versions 1..n and a copy of it.
func pair(n int) (*memory.Store, *memory.Store) {
	src, dst := memory.New(merkle.VersionOrder), memory.New(merkle.VersionOrder)
	for i := 1; i <= n; i++ {
		r := reconcile.Row{Key: []byte(fmt.Sprintf("k%05d", i)), Version: uint64(i), Value: []byte(fmt.Sprint("v", i))}
		src.Put(r)
		dst.Put(r)
	}
	return src, dst
}

func keys(ks [][]byte) []string {
	out := make([]string, len(ks))
	for i, k := range ks {
		out[i] = string(k)
	}
	sort.Strings(out)
	return out
}

func same(a []string, b ...string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

type method interface {
	Run(ctx context.Context, source, target reconcile.Endpoint, now int64) (*Result, error)
}

// The manifest and the chunked scan find a mixed difference near the top exactly; the
// manifest's bytes are its records'.
func TestFindMixed(t *testing.T) {
	src, dst := pair(5000)
	dst.Put(reconcile.Row{Key: []byte("k04990"), Version: 4990, Value: []byte("other")}) // same version, other value
	dst.Delete([]byte("k04980"))                                                         // only in source
	dst.Put(reconcile.Row{Key: []byte("new"), Version: 6000, Value: []byte("x")})        // only in target
	dst.Put(reconcile.Row{Key: []byte("k04970"), Version: 7000, Value: []byte("v")})     // newer in target
	for _, m := range []method{Manifest{}, Chunked{ChunkRows: 100}} {
		r, err := m.Run(context.Background(), src, dst, now)
		if err != nil {
			t.Fatal(err)
		}
		if !same(keys(r.Plan.Upserts), "k04970", "k04980", "k04990") || !same(keys(r.Plan.Deletes), "new") {
			t.Errorf("%T: plan %q, %q", m, keys(r.Plan.Upserts), keys(r.Plan.Deletes))
		}
		if r.Found != (Found{OnlySource: 1, OnlyTarget: 1, Changed: 2}) {
			t.Errorf("%T: found %+v", m, r.Found)
		}
		if r.Cost.Rounds == 0 || r.Cost.BytesReceived == 0 {
			t.Errorf("%T: cost %+v", m, r.Cost)
		}
	}
	r, _ := Manifest{HashBytes: 8}.Run(context.Background(), src, dst, now)
	var want int64 = 1 // end mark
	for _, row := range dst.Rows() {
		want += bytesLen(row.Key) + uvlen(row.Version) + 8
	}
	if r.Cost.BytesReceived != want || r.Cost.Rounds != 1 || r.Cost.Hashes != int64(len(dst.Rows())) {
		t.Errorf("manifest received %d bytes in %d rounds, want %d in 1", r.Cost.BytesReceived, r.Cost.Rounds, want)
	}
}

// The chunked scan stops as soon as the counts below agree, so a value rewritten at its
// own version deep in the history is never seen, and it walked only the top.
func TestChunkedMissesCountEqual(t *testing.T) {
	src, dst := pair(5000)
	dst.Put(reconcile.Row{Key: []byte("k00100"), Version: 100, Value: []byte("corrupt")})
	r, err := Chunked{ChunkRows: 100}.Run(context.Background(), src, dst, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Plan.Upserts)+len(r.Plan.Deletes) != 0 {
		t.Fatalf("found %+v", r.Plan)
	}
	if r.Cost.Rounds > 3 {
		t.Errorf("walked %d batches with equal counts below", r.Cost.Rounds)
	}
	m, _ := Manifest{}.Run(context.Background(), src, dst, now)
	if !same(keys(m.Plan.Upserts), "k00100") {
		t.Errorf("manifest: %+v", m.Plan)
	}
}

// After a rollback of the source, the high-water-mark sync deletes the target's newer
// rows and never sends the older ones: they are lost.
func TestHighWaterLosesRows(t *testing.T) {
	src, dst := pair(100)
	// The target kept newer writes of two rows and one new row; the source was restored
	// to before them.
	dst.Put(reconcile.Row{Key: []byte("k00010"), Version: 101, Value: []byte("newer")})
	dst.Put(reconcile.Row{Key: []byte("k00020"), Version: 102, Value: []byte("newer")})
	dst.Put(reconcile.Row{Key: []byte("k00200"), Version: 103, Value: []byte("new")})
	r, err := HighWater{}.Run(context.Background(), src, dst, now)
	if err != nil {
		t.Fatal(err)
	}
	if !same(keys(r.Plan.Deletes), "k00010", "k00020", "k00200") || len(r.Plan.Upserts) != 0 {
		t.Fatalf("plan %q %q", keys(r.Plan.Deletes), keys(r.Plan.Upserts))
	}
	// Applied, the plan leaves the target without k00010 and k00020, which the source holds.
	for _, k := range r.Plan.Deletes {
		dst.Delete(k)
	}
	for _, k := range []string{"k00010", "k00020"} {
		for _, row := range dst.Rows() {
			if string(row.Key) == k {
				t.Fatalf("%s still there", k)
			}
		}
	}
	// A target that only lags (no rollback) is served right: rows above its top go up.
	src2, dst2 := pair(100)
	src2.Put(reconcile.Row{Key: []byte("k00300"), Version: 150, Value: []byte("x")})
	r, _ = HighWater{}.Run(context.Background(), src2, dst2, now)
	if !same(keys(r.Plan.Upserts), "k00300") || len(r.Plan.Deletes) != 0 {
		t.Fatalf("lagging target: plan %+v", r.Plan)
	}
}

func TestMaxVersion(t *testing.T) {
	src, _ := pair(1000)
	snap, err := src.Open(context.Background(), now)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	for _, c := range []struct {
		hi   []byte
		want uint64
		ok   bool
	}{{nil, 1000, true}, {versionPos(500), 499, true}, {versionPos(1), 0, false}} {
		v, ok, err := maxVersion(context.Background(), snap, c.hi)
		if err != nil || v != c.want || ok != c.ok {
			t.Errorf("below %x: %d %v %v, want %d %v", c.hi, v, ok, err, c.want, c.ok)
		}
	}
}
