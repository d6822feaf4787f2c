package sql

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/reconcile-dev/reconcile/reconcile"
)

// TestPartialCatchUp: a catch-up of a few writes to a large index takes the partial path
// (index_catchup.go). Each round deletes rows whose entries start chunks and superchunks
// (their chunks merge backward, across superchunks), updates some (moving entries
// between superchunks, same-version rewrites that change a start's hash in place) and
// inserts others (new starts split chunks); after every round verify finds the index
// equal to a rebuild, and sessions answer as a scan of the same table does.
func TestPartialCatchUp(t *testing.T) {
	ctx := context.Background()
	const rows = 16000
	for _, e := range engines(t) {
		t.Run(e.name, func(t *testing.T) {
			name := createPeople(t, e)
			insertPeople(t, e, name, randomPeople(rand.New(rand.NewPCG(5, 5)), rows, 1))
			maintained := openTable(t, e.url(name, "version=ver&mode=maintained"))
			scan := openTable(t, e.url(name, "version=ver&mode=scan"))
			maintained.partialEvery = 512 // a catch-up of up to 31 changes takes the partial path
			if _, err := maintained.InstallIndex(ctx); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { maintained.UninstallIndex(ctx) })
			n := maintained.indexNames()
			// ids of rows whose entries start a superchunk, or a chunk only.
			starts := func(super bool) []int64 {
				rs, err := e.db.Query("SELECT k, h FROM " + n.ent)
				if err != nil {
					t.Fatal(err)
				}
				defer rs.Close()
				var ids []int64
				for rs.Next() {
					var k, h []byte
					if err := rs.Scan(&k, &h); err != nil {
						t.Fatal(err)
					}
					if (super && h[0] == 0) || (!super && h[0] != 0 && h[0] < 0x10) {
						ds, err := DecodeKey(k, maintained.keyCols)
						if err != nil {
							t.Fatal(err)
						}
						ids = append(ids, ds[0].Int)
					}
				}
				return ids
			}
			rng := rand.New(rand.NewPCG(6, 6))
			next := int64(10 * rows)
			for round := range 10 {
				sup, chk := starts(true), starts(false)
				var stmts []string
				for i := 0; i < 1 && len(sup) > 0; i++ { // a superchunk start goes
					stmts = append(stmts, fmt.Sprintf("DELETE FROM %s WHERE id = %d", name, sup[rng.IntN(len(sup))]))
				}
				for i := 0; i < 2 && len(chk) > 0; i++ { // chunk starts go
					stmts = append(stmts, fmt.Sprintf("DELETE FROM %s WHERE id = %d", name, chk[rng.IntN(len(chk))]))
				}
				for range 2 { // a start's entry rewritten in place (same version)
					stmts = append(stmts, fmt.Sprintf("UPDATE %s SET name = 'same version %d' WHERE id = %d", name, rng.IntN(1e6), chk[rng.IntN(len(chk))]))
				}
				for range 2 { // entries move to the top of the version order
					stmts = append(stmts, fmt.Sprintf("UPDATE %s SET ver = ver + %d WHERE id = %d", name, 1000000, 1+rng.IntN(rows)))
				}
				for range 3 { // new rows, some of which start chunks
					next++
					stmts = append(stmts, fmt.Sprintf("INSERT INTO %s (id, name, score, at, ver) VALUES (%d, 'new', 1.5, '2024-01-01 00:00:00', %d)", name, next, rng.IntN(2e6)))
				}
				for _, s := range stmts {
					e.exec(t, s)
				}
				rep, err := reconcile.Run(ctx, scan, maintained, reconcile.Options{Mode: reconcile.Diff})
				if err != nil {
					t.Fatalf("round %d: %v", round, err)
				}
				if d := rep.OnlySource + rep.OnlyTarget + rep.Changed; d != 0 {
					t.Fatalf("round %d: the maintained index differs from a scan in %d keys", round, d)
				}
				if maintained.partialSteps.Load() <= int64(round) {
					t.Fatalf("round %d: the catch-up did not take the partial path", round)
				}
				mustVerify(t, maintained, fmt.Sprintf("round %d", round))
			}
		})
	}
}
