package sql

import (
	"context"
	"fmt"
	"testing"

	"github.com/reconcile-dev/reconcile/reconcile"
)

// maintainedPair returns two PostgreSQL tables of n identical rows with maintained indexes
// installed. They are kept between runs (named by n) and brought back in sync if a run
// was cut short; drop them with DROP TABLE rc_bench_idx_{src,dst}_N and uninstall first.
func maintainedPair(b *testing.B, pg *engine, n int) (src, dst *Table) {
	ctx := context.Background()
	names := [2]string{fmt.Sprintf("rc_bench_idx_src_%d", n), fmt.Sprintf("rc_bench_idx_dst_%d", n)}
	var tables [2]*Table
	for i, name := range names {
		var exists bool
		pg.db.QueryRow("SELECT to_regclass($1) IS NOT NULL", name).Scan(&exists)
		if !exists {
			pg.exec(b, "CREATE TABLE "+name+" (id bigint PRIMARY KEY, name text NOT NULL, price numeric(12,2), at timestamptz, ver bigint NOT NULL)",
				fmt.Sprintf("INSERT INTO %s SELECT g, 'name ' || g, (g %% 100000) / 100.0, timestamptz '2024-01-01' + g * interval '1 second', g FROM generate_series(1, %d) g", name, n))
		}
		tables[i] = openTable(b, pg.url(name, "version=ver&mode=maintained"))
		if installed, _ := tables[i].indexInstalled(ctx); !installed {
			if _, err := tables[i].InstallIndex(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	if _, err := reconcile.Run(ctx, tables[0], tables[1], reconcile.Options{Mode: reconcile.Mirror, Force: true}); err != nil {
		b.Fatal(err)
	}
	return tables[0], tables[1]
}

// BenchmarkMaintainedPostgres: two 1M-row PostgreSQL tables with maintained indexes;
// a diff of identical tables, and a diff after 1,000 keys were changed by plain SQL
// (which includes the catch-up of those writes).
func BenchmarkMaintainedPostgres(b *testing.B) {
	pg, n := benchPostgres(b)
	src, dst := maintainedPair(b, pg, n)
	ctx := context.Background()
	report := func(b *testing.B, rep *reconcile.Report, diffs int) {
		b.ReportMetric(float64(rep.Rounds), "rounds")
		b.ReportMetric(float64(rep.BytesSent+rep.BytesReceived), "bytes")
		if diffs > 0 {
			b.ReportMetric(float64(rep.EntriesReadSource)/float64(diffs), "src-entries/diff")
			b.ReportMetric(float64(rep.EntriesReadTarget)/float64(diffs), "dst-entries/diff")
			b.ReportMetric(float64(rep.NodesReadSource)/float64(diffs), "src-sums/diff")
			b.ReportMetric(float64(rep.NodesReadTarget)/float64(diffs), "dst-sums/diff")
		} else {
			b.ReportMetric(float64(rep.EntriesReadSource+rep.EntriesReadTarget), "entries")
			b.ReportMetric(float64(rep.NodesReadSource+rep.NodesReadTarget), "sums")
		}
	}
	b.Run("identical", func(b *testing.B) {
		var rep *reconcile.Report
		for b.Loop() {
			var err error
			if rep, err = reconcile.Run(ctx, src, dst, reconcile.Options{Mode: reconcile.Diff}); err != nil {
				b.Fatal(err)
			}
			if d := rep.OnlySource + rep.OnlyTarget + rep.Changed; d != 0 {
				b.Fatalf("%d differences between identical tables", d)
			}
		}
		report(b, rep, 0)
	})
	b.Run("1000-keys", func(b *testing.B) {
		dstName := fmt.Sprintf("rc_bench_idx_dst_%d", n)
		var rep *reconcile.Report
		for i := 0; b.Loop(); i++ {
			b.StopTimer()
			// 400 updates, 300 deletes, 300 inserts spread over the table.
			step := n / 1000
			off := 1 + i%step
			pg.exec(b,
				fmt.Sprintf("UPDATE %s SET name = 'changed', ver = ver + 1 WHERE id %% %d = %d AND id <= %d", dstName, step, off, 400*step),
				fmt.Sprintf("DELETE FROM %s WHERE id %% %d = %d AND id > %d AND id <= %d", dstName, step, off, 400*step, 700*step),
				fmt.Sprintf("INSERT INTO %s SELECT %d + g, 'new', 1, now(), 1 FROM generate_series(1, 300) g", dstName, 10*n+i*1000))
			b.StartTimer()
			var err error
			if rep, err = reconcile.Run(ctx, src, dst, reconcile.Options{Mode: reconcile.Diff}); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if d := rep.OnlySource + rep.OnlyTarget + rep.Changed; d != 1000 {
				b.Fatalf("%d differences, want 1000", d)
			}
			if _, err := reconcile.Run(ctx, src, dst, reconcile.Options{Mode: reconcile.Mirror, Force: true}); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		report(b, rep, 1000)
	})
}

// BenchmarkCatchUpPurgePostgres: a maintained table of n rows (RECONCILE_BENCH_ROWS)
// purged of 90% of them by one DELETE; the timed part is the catch-up of those logged
// deletes that the next session runs. Reported per logged write. Catch-ups that deleted
// log rows up to the highest number read, then read from the start again, ran past every
// row deleted before in the same transaction: 900,000 deletes in 1M rows took 29.1 s
// (32.4 µs a write), 11.4 s (12.7 µs) once each step reads past the last number it read
// (RECONCILE_BENCH_SQL=1 RECONCILE_BENCH_ROWS=1000000 go test ./adapters/sql -run '^$'
// -bench CatchUpPurge -benchtime 1x, 2026-12-04, before and after).
func BenchmarkCatchUpPurgePostgres(b *testing.B) {
	pg, n := benchPostgres(b)
	ctx := context.Background()
	purged := n - n/10
	for b.Loop() {
		b.StopTimer()
		name := pg.table(b)
		pg.exec(b, "CREATE TABLE "+name+" (id bigint PRIMARY KEY, name text NOT NULL, ver bigint NOT NULL)",
			fmt.Sprintf("INSERT INTO %s SELECT g, md5(g::text), g FROM generate_series(1, %d) g", name, n))
		tb := openTable(b, pg.url(name, "version=ver&mode=maintained"))
		if _, err := tb.InstallIndex(ctx); err != nil {
			b.Fatal(err)
		}
		pg.exec(b, "DELETE FROM "+name+" WHERE id % 10 <> 0")
		b.StartTimer()
		if got, err := tb.catchUp(ctx); err != nil || got != purged {
			b.Fatalf("caught up %d of %d deletes: %v", got, purged, err)
		}
		b.StopTimer()
		if err := tb.UninstallIndex(ctx); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*purged), "ns/write")
}
