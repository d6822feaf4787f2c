package merkle

import (
	"bytes"
	"context"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

// naiveIndex is the reference model: a map of entries by position, sorted on demand.
type naiveIndex struct {
	o Ordering
	m map[string]Entry
}

func newNaiveIndex(o Ordering) *naiveIndex { return &naiveIndex{o: o, m: map[string]Entry{}} }

func (n *naiveIndex) insert(e Entry) {
	e.Key = append([]byte{}, e.Key...)
	n.m[string(e.Position(n.o))] = e
}

func (n *naiveIndex) remove(e Entry) { delete(n.m, string(e.Position(n.o))) }

// sorted returns the positions and entries in order.
func (n *naiveIndex) sorted() ([][]byte, []Entry) {
	keys := make([]string, 0, len(n.m))
	for k := range n.m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	pos := make([][]byte, len(keys))
	es := make([]Entry, len(keys))
	for i, k := range keys {
		pos[i], es[i] = []byte(k), n.m[k]
	}
	return pos, es
}

func inRange(p, lo, hi []byte) bool {
	return (lo == nil || bytes.Compare(p, lo) >= 0) && (hi == nil || bytes.Compare(p, hi) < 0)
}

func (n *naiveIndex) entries(lo, hi []byte) ([][]byte, []Entry) {
	pos, es := n.sorted()
	var op [][]byte
	var oe []Entry
	for i, p := range pos {
		if inRange(p, lo, hi) {
			op, oe = append(op, p), append(oe, es[i])
		}
	}
	return op, oe
}

func (n *naiveIndex) digest(lo, hi []byte) Digest {
	var d Digest
	for k, e := range n.m {
		if inRange([]byte(k), lo, hi) {
			d = d.Add(e.Digest())
		}
	}
	return d
}

// canonicalStored builds, from the definition in stored.go's doc comment and independently
// of its code, the exact KV contents a Stored must hold for a set of entries.
func canonicalStored(prefix []byte, o Ordering, nbits int, model *naiveIndex) map[string]string {
	out := map[string]string{}
	pos, es := model.sorted()
	if len(es) == 0 {
		return out
	}
	key := func(parts ...[]byte) string {
		return string(bytes.Join(append([][]byte{prefix}, parts...), nil))
	}
	levels := make([]int, len(es))
	top := 1
	for i, e := range es {
		h := EntryHash(e.Key, e.Version, e.ExpiresAt, e.Flags, e.ValueHash)
		var v []byte
		v = append(v, e.Flags)
		v = binary.BigEndian.AppendUint64(v, uint64(e.ExpiresAt))
		v = append(v, e.ValueHash[:]...)
		v = append(v, h[:]...)
		out[key([]byte{0}, pos[i])] = string(v)
		z := 0
		for z < 256 && h[z/8]>>(7-z%8)&1 == 0 {
			z++
		}
		levels[i] = min(z/nbits, 12)
		top = max(top, levels[i])
	}
	for k := 1; k <= top; k++ {
		cur := key([]byte{byte(k), 0})
		var acc Digest
		flush := func() {
			if acc.Count > 0 {
				out[cur] = string(acc.MarshalBinary())
			}
		}
		for i, e := range es {
			if levels[i] >= k {
				flush()
				cur, acc = key([]byte{byte(k), 1}, pos[i]), Digest{}
			}
			acc = acc.Add(e.Digest())
		}
		flush()
	}
	out[key([]byte{0xFF})] = string([]byte{byte(top)})
	return out
}

// ixGen draws entries and positions for the model tests.
type ixGen struct {
	rng *rand.Rand
	o   Ordering
}

var ixAlphabet = []byte{0x00, 0x01, 0x02, 'a', 'b', 0xFF}

func (g ixGen) key() []byte {
	n := g.rng.IntN(6)
	if g.rng.IntN(20) == 0 {
		n = 0
	}
	k := make([]byte, n)
	for i := range k {
		k[i] = ixAlphabet[g.rng.IntN(len(ixAlphabet))]
	}
	return k
}

func (g ixGen) version() uint64 {
	if g.o == KeyOrder {
		return 0
	}
	switch g.rng.IntN(8) {
	case 0:
		return 0
	case 1:
		return math.MaxUint64
	case 2, 3:
		return uint64(g.rng.IntN(5))
	}
	return 7 // a bulk load: many entries at one version
}

func (g ixGen) entry(key []byte, version uint64) Entry {
	e := Entry{Key: key, Version: version}
	if g.rng.IntN(4) == 0 {
		e.ExpiresAt = g.rng.Int64()
	}
	if g.rng.IntN(5) == 0 {
		e.Flags = FlagTombstone
	}
	for i := range e.ValueHash {
		e.ValueHash[i] = byte(g.rng.Uint32())
	}
	return e
}

// pos returns a random bound: nil, empty, an entry's position or a neighbour of one, or an
// arbitrary position.
func (g ixGen) pos(pos [][]byte) []byte {
	switch r := g.rng.IntN(20); {
	case r < 2:
		return nil
	case r < 3:
		return []byte{}
	case r < 12 && len(pos) > 0:
		p := append([]byte{}, pos[g.rng.IntN(len(pos))]...)
		switch g.rng.IntN(3) {
		case 0:
			p = append(p, 0)
		case 1:
			if len(p) > 0 && p[len(p)-1] > 0 {
				p[len(p)-1]--
			}
		}
		return p
	}
	return g.o.Position(g.key(), g.version())
}

// rangeBounds returns lo <= hi (or, rarely, an empty range lo > hi).
func (g ixGen) rangeBounds(pos [][]byte) ([]byte, []byte) {
	lo, hi := g.pos(pos), g.pos(pos)
	if lo != nil && hi != nil && bytes.Compare(lo, hi) > 0 && g.rng.IntN(10) != 0 {
		lo, hi = hi, lo
	}
	return lo, hi
}

// checkIndex compares idx with the model over random queries. exactSplit asks for Mem's
// exact quantiles; otherwise only validity is checked.
func checkIndex(t *testing.T, name string, idx Index, model *naiveIndex, g ixGen, exactSplit bool) {
	t.Helper()
	pos, _ := model.sorted()
	total := model.digest(nil, nil)
	if d, err := idx.Digest(nil, nil); err != nil || d != total {
		t.Fatalf("%s: Digest(all) = %v, %v; want %v", name, d, err, total)
	}
	for range 20 {
		lo, hi := g.rangeBounds(pos)
		want := Digest{}
		if !rangeIsEmpty(lo, hi) {
			want = model.digest(lo, hi)
		}
		if d, err := idx.Digest(lo, hi); err != nil || d != want {
			t.Fatalf("%s: Digest(%x, %x) = %v, %v; want %v", name, lo, hi, d, err, want)
		}
	}
	for range 6 {
		lo, hi := g.rangeBounds(pos)
		if rangeIsEmpty(lo, hi) {
			continue
		}
		var bounds [][]byte
		for range g.rng.IntN(12) {
			if b := g.pos(pos); b != nil && inRange(b, lo, hi) {
				bounds = append(bounds, b)
			}
		}
		if g.rng.IntN(4) == 0 && lo != nil {
			bounds = append(bounds, lo)
		}
		sort.Slice(bounds, func(i, j int) bool { return bytes.Compare(bounds[i], bounds[j]) < 0 })
		ds, err := idx.Digests(lo, hi, bounds)
		if err != nil || len(ds) != len(bounds)+1 {
			t.Fatalf("%s: Digests: %v, %d digests for %d bounds", name, err, len(ds), len(bounds))
		}
		prev := lo
		for i := range ds {
			next := hi
			if i < len(bounds) {
				next = bounds[i]
			}
			if want := model.digest(prev, next); ds[i] != want {
				t.Fatalf("%s: Digests(%x, %x, %x)[%d] = %v; want %v", name, lo, hi, bounds, i, ds[i], want)
			}
			prev = next
		}
	}
	for range 6 {
		lo, hi := g.rangeBounds(pos)
		k := []int{0, 1, 2, 3, 4, 7, 16, 64}[g.rng.IntN(8)]
		got, err := idx.Split(lo, hi, k)
		if err != nil {
			t.Fatalf("%s: Split: %v", name, err)
		}
		checkSplit(t, name, model, lo, hi, k, got, exactSplit)
	}
	for range 4 {
		lo, hi := g.rangeBounds(pos)
		var wantPos [][]byte
		var want []Entry
		if !rangeIsEmpty(lo, hi) {
			wantPos, want = model.entries(lo, hi)
		}
		limit := len(want)
		if g.rng.IntN(3) == 0 {
			limit = g.rng.IntN(len(want) + 1)
		}
		var got []Entry
		err := idx.Entries(lo, hi, func(e Entry) bool {
			got = append(got, e)
			return len(got) < limit
		})
		if limit == 0 && len(want) > 0 {
			limit = 1 // fn is called once before it can say stop
		}
		if err != nil || len(got) != limit {
			t.Fatalf("%s: Entries(%x, %x): %v, %d entries, want %d", name, lo, hi, err, len(got), limit)
		}
		for i, e := range got {
			if !bytes.Equal(e.Position(model.o), wantPos[i]) || e.Hash() != want[i].Hash() {
				t.Fatalf("%s: Entries(%x, %x)[%d] = %+v; want %+v", name, lo, hi, i, e, want[i])
			}
		}
	}
}

// checkSplit checks one Split answer: sorted positions of entries strictly inside the range,
// min(k, c)-1 of them, every part non-empty; exact asks for parts differing by at most one.
func checkSplit(t *testing.T, name string, model *naiveIndex, lo, hi []byte, k int, got [][]byte, exact bool) []int {
	t.Helper()
	var inPos [][]byte
	if !rangeIsEmpty(lo, hi) {
		inPos, _ = model.entries(lo, hi)
	}
	c := len(inPos)
	want := 0
	if k >= 2 && c >= 2 {
		want = min(k, c) - 1
	}
	// Exact implementations give every cut asked for; Stored may cut only at level-1
	// boundaries, at least half as many, rather than read every entry of a range.
	if len(got) > want || (exact && len(got) != want) || len(got) < want/2 || (want > 0 && len(got) == 0) {
		t.Fatalf("%s: Split(%x, %x, %d) over %d entries gave %d positions, want %d", name, lo, hi, k, c, len(got), want)
	}
	sizes := make([]int, len(got)+1)
	j := 0
	for _, p := range inPos {
		for j < len(got) && bytes.Compare(p, got[j]) >= 0 {
			j++
		}
		sizes[j]++
	}
	for i, p := range got {
		if i > 0 && bytes.Compare(got[i-1], p) >= 0 {
			t.Fatalf("%s: Split positions not strictly increasing: %x", name, got)
		}
		if _, ok := model.m[string(p)]; !ok || !inRange(p, lo, hi) {
			t.Fatalf("%s: Split position %x is not an entry in [%x, %x)", name, p, lo, hi)
		}
	}
	lo2, hi2 := c, 0
	for _, n := range sizes {
		if n == 0 && want > 0 {
			t.Fatalf("%s: Split(%x, %x, %d) gave an empty part: sizes %v", name, lo, hi, k, sizes)
		}
		lo2, hi2 = min(lo2, n), max(hi2, n)
	}
	if exact && want > 0 && hi2-lo2 > 1 {
		t.Fatalf("%s: Split parts not exact quantiles: %v", name, sizes)
	}
	return sizes
}

// TestIndexModel runs random inserts, replacements and removes against Mem and Stored (at
// 1, 2 and 4 bits per level, so that small sets still have deep structures) and compares
// every answer with the model; Stored's KV contents are compared byte for byte with the
// canonical layout after every batch.
func TestIndexModel(t *testing.T) {
	for _, o := range []Ordering{VersionOrder, KeyOrder} {
		for _, nbits := range []int{1, 2, 4} {
			t.Run(o.String()+"/bits"+string(rune('0'+nbits)), func(t *testing.T) {
				runIndexModel(t, o, nbits, 2500, uint64(nbits)*10+uint64(o))
			})
		}
	}
}

func runIndexModel(t *testing.T, o Ordering, nbits, ops int, seed uint64) {
	g := ixGen{rng: rand.New(rand.NewPCG(seed, 99)), o: o}
	kv := newOrderedKV(true)
	prefix := []byte("ix/")
	model := newNaiveIndex(o)
	mem := NewMem(o)
	var live []Entry // roughly the model's entries, for picking replacements and removes
	for i := 1; i <= ops; i++ {
		st := newStoredBits(kv, prefix, o, nbits) // one per "transaction"
		var e Entry
		remove := false
		switch r := g.rng.IntN(10); {
		case r < 6 || len(live) == 0:
			e = g.entry(g.key(), g.version())
			live = append(live, e)
		case r < 8: // replace an entry (same position, new content)
			old := live[g.rng.IntN(len(live))]
			e = g.entry(old.Key, old.Version)
		case r < 9: // remove an entry
			j := g.rng.IntN(len(live))
			e, remove = live[j], true
			live[j] = live[len(live)-1]
			live = live[:len(live)-1]
		default: // remove a position that is likely absent
			e, remove = g.entry(g.key(), g.version()), true
		}
		if remove {
			model.remove(e)
			if err := st.Remove(e); err != nil {
				t.Fatalf("op %d: Stored.Remove: %v", i, err)
			}
			if err := mem.Remove(e); err != nil {
				t.Fatal(err)
			}
		} else {
			model.insert(e)
			if err := st.Insert(e); err != nil {
				t.Fatalf("op %d: Stored.Insert: %v", i, err)
			}
			if err := mem.Insert(e); err != nil {
				t.Fatal(err)
			}
		}
		if i%100 != 0 && i != ops {
			continue
		}
		if d := diffDumps(kv.dump(), canonicalStored(prefix, o, nbits, model)); d != "" {
			t.Fatalf("op %d: stored layout differs from canonical:\n%s", i, d)
		}
		if mem.Len() != len(model.m) {
			t.Fatalf("Mem.Len = %d, want %d", mem.Len(), len(model.m))
		}
		st = newStoredBits(kv, prefix, o, nbits)
		if c, err := st.Check(context.Background()); err != nil || !c.OK() || c.Sum != model.digest(nil, nil) {
			t.Fatalf("op %d: Check = %+v, %v", i, c, err)
		}
		checkIndex(t, "Stored", st, model, g, false)
		if nbits == 4 {
			checkIndex(t, "Mem", mem, model, g, true)
		}
	}
	// Remove everything: the store must end up empty.
	st := newStoredBits(kv, prefix, o, nbits)
	_, es := model.sorted()
	g.rng.Shuffle(len(es), func(i, j int) { es[i], es[j] = es[j], es[i] })
	for _, e := range es {
		if err := st.Remove(e); err != nil {
			t.Fatal(err)
		}
		if err := mem.Remove(e); err != nil {
			t.Fatal(err)
		}
	}
	if kv.n != 0 || mem.Len() != 0 {
		t.Fatalf("after removing everything: %d keys left in the KV, Mem.Len %d", kv.n, mem.Len())
	}
}

// TestStoredSplitBalance checks that Stored's node-based quantiles stay near-equal on a
// larger set (Mem's are exact).
func TestStoredSplitBalance(t *testing.T) {
	g := ixGen{rng: rand.New(rand.NewPCG(5, 5)), o: VersionOrder}
	model := newNaiveIndex(VersionOrder)
	kv := newOrderedKV(false)
	loadCanonical(kv, nil, VersionOrder, 4, model, g, 20000)
	st := NewStored(kv, nil, VersionOrder)
	pos, _ := model.sorted()
	worst := 0.0
	for _, k := range []int{2, 4, 16, 64} {
		for r := range 8 {
			var lo, hi []byte
			if r > 0 {
				a, b := g.rng.IntN(len(pos)/2), len(pos)/2+g.rng.IntN(len(pos)/2)
				lo, hi = pos[a], pos[b]
			}
			got, err := st.Split(lo, hi, k)
			if err != nil {
				t.Fatal(err)
			}
			sizes := checkSplit(t, "Stored", model, lo, hi, k, got, false)
			c := 0
			for _, n := range sizes {
				c += n
			}
			for _, n := range sizes {
				worst = max(worst, float64(n)*float64(len(sizes))/float64(c))
			}
		}
	}
	if worst > 2.5 {
		t.Fatalf("largest Split part is %.2f times the ideal", worst)
	}
	t.Logf("largest Split part: %.2f times the ideal", worst)
}

// loadCanonical fills kv with n random entries by writing the canonical layout directly
// (fast set-up for large tests and benchmarks) and records them in model.
func loadCanonical(kv *orderedKV, prefix []byte, o Ordering, nbits int, model *naiveIndex, g ixGen, n int) {
	for len(model.m) < n {
		k := make([]byte, 8)
		binary.BigEndian.PutUint64(k, g.rng.Uint64())
		v := uint64(0)
		if o == VersionOrder {
			v = uint64(g.rng.IntN(n))
		}
		model.insert(g.entry(k, v))
	}
	for k, v := range canonicalStored(prefix, o, nbits, model) {
		kv.Set([]byte(k), []byte(v))
	}
}

// TestStoredInsertOrderIndependent checks that the stored bytes depend only on the set:
// inserting the same entries in two orders, with churn in one, gives identical KVs.
func TestStoredInsertOrderIndependent(t *testing.T) {
	g := ixGen{rng: rand.New(rand.NewPCG(7, 7)), o: VersionOrder}
	var es []Entry
	for range 600 {
		es = append(es, g.entry(g.key(), g.version()))
	}
	a, b := newOrderedKV(false), newOrderedKV(false)
	sa, sb := newStoredBits(a, []byte{1}, VersionOrder, 2), newStoredBits(b, []byte{1}, VersionOrder, 2)
	for _, e := range es {
		if err := sa.Insert(e); err != nil {
			t.Fatal(err)
		}
	}
	for i := len(es) - 1; i >= 0; i-- {
		extra := g.entry(g.key(), 99)
		if err := sb.Insert(extra); err != nil {
			t.Fatal(err)
		}
		if err := sb.Insert(es[i]); err != nil {
			t.Fatal(err)
		}
		if err := sb.Remove(extra); err != nil {
			t.Fatal(err)
		}
	}
	// Later duplicates win in a, earlier ones in b: re-insert a's winners in b.
	seen := map[string]bool{}
	for i := len(es) - 1; i >= 0; i-- {
		p := string(es[i].Position(VersionOrder))
		if !seen[p] {
			seen[p] = true
			if err := sb.Insert(es[i]); err != nil {
				t.Fatal(err)
			}
		}
	}
	if d := diffDumps(b.dump(), a.dump()); d != "" {
		t.Fatalf("stores differ:\n%s", d)
	}
}

// TestIndexBulkVersion puts many entries at one version (a bulk load) and an empty key.
func TestIndexBulkVersion(t *testing.T) {
	model := newNaiveIndex(VersionOrder)
	kv := newOrderedKV(true)
	st := NewStored(kv, []byte("b"), VersionOrder)
	mem := NewMem(VersionOrder)
	g := ixGen{rng: rand.New(rand.NewPCG(3, 3)), o: VersionOrder}
	for i := range 3000 {
		k := []byte{byte(i >> 8), byte(i)}
		if i == 0 {
			k = nil
		}
		e := g.entry(k, 42)
		model.insert(e)
		for _, idx := range []Index{st, mem} {
			if err := idx.Insert(e); err != nil {
				t.Fatal(err)
			}
		}
	}
	if d := diffDumps(kv.dump(), canonicalStored([]byte("b"), VersionOrder, 4, model)); d != "" {
		t.Fatalf("layout:\n%s", d)
	}
	checkIndex(t, "Stored", st, model, g, false)
	checkIndex(t, "Mem", mem, model, g, true)
	if mem.Len() != 3000 {
		t.Fatalf("Mem.Len = %d", mem.Len())
	}
	r, err := st.Root()
	if err != nil || r != model.digest(nil, nil) || r.Count != 3000 {
		t.Fatalf("Root = %v, %v", r, err)
	}
}

// TestIndexErrors covers the contract's refusals.
func TestIndexErrors(t *testing.T) {
	for _, idx := range []Index{NewMem(KeyOrder), NewStored(newOrderedKV(false), nil, KeyOrder)} {
		if err := idx.Insert(Entry{Key: []byte("k"), Version: 3}); err == nil {
			t.Fatalf("%T: key-ordered insert with a version accepted", idx)
		}
		if err := idx.Insert(Entry{Key: []byte("k")}); err != nil {
			t.Fatal(err)
		}
		if _, err := idx.Digests([]byte("a"), []byte("z"), [][]byte{[]byte("m"), []byte("c")}); err == nil {
			t.Fatalf("%T: unsorted bounds accepted", idx)
		}
		if _, err := idx.Digests([]byte("b"), []byte("z"), [][]byte{[]byte("a")}); err == nil {
			t.Fatalf("%T: bound below lo accepted", idx)
		}
		if _, err := idx.Digests(nil, []byte("c"), [][]byte{nil}); err == nil {
			t.Fatalf("%T: nil bound accepted", idx)
		}
		ds, err := idx.Digests([]byte("z"), []byte("a"), nil)
		if err != nil || len(ds) != 1 || !ds[0].IsZero() {
			t.Fatalf("%T: inverted range: %v %v", idx, ds, err)
		}
		if err := idx.Remove(Entry{Key: []byte("absent")}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestStoredCountsReads checks Stats and that a narrow Digest reads O(levels) nodes.
func TestStoredCountsReads(t *testing.T) {
	g := ixGen{rng: rand.New(rand.NewPCG(9, 9)), o: VersionOrder}
	model := newNaiveIndex(VersionOrder)
	kv := newOrderedKV(false)
	loadCanonical(kv, nil, VersionOrder, 4, model, g, 50000)
	st := NewStored(kv, nil, VersionOrder)
	pos, _ := model.sorted()
	const q = 200
	for range q {
		i := g.rng.IntN(len(pos) - 10)
		if _, err := st.Digest(pos[i], pos[i+10]); err != nil {
			t.Fatal(err)
		}
	}
	s := st.Stats()
	per := float64(s.Entries+s.Nodes) / q
	t.Logf("narrow Digest over 50000 entries: %.1f reads per query (%d entries, %d nodes)", per, s.Entries, s.Nodes)
	if per > 150 {
		t.Fatalf("narrow Digest reads %.1f nodes per query", per)
	}
	st = NewStored(kv, nil, VersionOrder)
	if _, err := st.Split(nil, nil, 16); err != nil {
		t.Fatal(err)
	}
	s = st.Stats()
	t.Logf("Split(all, 16) over 50000 entries: %d entries, %d nodes read", s.Entries, s.Nodes)
	if s.Entries+s.Nodes > 3000 {
		t.Fatalf("Split read too much: %+v", s)
	}
	m := NewMem(VersionOrder)
	for _, e := range model.m {
		m.Insert(e)
	}
	m.Digest(pos[10], pos[20])
	n := 0
	m.Entries(pos[10], pos[20], func(Entry) bool { n++; return true })
	if s := m.Stats(); s.Entries != int64(n) || s.Nodes == 0 {
		t.Fatalf("Mem stats %+v after reading %d entries", s, n)
	}
}
