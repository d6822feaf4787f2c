package merkle

import (
	"encoding/hex"
	"encoding/json"
	"flag"
	"math"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/zeebo/blake3"
)

// go test ./merkle -run TestGoldenVectors -update rewrites testdata/entries.json from the
// code. Do that only for a deliberate protocol change: the file pins DESIGN §2's bytes.
var updateGolden = flag.Bool("update", false, "rewrite merkle/testdata golden files")

const goldenPath = "testdata/entries.json"

type goldenEntry struct {
	Name      string `json:"name"`
	Key       string `json:"key_hex"`
	Version   string `json:"version"`
	ExpiresAt string `json:"expires_at"`
	Flags     byte   `json:"flags"`
	Value     string `json:"value_hex"`
	ValueHash string `json:"value_hash"`
	EntryHash string `json:"entry_hash"`
	// Position in version order: be64(version) || key.
	Position string `json:"version_position_hex"`
}

type goldenDigest struct {
	Count       string `json:"count"`
	Sum         string `json:"sum_le_hex"`
	Binary      string `json:"marshal_binary_hex"`
	Fingerprint string `json:"fingerprint_hex"`
}

type goldenFile struct {
	Comment  string        `json:"comment"`
	Entries  []goldenEntry `json:"entries"`
	All      goldenDigest  `json:"digest_all"`         // Add of every entry
	SubFirst goldenDigest  `json:"digest_all_minus_0"` // digest_all Sub entries[0]
	Empty    goldenDigest  `json:"digest_empty"`
	// Sub of entries[1] from the empty digest: wraps around 2^256 and 2^64.
	Negative goldenDigest `json:"digest_empty_minus_1"`
}

// goldenInputs are the entries the vectors cover.
func goldenInputs() []struct {
	name  string
	e     Entry
	value []byte
} {
	long := make([]byte, 300) // uvarint length takes two bytes
	for i := range long {
		long[i] = byte(i % 251)
	}
	type in = struct {
		name  string
		e     Entry
		value []byte
	}
	return []in{
		{"empty key, empty value", Entry{Key: []byte{}, Version: 1}, []byte{}},
		{"binary key, version 0", Entry{Key: []byte{0x00, 0xFF, 0x01, 0x80}, Version: 0}, []byte{0x00, 0x01}},
		{"long key", Entry{Key: long, Version: 12345}, []byte("hello")},
		{"expiry", Entry{Key: []byte("session:1"), Version: 1700000000000000000, ExpiresAt: 1700000600000000000}, []byte(`{"user":7}`)},
		{"tombstone", Entry{Key: []byte("deleted"), Version: 99, Flags: FlagTombstone}, []byte{}},
		{"max version, max expiry", Entry{Key: []byte("max"), Version: math.MaxUint64, ExpiresAt: math.MaxInt64}, []byte("v")},
	}
}

func goldenDigestOf(d Digest) goldenDigest {
	fp := d.Fingerprint()
	return goldenDigest{
		Count:       strconv.FormatUint(d.Count, 10),
		Sum:         hex.EncodeToString(d.Sum[:]),
		Binary:      hex.EncodeToString(d.MarshalBinary()),
		Fingerprint: hex.EncodeToString(fp[:]),
	}
}

// computeGolden builds the vectors from the package's code.
func computeGolden() goldenFile {
	g := goldenFile{Comment: "DESIGN §2 golden vectors: EntryHash, Digest (Add, Sub, MarshalBinary), " +
		"16-byte Fingerprint. Any change here is a protocol version change."}
	var all Digest
	for _, in := range goldenInputs() {
		e := in.e
		e.ValueHash = ValueHash(in.value)
		h := e.Hash()
		g.Entries = append(g.Entries, goldenEntry{
			Name:      in.name,
			Key:       hex.EncodeToString(e.Key),
			Version:   strconv.FormatUint(e.Version, 10),
			ExpiresAt: strconv.FormatInt(e.ExpiresAt, 10),
			Flags:     e.Flags,
			Value:     hex.EncodeToString(in.value),
			ValueHash: hex.EncodeToString(e.ValueHash[:]),
			EntryHash: hex.EncodeToString(h[:]),
			Position:  hex.EncodeToString(e.Position(VersionOrder)),
		})
		all = all.Add(e.Digest())
	}
	first := goldenInputs()[0].e
	first.ValueHash = ValueHash(goldenInputs()[0].value)
	second := goldenInputs()[1].e
	second.ValueHash = ValueHash(goldenInputs()[1].value)
	g.All = goldenDigestOf(all)
	g.SubFirst = goldenDigestOf(all.Sub(first.Digest()))
	g.Empty = goldenDigestOf(Digest{})
	g.Negative = goldenDigestOf(Digest{}.Sub(second.Digest()))
	return g
}

func TestGoldenVectors(t *testing.T) {
	got := computeGolden()
	if *updateGolden {
		b, err := json.MarshalIndent(got, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(goldenPath), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(goldenPath, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatal(err)
	}
	var want goldenFile
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	if len(want.Entries) != len(got.Entries) {
		t.Fatalf("%d golden entries, code gives %d", len(want.Entries), len(got.Entries))
	}
	for i := range want.Entries {
		if want.Entries[i] != got.Entries[i] {
			t.Errorf("entry %d:\n got %+v\nwant %+v", i, got.Entries[i], want.Entries[i])
		}
	}
	for _, c := range []struct {
		name      string
		got, want goldenDigest
	}{{"all", got.All, want.All}, {"all-first", got.SubFirst, want.SubFirst},
		{"empty", got.Empty, want.Empty}, {"empty-second", got.Negative, want.Negative}} {
		if c.got != c.want {
			t.Errorf("digest %s:\n got %+v\nwant %+v", c.name, c.got, c.want)
		}
	}
	checkGoldenIndependently(t, want)
}

// checkGoldenIndependently recomputes the file's values from DESIGN §2's text alone, with
// blake3 and math/big directly, so that the file (and so the code) matches the document.
func checkGoldenIndependently(t *testing.T, g goldenFile) {
	mod := new(big.Int).Lsh(big.NewInt(1), 256)
	sum := new(big.Int)
	var hashes [][]byte
	for _, ge := range g.Entries {
		key, _ := hex.DecodeString(ge.Key)
		value, _ := hex.DecodeString(ge.Value)
		version, err := strconv.ParseUint(ge.Version, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		exp, err := strconv.ParseInt(ge.ExpiresAt, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		vh := blake3.Sum256(value)
		if hex.EncodeToString(vh[:]) != ge.ValueHash {
			t.Errorf("%s: value hash %x, file says %s", ge.Name, vh, ge.ValueHash)
		}
		// "reconcile/entry/v1" || uvarint(len(Key)) || Key || be64(Version) ||
		// be64(ExpiresAt) || flags || ValueHash
		msg := []byte("reconcile/entry/v1")
		for n := uint64(len(key)); ; n >>= 7 {
			if n < 0x80 {
				msg = append(msg, byte(n))
				break
			}
			msg = append(msg, byte(n)|0x80)
		}
		msg = append(msg, key...)
		for i := 7; i >= 0; i-- {
			msg = append(msg, byte(version>>(8*i)))
		}
		for i := 7; i >= 0; i-- {
			msg = append(msg, byte(uint64(exp)>>(8*i)))
		}
		msg = append(msg, ge.Flags)
		msg = append(msg, vh[:]...)
		eh := blake3.Sum256(msg)
		if hex.EncodeToString(eh[:]) != ge.EntryHash {
			t.Errorf("%s: independent EntryHash %x, file says %s", ge.Name, eh, ge.EntryHash)
		}
		var pos []byte // be64(Version) || Key
		for i := 7; i >= 0; i-- {
			pos = append(pos, byte(version>>(8*i)))
		}
		pos = append(pos, key...)
		if hex.EncodeToString(pos) != ge.Position {
			t.Errorf("%s: position %x, file says %s", ge.Name, pos, ge.Position)
		}
		hashes = append(hashes, eh[:])
		sum.Add(sum, leInt(eh[:]))
	}
	sum.Mod(sum, mod)
	checkGoldenDigest(t, "all", g.All, uint64(len(hashes)), sum)
	rest := new(big.Int).Sub(sum, leInt(hashes[0]))
	checkGoldenDigest(t, "all-first", g.SubFirst, uint64(len(hashes)-1), rest.Mod(rest, mod))
	checkGoldenDigest(t, "empty", g.Empty, 0, new(big.Int))
	neg := new(big.Int).Sub(new(big.Int), leInt(hashes[1]))
	checkGoldenDigest(t, "empty-second", g.Negative, math.MaxUint64, neg.Mod(neg, mod))
}

// leInt reads b as a little-endian unsigned integer.
func leInt(b []byte) *big.Int {
	r := make([]byte, len(b))
	for i := range b {
		r[len(b)-1-i] = b[i]
	}
	return new(big.Int).SetBytes(r)
}

// leBytes32 writes x (< 2^256) as 32 little-endian bytes.
func leBytes32(x *big.Int) []byte {
	be := x.FillBytes(make([]byte, 32))
	out := make([]byte, 32)
	for i := range be {
		out[31-i] = be[i]
	}
	return out
}

func checkGoldenDigest(t *testing.T, name string, g goldenDigest, count uint64, sum *big.Int) {
	t.Helper()
	s := leBytes32(sum)
	if g.Count != strconv.FormatUint(count, 10) || g.Sum != hex.EncodeToString(s) {
		t.Errorf("digest %s: independent (%d, %x), file says (%s, %s)", name, count, s, g.Count, g.Sum)
	}
	bin := make([]byte, 8, 40)
	for i := range 8 {
		bin[i] = byte(count >> (8 * i))
	}
	bin = append(bin, s...)
	if g.Binary != hex.EncodeToString(bin) {
		t.Errorf("digest %s: binary %x, file says %s", name, bin, g.Binary)
	}
	// Fingerprint = BLAKE3(Sum || le64(Count)) cut to 16 bytes.
	fp := blake3.Sum256(append(append([]byte{}, s...), bin[:8]...))
	if g.Fingerprint != hex.EncodeToString(fp[:16]) {
		t.Errorf("digest %s: fingerprint %x, file says %s", name, fp[:16], g.Fingerprint)
	}
}
