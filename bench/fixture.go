package bench

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/reconcile-dev/reconcile/adapters/badger"
	"github.com/reconcile-dev/reconcile/merkle"
	"github.com/reconcile-dev/reconcile/reconcile"
)

// Fixture is a pair of Badger stores on disk: the source holds History, the target holds
// History with Drift applied. Fixtures are cached under Dir by a hash of their parameters
// and rebuilt when the parameters change.
type Fixture struct {
	Dir     string
	History History
	Drift   Drift
	// Bulk builds the source from the history's final rows instead of replaying every
	// write through the index: the generator replays the history in memory, and the live
	// rows are then written in version order. The index is a function of the entries alone
	// (adapters/badger tests rebuild it and compare), so sessions see the same index, read
	// the same entries and send the same bytes; only the store's history differs (no
	// deleted row ever reached it). Replaying 35M writes for a 10M-row history takes hours
	// on a small machine; a bulk build takes minutes. Bulk sources are cached apart.
	Bulk bool
}

// FixtureInfo is what Build reports about a fixture.
type FixtureInfo struct {
	Source, Target string
	// Truth is the file (ReadTruth) of the keys that differ between source and target.
	Truth        string
	History      Stats
	Drift        DriftStats
	BuildSeconds float64
	Cached       bool
}

// Build returns the fixture's store paths, building what is not cached. The source is
// cached by the history's parameters (and the store format) alone, so fixtures that
// differ only in drift share it; each target is a copy of the source with its drift
// applied.
func (f Fixture) Build() (FixtureInfo, error) {
	// Stores of an older format are read, not rebuilt, by Badger endpoints; fixtures are
	// rebuilt so that the benchmarks measure what a store written now holds.
	srcDir := filepath.Join(f.Dir, fmt.Sprintf("h-%s-f%d", paramHash(f.History), badger.StoreFormat))
	if f.Bulk {
		srcDir += "-bulk"
	}
	dir := filepath.Join(srcDir, "d-"+paramHash(f.Drift))
	paths := FixtureInfo{Source: filepath.Join(srcDir, "source"), Target: filepath.Join(dir, "target"), Truth: filepath.Join(dir, "truth.bin")}
	info := paths
	meta := filepath.Join(dir, "fixture.json")
	if b, err := os.ReadFile(meta); err == nil && json.Unmarshal(b, &info) == nil {
		// The stores are where the cache is now, wherever they were built (a moved cache).
		info.Source, info.Target, info.Truth = paths.Source, paths.Target, paths.Truth
		// Targets built before truth files existed are rebuilt (the source is kept).
		if _, err := os.Stat(info.Truth); err == nil {
			info.Cached = true
			return info, nil
		}
	}
	unlock, err := lockCache(f.Dir)
	if err != nil {
		return info, err
	}
	defer unlock()
	start := time.Now()
	srcMeta := filepath.Join(srcDir, "source.json")
	if b, err := os.ReadFile(srcMeta); err != nil || json.Unmarshal(b, &info.History) != nil {
		if err := os.RemoveAll(srcDir); err != nil {
			return info, fmt.Errorf("build fixture: %w", err)
		}
		if err := os.MkdirAll(srcDir, 0o755); err != nil {
			return info, fmt.Errorf("build fixture: %w", err)
		}
		write := func(w *badger.Writer) error {
			st, err := f.History.Generate(w)
			info.History = st
			return err
		}
		if f.Bulk {
			final := FinalRows{}
			st, err := f.History.Generate(final)
			if err != nil {
				return info, err
			}
			info.History = st
			write = func(w *badger.Writer) error { return final.WriteTo(w) }
		}
		if err := writeStore(info.Source, write); err != nil {
			return info, err
		}
		b, _ := json.Marshal(info.History)
		if err := os.WriteFile(srcMeta, b, 0o644); err != nil {
			return info, fmt.Errorf("build fixture: %w", err)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return info, fmt.Errorf("build fixture: %w", err)
	}
	if err := CopyDir(info.Source, info.Target); err != nil {
		return info, fmt.Errorf("build fixture: %w", err)
	}
	var truth Truth
	if err := writeStore(info.Target, func(w *badger.Writer) error {
		ds, t, err := f.History.ApplyDriftTruth(w, f.Drift)
		info.Drift, truth = ds, t
		return err
	}); err != nil {
		return info, err
	}
	if err := WriteTruth(info.Truth, truth); err != nil {
		return info, err
	}
	info.BuildSeconds = time.Since(start).Seconds()
	b, _ := json.MarshalIndent(info, "", "  ")
	return info, os.WriteFile(meta, b, 0o644)
}

// FinalRows is a Sink that keeps only each key's last write, in memory: a history's (or a
// drifted copy's) final rows. WriteTo writes them to a store: the rows, and so the index,
// that replaying the history would leave, without the writes of the rows it deleted
// (reconcile gen --bulk, reconcile demo, Fixture.Bulk).
type FinalRows map[string]finalRow

type finalRow struct {
	version   uint64
	expiresAt int64
	value     []byte
}

func (f FinalRows) Put(key, value []byte, version uint64, expiresAt int64) error {
	f[string(key)] = finalRow{version, expiresAt, value}
	return nil
}

func (f FinalRows) Delete(key []byte) error { delete(f, string(key)); return nil }

// WriteTo writes the rows to w in version order (then key order), as their history wrote
// them: a store's positions then ascend, which is the cheapest way to load its index.
func (f FinalRows) WriteTo(w Sink) error {
	type kr struct {
		key string
		finalRow
	}
	rows := make([]kr, 0, len(f))
	for k, r := range f {
		rows = append(rows, kr{k, r})
	}
	slices.SortFunc(rows, func(a, b kr) int {
		if c := cmp.Compare(a.version, b.version); c != 0 {
			return c
		}
		return strings.Compare(a.key, b.key)
	})
	for _, r := range rows {
		if err := w.Put([]byte(r.key), r.value, r.version, r.expiresAt); err != nil {
			return err
		}
	}
	return nil
}

// paramHash names a cache directory after parameters (and the layout version).
func paramHash(v any) string {
	b, _ := json.Marshal(struct {
		V int
		P any
	}{2, v})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:6])
}

func writeStore(path string, fn func(w *badger.Writer) error) error {
	s, err := badger.Open(path, badger.Options{Create: true, Ordering: merkle.VersionOrder})
	if err != nil {
		return err
	}
	if err := s.Write(fn); err != nil {
		s.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := s.Compact(); err != nil {
		s.Close()
		return err
	}
	return s.Close()
}

// CopyDir copies the regular files of src (one level, as a closed Badger directory has)
// into dst, which is created.
func CopyDir(src, dst string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		if err := copyFile(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// ScanAll reads every entry of ep's snapshot once, in pages, and returns how many: the
// floor any tool that compares whole copies pays, and the baseline the session is
// measured against.
func ScanAll(ctx context.Context, ep reconcile.Endpoint, now int64) (int, error) {
	snap, err := ep.Open(ctx, now)
	if err != nil {
		return 0, err
	}
	defer snap.Close()
	o := snap.Info().Ordering
	var lo []byte
	n := 0
	for {
		es, err := snap.Entries(ctx, lo, nil, 65536)
		if err != nil {
			return n, err
		}
		n += len(es)
		if len(es) < 65536 {
			return n, nil
		}
		lo = append(es[len(es)-1].Position(o), 0)
	}
}
