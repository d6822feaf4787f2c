package sql

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/reconcile-dev/reconcile/merkle"
	"github.com/reconcile-dev/reconcile/reconcile"
)

// TestIndexListings: the maintained snapshot lists exactly what a scan of the same table
// lists, over random ranges and limits, whether the ranges were read ahead (Prefetch) or
// not, and a range read ahead is listed without another read.
func TestIndexListings(t *testing.T) {
	ctx := context.Background()
	for _, e := range engines(t) {
		t.Run(e.name, func(t *testing.T) {
			// Enough rows for more superchunks than a snapshot reads one by one
			// (lazySupers), a fifth of them expired at now.
			name := e.table(t)
			e.exec(t, "CREATE TABLE "+name+" (id bigint PRIMARY KEY, v "+ddl(e, "text", "varchar(100)", "text")+", ver bigint NOT NULL, exp bigint NOT NULL)")
			const rows, now = 8000, int64(1e18)
			rng := rand.New(rand.NewPCG(5, 5))
			tx, err := e.db.Begin()
			if err != nil {
				t.Fatal(err)
			}
			for i := range rows {
				exp := int64(0)
				if rng.IntN(5) == 0 {
					exp = now - 1 - rng.Int64N(1e12)
				} else if rng.IntN(4) == 0 {
					exp = now + 1 + rng.Int64N(1e12)
				}
				q := "INSERT INTO " + name + " (id, v, ver, exp) VALUES (?, ?, ?, ?)"
				if e.name == "postgres" {
					q = "INSERT INTO " + name + " (id, v, ver, exp) VALUES ($1, $2, $3, $4)"
				}
				if _, err := tx.Exec(q, i, fmt.Sprint("value ", rng.IntN(1e6)), 1+rng.IntN(3*rows), exp); err != nil {
					t.Fatal(err)
				}
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			maintained := openTable(t, e.url(name, "version=ver&expires=exp&mode=maintained"))
			scan := openTable(t, e.url(name, "version=ver&expires=exp&mode=scan"))
			if _, err := maintained.InstallIndex(ctx); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { maintained.UninstallIndex(ctx) })
			sc, err := scan.Open(ctx, now)
			if err != nil {
				t.Fatal(err)
			}
			defer sc.Close()
			all, err := sc.Entries(ctx, nil, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			o := sc.Info().Ordering
			pos := make([][]byte, len(all))
			for i, en := range all {
				pos[i] = en.Position(o)
			}
			// want lists the scan's entries of [lo, hi), at most limit (0: all).
			want := func(lo, hi []byte, limit int) []merkle.Entry {
				i, j := 0, len(all)
				if lo != nil {
					i, _ = slices.BinarySearchFunc(pos, lo, bytes.Compare)
				}
				if hi != nil {
					j, _ = slices.BinarySearchFunc(pos, hi, bytes.Compare)
				}
				if j < i {
					j = i
				}
				if limit > 0 && j-i > limit {
					j = i + limit
				}
				return all[i:j]
			}
			point := func() []byte {
				switch rng.IntN(8) {
				case 0:
					return nil
				case 1: // between two entries
					return append(slices.Clone(pos[rng.IntN(len(pos))]), 0)
				}
				return pos[rng.IntN(len(pos))]
			}
			randRange := func() reconcile.Range {
				lo := point()
				if lo == nil || rng.IntN(3) > 0 { // mostly short ranges, as a round lists
					i, _ := slices.BinarySearchFunc(pos, lo, bytes.Compare)
					if j := i + rng.IntN(60); j < len(pos) {
						return reconcile.Range{Lo: lo, Hi: pos[j]}
					}
					return reconcile.Range{Lo: lo}
				}
				hi := point()
				if hi != nil && bytes.Compare(hi, lo) < 0 {
					lo, hi = hi, lo
				}
				return reconcile.Range{Lo: lo, Hi: hi}
			}
			check := func(snap reconcile.Snapshot, r reconcile.Range, limit int) {
				t.Helper()
				got, err := snap.Entries(ctx, r.Lo, r.Hi, limit)
				if err != nil {
					t.Fatal(err)
				}
				if w := want(r.Lo, r.Hi, limit); !slices.EqualFunc(got, w, sameEntry) {
					t.Fatalf("Entries(%x, %x, %d): %d entries, a scan lists %d", r.Lo, r.Hi, limit, len(got), len(w))
				}
				var hashed []merkle.Entry
				err = snap.(reconcile.HashedEntries).EachHashed(ctx, r.Lo, r.Hi, func(en merkle.Entry, h merkle.Hash) bool {
					if h != en.Hash() {
						t.Fatalf("EachHashed: entry %x with a wrong hash", en.Key)
					}
					hashed = append(hashed, en)
					return true
				})
				if err != nil {
					t.Fatal(err)
				}
				if w := want(r.Lo, r.Hi, 0); !slices.EqualFunc(hashed, w, sameEntry) {
					t.Fatalf("EachHashed(%x, %x): %d entries, a scan lists %d", r.Lo, r.Hi, len(hashed), len(w))
				}
			}
			// Digests of random cuts (they read chunk sums, all of them past lazySupers
			// superchunks, less the expired entries) equal the scan's.
			snap, err := maintained.Open(ctx, now)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := snap.Info().Root, sc.Info().Root; got != want {
				t.Fatalf("root %d entries, a scan's %d", got.Count, want.Count)
			}
			for range 200 {
				r := randRange()
				var bounds [][]byte
				for range rng.IntN(4) {
					if p := point(); p != nil && (r.Lo == nil || bytes.Compare(p, r.Lo) > 0) && (r.Hi == nil || bytes.Compare(p, r.Hi) < 0) &&
						(len(bounds) == 0 || bytes.Compare(p, bounds[len(bounds)-1]) > 0) {
						bounds = append(bounds, p)
					}
				}
				got, err := snap.Digests(ctx, r.Lo, r.Hi, bounds)
				if err != nil {
					t.Fatal(err)
				}
				want, err := sc.Digests(ctx, r.Lo, r.Hi, bounds)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(got, want) {
					t.Fatalf("Digests(%x, %x, %d bounds) differ from a scan's", r.Lo, r.Hi, len(bounds))
				}
			}
			snap.Close()

			for trial := range 30 {
				snap, err := maintained.Open(ctx, now)
				if err != nil {
					t.Fatal(err)
				}
				var ahead []reconcile.Range
				if trial%3 > 0 {
					for range 1 + rng.IntN(20) {
						ahead = append(ahead, randRange())
					}
					slices.SortFunc(ahead, func(a, b reconcile.Range) int {
						if a.Lo == nil || b.Lo == nil {
							return bytes.Compare(a.Lo, b.Lo) // nil first
						}
						return bytes.Compare(a.Lo, b.Lo)
					})
					if err := snap.(reconcile.Prefetcher).Prefetch(ctx, ahead); err != nil {
						t.Fatal(err)
					}
					read := snap.ReadStats().Entries
					for _, r := range ahead {
						check(snap, r, 0)
					}
					if n := snap.ReadStats().Entries; n != read {
						t.Fatalf("listing %d ranges read ahead read %d more entries", len(ahead), n-read)
					}
				}
				for range 10 {
					limit := 0
					if rng.IntN(3) == 0 {
						limit = 1 + rng.IntN(100)
					}
					check(snap, randRange(), limit)
				}
				snap.Close()
			}
		})
	}
}

func sameEntry(a, b merkle.Entry) bool { return a.Hash() == b.Hash() && bytes.Equal(a.Key, b.Key) }
