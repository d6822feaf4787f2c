package merkle

import (
	"encoding/binary"
	"math/rand/v2"
	"sync"
	"testing"
)

const benchN = 100_000

// benchEntry returns a distinct entry with an 8-byte random key.
func benchEntry(rng *rand.Rand, version uint64) Entry {
	e := Entry{Key: binary.BigEndian.AppendUint64(nil, rng.Uint64()), Version: version}
	binary.LittleEndian.PutUint64(e.ValueHash[:], rng.Uint64())
	return e
}

// BenchmarkMemInsert inserts entries into a growing Mem (EntryHash included).
func BenchmarkMemInsert(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	m := NewMem(VersionOrder)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if err := m.Insert(benchEntry(rng, uint64(i))); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStoredInsert inserts entries into a Stored over the in-memory test KV that
// already holds benchN entries (EntryHash included), a new Stored per 100 inserts as per
// transaction. It reports KV operations per insert.
func BenchmarkStoredInsert(b *testing.B) {
	rng := rand.New(rand.NewPCG(2, 2))
	kv := newOrderedKV(false)
	model := newNaiveIndex(VersionOrder)
	loadCanonical(kv, nil, VersionOrder, 4, model, ixGen{rng: rng, o: VersionOrder}, benchN)
	g0, i0, s0, d0 := kv.gets, kv.iterates, kv.sets, kv.deletes
	var st *Stored
	b.ReportAllocs()
	n := 0
	for i := 0; b.Loop(); i++ {
		if i%100 == 0 {
			st = NewStored(kv, nil, VersionOrder)
		}
		if err := st.Insert(benchEntry(rng, uint64(rng.IntN(benchN)))); err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.ReportMetric(float64(kv.gets-g0)/float64(n), "gets/op")
	b.ReportMetric(float64(kv.iterates-i0)/float64(n), "seeks/op")
	b.ReportMetric(float64(kv.sets+kv.deletes-s0-d0)/float64(n), "writes/op")
}

var benchStore struct {
	once sync.Once
	kv   *orderedKV
	pos  [][]byte
}

// benchStored returns a Stored over benchN entries (built once) and their positions.
func benchStored() (*orderedKV, [][]byte) {
	benchStore.once.Do(func() {
		rng := rand.New(rand.NewPCG(3, 3))
		benchStore.kv = newOrderedKV(false)
		model := newNaiveIndex(VersionOrder)
		loadCanonical(benchStore.kv, nil, VersionOrder, 4, model, ixGen{rng: rng, o: VersionOrder}, benchN)
		benchStore.pos, _ = model.sorted()
	})
	return benchStore.kv, benchStore.pos
}

func benchReads(b *testing.B, st *Stored, n int) {
	s := st.Stats()
	b.ReportMetric(float64(s.Nodes)/float64(n), "nodes/op")
	b.ReportMetric(float64(s.Entries)/float64(n), "entries/op")
}

// BenchmarkStoredDigest asks for the digest of random ranges of random width over benchN
// entries.
func BenchmarkStoredDigest(b *testing.B) {
	kv, pos := benchStored()
	rng := rand.New(rand.NewPCG(4, 4))
	st := NewStored(kv, nil, VersionOrder)
	n := 0
	for b.Loop() {
		i, j := rng.IntN(len(pos)), rng.IntN(len(pos))
		if i > j {
			i, j = j, i
		}
		if _, err := st.Digest(pos[i], pos[j]); err != nil {
			b.Fatal(err)
		}
		n++
	}
	benchReads(b, st, n)
}

// BenchmarkStoredSplit splits random ranges (at least 1/8 of the set) in 16 over benchN
// entries.
func BenchmarkStoredSplit(b *testing.B) {
	kv, pos := benchStored()
	rng := rand.New(rand.NewPCG(5, 5))
	st := NewStored(kv, nil, VersionOrder)
	n := 0
	for b.Loop() {
		i := rng.IntN(len(pos) * 7 / 8)
		j := i + len(pos)/8 + rng.IntN(len(pos)-i-len(pos)/8)
		if _, err := st.Split(pos[i], pos[j], 16); err != nil {
			b.Fatal(err)
		}
		n++
	}
	benchReads(b, st, n)
}

// BenchmarkStoredDigests is one descent round of the protocol on one range: the 16 parts
// of a random range cut by its own Split.
func BenchmarkStoredDigests(b *testing.B) {
	kv, pos := benchStored()
	rng := rand.New(rand.NewPCG(6, 6))
	st := NewStored(kv, nil, VersionOrder)
	type q struct {
		lo, hi []byte
		bounds [][]byte
	}
	var qs []q
	for range 64 {
		i := rng.IntN(len(pos) * 7 / 8)
		j := i + len(pos)/8 + rng.IntN(len(pos)-i-len(pos)/8)
		bs, err := st.Split(pos[i], pos[j], 16)
		if err != nil {
			b.Fatal(err)
		}
		qs = append(qs, q{pos[i], pos[j], bs})
	}
	st = NewStored(kv, nil, VersionOrder)
	n := 0
	for b.Loop() {
		c := qs[n%len(qs)]
		if _, err := st.Digests(c.lo, c.hi, c.bounds); err != nil {
			b.Fatal(err)
		}
		n++
	}
	benchReads(b, st, n)
}

// BenchmarkEntryHash: the hash every scanned row pays (a 9-byte key, the common case).
func BenchmarkEntryHash(b *testing.B) {
	key := []byte("key-00001")
	vh := ValueHash([]byte("value"))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		_ = EntryHash(key, uint64(i), 0, 0, vh)
	}
}

// BenchmarkValueHash: BLAKE3-256 of a 60-byte canonical row.
func BenchmarkValueHash(b *testing.B) {
	v := make([]byte, 60)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		_ = ValueHash(v)
	}
}

// BenchmarkBuildSorted builds the in-memory index a scan snapshot makes of 1M rows
// (8-byte keys in version order), collected the way a two-worker scan collects them:
// batches of 512 handed to the workers in turn, each worker's entries ascending.
func BenchmarkBuildSorted(b *testing.B) {
	const n, batch = 1_000_000, 512
	rng := rand.New(rand.NewPCG(1, 2))
	bs := []*SortedBuilder{NewSortedBuilder(VersionOrder), NewSortedBuilder(VersionOrder)}
	for i := 0; i < n; i++ {
		bs[(i/batch)%2].Add(benchEntry(rng, uint64(i+1)))
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if s := BuildSorted(VersionOrder, bs...); s.Len() != n {
			b.Fatal(s.Len())
		}
	}
}

// BenchmarkBuildSortedRandom is BuildSorted over 1M entries in no order at all (a table
// stored out of version order).
func BenchmarkBuildSortedRandom(b *testing.B) {
	const n = 1_000_000
	rng := rand.New(rand.NewPCG(1, 2))
	bs := []*SortedBuilder{NewSortedBuilder(VersionOrder), NewSortedBuilder(VersionOrder)}
	for i := 0; i < n; i++ {
		bs[i%2].Add(benchEntry(rng, rng.Uint64()))
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if s := BuildSorted(VersionOrder, bs...); s.Len() != n {
			b.Fatal(s.Len())
		}
	}
}

// BenchmarkFingerprint: the keyed fingerprint a session computes for every part it compares.
func BenchmarkFingerprint(b *testing.B) {
	k := NewKeyed([]byte("nonce"))
	var d Digest
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		d.Count = uint64(i)
		_ = k.Fingerprint(d, 4)
	}
}
