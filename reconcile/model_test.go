package reconcile_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand"
	"reflect"
	"testing"

	"github.com/reconcile-dev/reconcile/adapters/badger"
	"github.com/reconcile-dev/reconcile/adapters/memory"
	"github.com/reconcile-dev/reconcile/merkle"
	"github.com/reconcile-dev/reconcile/reconcile"
)

const testNow = int64(1_700_000_000_000_000_000)

// naiveDiff classifies every key by a full comparison of the live rows.
func naiveDiff(src, dst *memory.Store, now int64) (onlySrc, onlyDst, changed int) {
	live := func(s *memory.Store) map[string]merkle.Entry {
		m := map[string]merkle.Entry{}
		for _, r := range s.Rows() {
			if e := r.Entry(); !e.Expired(now) {
				m[string(r.Key)] = e
			}
		}
		return m
	}
	a, b := live(src), live(dst)
	for k, ea := range a {
		eb, ok := b[k]
		switch {
		case !ok:
			onlySrc++
		case ea.Hash() != eb.Hash():
			changed++
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			onlyDst++
		}
	}
	return
}

func liveRows(s *memory.Store, now int64) map[string]reconcile.Row {
	m := map[string]reconcile.Row{}
	for _, r := range s.Rows() {
		if !r.Entry().Expired(now) {
			m[string(r.Key)] = r
		}
	}
	return m
}

type world struct {
	rng     *rand.Rand
	version uint64
	o       merkle.Ordering
}

func (w *world) key() []byte {
	if w.rng.Intn(3000) == 0 {
		b := make([]byte, 1<<20) // a 1 MiB key now and then
		w.rng.Read(b)
		return b
	}
	switch w.rng.Intn(20) {
	case 0:
		return []byte{} // the empty key
	case 1:
		b := make([]byte, 1+w.rng.Intn(40))
		w.rng.Read(b)
		return b
	default:
		return []byte(fmt.Sprintf("k%06d", w.rng.Intn(4000)))
	}
}

func (w *world) value() []byte {
	n := w.rng.Intn(24)
	if w.rng.Intn(400) == 0 {
		n = 1 << 20 // a 1 MiB value now and then
	}
	b := make([]byte, n)
	w.rng.Read(b)
	return b
}

func (w *world) expiry() int64 {
	switch w.rng.Intn(10) {
	case 0:
		return testNow - int64(w.rng.Intn(1000)) // already expired
	case 1:
		return testNow + 1 + int64(w.rng.Intn(1000))
	}
	return 0
}

// history writes n random operations, with bulk writes sharing one version.
func (w *world) history(s *memory.Store, n int) {
	for i := 0; i < n; i++ {
		w.version++
		bulk := 1
		if w.rng.Intn(30) == 0 {
			bulk = 2 + w.rng.Intn(60)
		}
		for j := 0; j < bulk; j++ {
			if w.rng.Intn(4) == 0 {
				s.Delete(w.key())
				continue
			}
			s.Put(reconcile.Row{Key: w.key(), Version: w.version, Value: w.value(), ExpiresAt: w.expiry()})
		}
	}
}

func clone(o merkle.Ordering, s *memory.Store) *memory.Store {
	c := memory.New(o)
	for _, r := range s.Rows() {
		c.Put(r)
	}
	return c
}

// scenario builds a source and a target that differ in one of the ways real copies drift.
func scenario(t *testing.T, w *world, kind int) (src, dst *memory.Store) {
	o := w.o
	src = memory.New(o)
	switch kind {
	case 0: // both empty
		return src, memory.New(o)
	case 1: // empty target
		w.history(src, 300)
		return src, memory.New(o)
	case 2: // empty source
		dst = memory.New(o)
		w.history(dst, 300)
		return src, dst
	case 3: // totally different
		w.history(src, 300)
		dst = memory.New(o)
		w.history(dst, 300)
		return src, dst
	case 4: // identical
		w.history(src, 500)
		return src, clone(o, src)
	case 5: // rollback: the source is restored from an older copy
		w.history(src, 500)
		old := clone(o, src)
		w.history(src, 40)
		dst = clone(o, src) // the replica got the newer writes
		return old, dst
	case 6: // count-preserving swaps
		w.history(src, 500)
		dst = clone(o, src)
		rows := dst.Rows()
		for i := 0; i < 5 && len(rows) > 0; i++ {
			r := rows[w.rng.Intn(len(rows))]
			if len(r.Key) > reconcile.MaxKey-len("swapped/") {
				continue // the renamed key would pass the protocol's key limit
			}
			dst.Delete(r.Key)
			r.Key = append([]byte("swapped/"), r.Key...)
			dst.Put(r)
		}
		return src, dst
	default: // drift on both sides
		w.history(src, 500)
		dst = clone(o, src)
		w.history(src, w.rng.Intn(30))
		w.history(dst, w.rng.Intn(30))
		return src, dst
	}
}

func TestModel(t *testing.T) {
	configs := []reconcile.Options{
		{},
		{Fanout: 2, LeafMax: 1},
		{Fanout: 4, LeafMax: 3, FingerprintBytes: 1}, // tiny fingerprints: collisions must be caught
		{Fanout: 64, LeafMax: 64},
	}
	for seed := int64(1); seed <= 24; seed++ {
		for _, o := range []merkle.Ordering{merkle.VersionOrder, merkle.KeyOrder} {
			w := &world{rng: rand.New(rand.NewSource(seed)), o: o}
			kind := int(seed % 8)
			src, dst := scenario(t, w, kind)
			cfg := configs[int(seed)%len(configs)]
			name := fmt.Sprintf("seed%d/%s/kind%d", seed, o, kind)
			src2, dst2 := clone(o, src), clone(o, dst)
			t.Run(name, func(t *testing.T) { checkSession(t, src, dst, cfg) })
			t.Run(name+"/from-peer", func(t *testing.T) { checkSessionWith(t, runFromPeer, src2, dst2, cfg) })
		}
	}
}

// runner runs one session from src to dst: reconcile.Run, or runFromPeer.
type runner func(ctx context.Context, src, dst reconcile.Endpoint, opts reconcile.Options) (*reconcile.Report, error)

// runFromPeer runs a session the other way round: the target initiates and the source
// answers through an in-process peer (what a sync from a remote source does).
func runFromPeer(ctx context.Context, src, dst reconcile.Endpoint, opts reconcile.Options) (*reconcile.Report, error) {
	peer := reconcile.NewLocal(src)
	defer peer.Close()
	return reconcile.RunFromPeer(ctx, peer, dst, opts)
}

// checkSession diffs and mirrors src into dst and checks both against a naive full
// comparison: the classes found, the rows written, and equal live rows and roots after.
func checkSession(t *testing.T, src, dst *memory.Store, cfg reconcile.Options) {
	t.Helper()
	checkSessionWith(t, reconcile.Run, src, dst, cfg)
}

// checkSessionWith is checkSession with sessions run by run.
func checkSessionWith(t *testing.T, run runner, src, dst *memory.Store, cfg reconcile.Options) {
	t.Helper()
	ctx := context.Background()
	wantS, wantD, wantC := naiveDiff(src, dst, testNow)
	opts := cfg
	opts.Now = testNow
	rep, err := run(ctx, src, dst, opts)
	if err != nil {
		t.Fatalf("diff: %v", err)
	}
	if rep.OnlySource != wantS || rep.OnlyTarget != wantD || rep.Changed != wantC {
		t.Fatalf("diff found %d/%d/%d (only source/only target/changed), naive comparison %d/%d/%d",
			rep.OnlySource, rep.OnlyTarget, rep.Changed, wantS, wantD, wantC)
	}
	opts.Mode, opts.Force = reconcile.Mirror, true
	rep, err = run(ctx, src, dst, opts)
	if err != nil {
		t.Fatalf("sync: %v", err)
	}
	if rep.Upserted != wantS+wantC || rep.Deleted != wantD || rep.Raced != 0 || rep.Quarantined != 0 {
		t.Fatalf("sync wrote %d upserts %d deletes (%d raced, %d quarantined), want %d and %d", rep.Upserted, rep.Deleted, rep.Raced, rep.Quarantined, wantS+wantC, wantD)
	}
	a, b := liveRows(src, testNow), liveRows(dst, testNow)
	if len(a) != len(b) {
		t.Fatalf("after sync: %d live rows on the source, %d on the target", len(a), len(b))
	}
	for k, r := range a {
		got, ok := b[k]
		if !ok || got.Version != r.Version || got.ExpiresAt != r.ExpiresAt || !bytes.Equal(got.Value, r.Value) {
			t.Fatalf("after sync: key %q differs", k)
		}
	}
	ri, _ := reconcile.Root(ctx, src, testNow)
	rt, _ := reconcile.Root(ctx, dst, testNow)
	if ri.Root != rt.Root {
		t.Fatalf("after sync: roots differ")
	}
	rep, err = run(ctx, src, dst, opts)
	if err != nil || rep.Differ() || rep.Rounds != 1 {
		t.Fatalf("second sync: err %v, differ %v, rounds %d", err, rep.Differ(), rep.Rounds)
	}
}

// FuzzSession runs random scenarios with random tuning through checkSession.
func FuzzSession(f *testing.F) {
	f.Add(int64(1), uint8(5), uint8(16), uint8(16), uint8(4))
	f.Add(int64(2), uint8(3), uint8(2), uint8(1), uint8(1))
	f.Fuzz(func(t *testing.T, seed int64, kind, fanout, leaf, fp uint8) {
		o := merkle.VersionOrder
		if seed%2 == 0 {
			o = merkle.KeyOrder
		}
		w := &world{rng: rand.New(rand.NewSource(seed)), o: o}
		src, dst := scenario(t, w, int(kind%8))
		run := reconcile.Run
		if kind&8 != 0 {
			run = runFromPeer
		}
		checkSessionWith(t, run, src, dst, reconcile.Options{Fanout: int(fanout%70) + 2, LeafMax: int(leaf%70) + 1, FingerprintBytes: int(fp%8) + 1})
	})
}

// TestRollback is the restore-from-backup case from the seeds: versions go backwards on
// the source and the replica must end up with the restored row, losing nothing.
func TestRollback(t *testing.T) {
	ctx := context.Background()
	src, dst := memory.New(merkle.VersionOrder), memory.New(merkle.VersionOrder)
	versions := map[int]uint64{1: 210, 2: 221, 3: 234, 4: 245}
	for id, v := range versions {
		r := reconcile.Row{Key: []byte(fmt.Sprint(id)), Version: v, Value: []byte(fmt.Sprintf("row %d v%d", id, v))}
		src.Put(r)
		dst.Put(r)
	}
	backup := clone(merkle.VersionOrder, src)
	src.Put(reconcile.Row{Key: []byte("3"), Version: 257, Value: []byte("row 3 v257")})
	opts := reconcile.Options{Mode: reconcile.Mirror, Now: testNow}
	if _, err := reconcile.Run(ctx, src, dst, opts); err != nil {
		t.Fatal(err)
	}
	if r := liveRows(dst, testNow)["3"]; r.Version != 257 {
		t.Fatalf("replica holds id 3 at %d after the first sync, want 257", r.Version)
	}
	// The source is restored from its backup: id 3 goes back to 234.
	rep, err := reconcile.Run(ctx, backup, dst, opts)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Changed != 1 || rep.OnlySource != 0 || rep.OnlyTarget != 0 || rep.Deleted != 0 {
		t.Fatalf("rollback sync: %+v", rep)
	}
	rows := liveRows(dst, testNow)
	if len(rows) != 4 {
		t.Fatalf("replica holds %d rows, want 4", len(rows))
	}
	for id, v := range versions {
		if r := rows[fmt.Sprint(id)]; r.Version != v {
			t.Fatalf("replica holds id %d at %d, want %d", id, r.Version, v)
		}
	}
}

// TestModelBadger runs the model scenarios through two Badger stores: the same checks as
// checkSession, against the embedded default endpoint.
func TestModelBadger(t *testing.T) {
	for seed := int64(1); seed <= 8; seed++ {
		o := merkle.VersionOrder
		if seed%3 == 0 {
			o = merkle.KeyOrder
		}
		w := &world{rng: rand.New(rand.NewSource(seed)), o: o}
		kind := int(seed % 8)
		msrc, mdst := scenario(t, w, kind)
		for _, m := range []*memory.Store{msrc, mdst} {
			for _, r := range m.Rows() {
				if len(r.Key) > badger.MaxKeyBytes {
					m.Delete(r.Key) // Badger keys are at most 64 KB
				}
			}
		}
		t.Run(fmt.Sprintf("seed%d/%s/kind%d", seed, o, kind), func(t *testing.T) {
			src, dst := toBadger(t, o, msrc), toBadger(t, o, mdst)
			wantS, wantD, wantC := naiveDiff(msrc, mdst, testNow)
			opts := reconcile.Options{Now: testNow, LeafMax: 1 + int(seed)*5}
			// Badger against memory both ways: one side finds cut entries from its index
			// (expired, unpurged entries included), the other by listing its entries, so
			// they may cut ranges at different entries; the result must not change.
			diffPairs(t, []endpointPair{{"badger-badger", src, dst, false}, {"badger-memory", src, mdst, false}, {"memory-badger", msrc, dst, false}},
				wantS, wantD, wantC, opts)
			// Every round read on two goroutines a side (these stores are too small for
			// it otherwise): the same session, message for message.
			serial := diffReport(t, src, dst, opts)
			restore := reconcile.SetParallelMin(1)
			parallel := diffReport(t, src, dst, opts)
			restore()
			if !reflect.DeepEqual(parallel, serial) {
				t.Fatalf("read on several goroutines, the session reported\n%+v\nagainst, on one,\n%+v", parallel, serial)
			}
			restore = reconcile.SetParallelMin(1)
			mirrorEqual(t, src, dst, opts)
			restore()
		})
	}
}

// diffReport runs a diff session with a fixed nonce and returns its report without the
// timings and samples.
func diffReport(t *testing.T, src, dst reconcile.Endpoint, opts reconcile.Options) reconcile.Report {
	t.Helper()
	defer reconcile.FixNonce()()
	rep, err := reconcile.Run(context.Background(), src, dst, opts)
	if err != nil {
		t.Fatal(err)
	}
	r := *rep
	r.DurationMS, r.Differences = 0, nil
	return r
}

// endpointPair is a session's source a and target b; reversed when they are the naive
// comparison's target and source.
type endpointPair struct {
	name     string
	a, b     reconcile.Endpoint
	reversed bool
}

// diffPairs runs a diff session over each pair and checks its counts against the naive
// comparison's (source-only and target-only exchanged for a reversed pair). It returns,
// for each pair, how many ops went with points above level 1.
func diffPairs(t *testing.T, pairs []endpointPair, wantS, wantD, wantC int, opts reconcile.Options) []int {
	t.Helper()
	high := make([]int, len(pairs))
	for i, p := range pairs {
		peer := &levelCounter{Local: reconcile.NewLocal(p.b)}
		rep, err := reconcile.RunPeer(context.Background(), p.a, peer, opts)
		peer.Close()
		if err != nil {
			t.Fatalf("%s diff: %v", p.name, err)
		}
		s, d := wantS, wantD
		if p.reversed {
			s, d = d, s
		}
		if rep.OnlySource != s || rep.OnlyTarget != d || rep.Changed != wantC {
			t.Fatalf("%s diff found %d/%d/%d, naive comparison %d/%d/%d", p.name, rep.OnlySource, rep.OnlyTarget, rep.Changed, s, d, wantC)
		}
		t.Logf("%s: %d rounds, %d bytes, reads %d+%d / %d+%d, %d ops with level points", p.name, rep.Rounds, rep.BytesSent+rep.BytesReceived,
			rep.EntriesReadSource, rep.NodesReadSource, rep.EntriesReadTarget, rep.NodesReadTarget, peer.high)
		high[i] = peer.high
	}
	return high
}

// levelCounter is an in-process peer that counts the ops sent with a point above level 1.
type levelCounter struct {
	*reconcile.Local
	high int
}

func (l *levelCounter) Round(ctx context.Context, req *reconcile.RoundRequest) (*reconcile.RoundResponse, error) {
	for _, op := range req.Ops {
		if max(op.Levels.Lo, op.Levels.Hi, op.Levels.Bounds) > 1 {
			l.high++
		}
	}
	return l.Local.Round(ctx, req)
}

// mirrorEqual syncs src to dst and checks that their live rows and roots are then equal.
func mirrorEqual(t *testing.T, src, dst *badger.Store, opts reconcile.Options) {
	t.Helper()
	ctx := context.Background()
	opts.Mode, opts.Force = reconcile.Mirror, true
	if _, err := reconcile.Run(ctx, src, dst, opts); err != nil {
		t.Fatalf("sync: %v", err)
	}
	a, b := badgerRows(t, src), badgerRows(t, dst)
	if len(a) != len(b) {
		t.Fatalf("after sync: %d live rows on the source, %d on the target", len(a), len(b))
	}
	for k, r := range a {
		if got, ok := b[k]; !ok || got.Version != r.Version || got.ExpiresAt != r.ExpiresAt || !bytes.Equal(got.Value, r.Value) {
			t.Fatalf("after sync: key %q differs", k)
		}
	}
	ri, _ := reconcile.Root(ctx, src, testNow)
	rt, _ := reconcile.Root(ctx, dst, testNow)
	if ri.Root != rt.Root {
		t.Fatal("after sync: roots differ")
	}
}

func toBadger(t *testing.T, o merkle.Ordering, m *memory.Store) *badger.Store {
	t.Helper()
	s, err := badger.Open(t.TempDir(), badger.Options{Create: true, Ordering: o})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	err = s.Write(func(w *badger.Writer) error {
		for _, r := range m.Rows() {
			if err := w.Put(r.Key, r.Value, r.Version, r.ExpiresAt); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// badgerRows returns the rows live at testNow.
func badgerRows(t *testing.T, s *badger.Store) map[string]reconcile.Row {
	t.Helper()
	snap, err := s.Open(context.Background(), testNow)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	es, err := snap.Entries(context.Background(), nil, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	keys := make([][]byte, len(es))
	for i, e := range es {
		keys[i] = e.Key
	}
	rows, err := snap.Rows(context.Background(), keys)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]reconcile.Row{}
	for _, r := range rows {
		out[string(r.Key)] = r
	}
	return out
}

// TestModelBadgerLevels runs sessions between Badger stores large enough that splits
// are taken from level-2 and level-3 nodes and go on the wire as points of those levels
// (Levels), and drifts them where that is delicate: cut entries of level 2 and 3 that
// only one side holds (so the sides read some points as different entries, or as none
// near the end), entries sharing one version (bulk writes), expired rows not yet purged.
// Results must match the naive comparison, against a memory endpoint (which reads only
// level 1) too.
func TestModelBadgerLevels(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two 100k-row Badger stores")
	}
	for _, o := range []merkle.Ordering{merkle.VersionOrder, merkle.KeyOrder} {
		t.Run(o.String(), func(t *testing.T) {
			rng := rand.New(rand.NewSource(7))
			src := memory.New(o)
			v := uint64(1000)
			for i := 0; i < 100_000; i++ {
				if i%5000 == 0 {
					v++ // a bulk write: 5% of the rows share one version
				} else if i%5000 >= 100 {
					v += 1 + uint64(rng.Intn(3))
				}
				var exp int64
				if rng.Intn(200) == 0 {
					exp = testNow - 1 // expired, and never purged
				}
				src.Put(reconcile.Row{Key: []byte(fmt.Sprintf("k%07d", rng.Intn(1_000_000_000))), Version: v, Value: []byte(fmt.Sprint(i)), ExpiresAt: exp})
			}
			dst := clone(o, src)
			level := func(r reconcile.Row) int {
				h := r.Entry().Hash()
				n := 0
				for _, b := range h[:2] {
					if b>>4 != 0 {
						break
					}
					n++
					if b&0xf != 0 {
						break
					}
					n++
				}
				return n
			}
			rows := src.Rows()
			rng.Shuffle(len(rows), func(i, j int) { rows[i], rows[j] = rows[j], rows[i] })
			oneSided, drift := 0, 0
			for _, r := range rows {
				switch l := level(r); {
				case l >= 2 && oneSided < 40: // a level-2+ cut entry on one side only
					if oneSided%2 == 0 {
						dst.Delete(r.Key)
					} else {
						src.Delete(r.Key)
					}
					oneSided++
				case drift < 300:
					switch drift % 3 {
					case 0:
						dst.Put(reconcile.Row{Key: r.Key, Version: r.Version + 7, Value: []byte("new"), ExpiresAt: r.ExpiresAt})
					case 1:
						dst.Delete(r.Key)
					case 2:
						src.Delete(r.Key)
					}
					drift++
				}
			}
			for i := 0; i < 200; i++ { // inserts at the top: points past the other's last entries
				dst.Put(reconcile.Row{Key: []byte(fmt.Sprintf("z%05d", i)), Version: v + 1 + uint64(i), Value: []byte("top")})
			}
			bsrc, bdst := toBadger(t, o, src), toBadger(t, o, dst)
			wantS, wantD, wantC := naiveDiff(src, dst, testNow)
			opts := reconcile.Options{Now: testNow}
			pairs := []endpointPair{{"badger-badger", bsrc, bdst, false}, {"badger-badger reversed", bdst, bsrc, true},
				{"badger-memory", bsrc, dst, false}, {"memory-badger", src, bdst, false}}
			high := diffPairs(t, pairs, wantS, wantD, wantC, opts)
			// Level points go between Badger stores (a source splitting at its level-2
			// nodes, a target reading them), never to or from a memory endpoint.
			for i, p := range pairs {
				if badgerBoth := i < 2; badgerBoth != (high[i] > 0) {
					t.Fatalf("%s: %d ops with points above level 1", p.name, high[i])
				}
			}
			mirrorEqual(t, bsrc, bdst, opts)
		})
	}
}
