package bench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
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
// cached by the history's parameters alone, so fixtures that differ only in drift share
// it; each target is a copy of the source with its drift applied.
func (f Fixture) Build() (FixtureInfo, error) {
	srcDir := filepath.Join(f.Dir, "h-"+paramHash(f.History))
	dir := filepath.Join(srcDir, "d-"+paramHash(f.Drift))
	info := FixtureInfo{Source: filepath.Join(srcDir, "source"), Target: filepath.Join(dir, "target"), Truth: filepath.Join(dir, "truth.bin")}
	meta := filepath.Join(dir, "fixture.json")
	if b, err := os.ReadFile(meta); err == nil && json.Unmarshal(b, &info) == nil {
		// Targets built before truth files existed are rebuilt (the source is kept).
		if _, err := os.Stat(info.Truth); err == nil {
			info.Cached = true
			return info, nil
		}
	}
	start := time.Now()
	srcMeta := filepath.Join(srcDir, "source.json")
	if b, err := os.ReadFile(srcMeta); err != nil || json.Unmarshal(b, &info.History) != nil {
		if err := os.RemoveAll(srcDir); err != nil {
			return info, fmt.Errorf("build fixture: %w", err)
		}
		if err := os.MkdirAll(srcDir, 0o755); err != nil {
			return info, fmt.Errorf("build fixture: %w", err)
		}
		if err := writeStore(info.Source, func(w *badger.Writer) error {
			st, err := f.History.Generate(w)
			info.History = st
			return err
		}); err != nil {
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
