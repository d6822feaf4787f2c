package badger

import (
	"errors"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	bdg "github.com/dgraph-io/badger/v4"
)

// The write benchmarks share one workload: a bulk load of benchRows rows with random
// 16-byte keys and 100-byte values, all at one version, into a fresh store. Each reports
// ns/row (wall) and cpu-ns/row (user+system time of the whole process, Badger's
// background work included), which is steadier than wall time on a shared machine.
//
//	go test -run '^$' -bench 'BenchmarkWrite' -benchtime 5x ./adapters/badger
const benchRows = 50000

func benchData() (keys, values [][]byte) {
	rng := rand.New(rand.NewPCG(1, 1))
	keys, values = make([][]byte, benchRows), make([][]byte, benchRows)
	for i := range keys {
		keys[i] = make([]byte, 16)
		values[i] = make([]byte, 100)
		for j := range keys[i] {
			keys[i][j] = byte(rng.IntN(256))
		}
		for j := range values[i] {
			values[i][j] = byte(rng.IntN(256))
		}
	}
	return keys, values
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchWrite runs load on a fresh directory per iteration, timing load only.
func benchWrite(b *testing.B, load func(dir string) (closer func(), err error)) {
	var cpu time.Duration
	for b.Loop() {
		b.StopTimer()
		dir := b.TempDir()
		b.StartTimer()
		c0 := cpuTime()
		closer, err := load(dir)
		cpu += cpuTime() - c0
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		closer()
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchRows), "ns/row")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*benchRows), "cpu-ns/row")
}

// BenchmarkWriteIndexed loads the rows through Store.Write: row records and index
// entries (no expiry keys here), in as few transactions as fit, all at one version (a
// bulk load: index positions in random order). Opening the store is not timed.
func BenchmarkWriteIndexed(b *testing.B) { benchIndexed(b, func(int) uint64 { return 42 }) }

// BenchmarkWriteIndexedAppend is BenchmarkWriteIndexed with a new version per row, as a
// replica applying a source's changes in order sees them: index positions ascend.
func BenchmarkWriteIndexedAppend(b *testing.B) {
	benchIndexed(b, func(i int) uint64 { return uint64(1000 + i) })
}

func benchIndexed(b *testing.B, version func(i int) uint64) {
	keys, values := benchData()
	var s *Store
	benchWrite(b, func(dir string) (func(), error) {
		b.StopTimer()
		var err error
		if s, err = Open(dir, Options{Create: true}); err != nil {
			return nil, err
		}
		b.StartTimer()
		err = s.Write(func(w *Writer) error {
			for i := range keys {
				if err := w.Put(keys[i], values[i], version(i), 0); err != nil {
					return err
				}
			}
			return nil
		})
		return func() { s.Close() }, err
	})
}

func openPlain(b *testing.B, dir string) *bdg.DB {
	b.StopTimer()
	defer b.StartTimer()
	db, err := bdg.Open(bdg.DefaultOptions(dir).WithLogger(nil).WithDetectConflicts(false))
	if err != nil {
		b.Fatal(err)
	}
	return db
}

// BenchmarkWritePlain writes the same rows as plain Badger keys and values through a
// WriteBatch (which commits asynchronously, several transactions in flight) into a DB
// opened with the options Open uses: the floor Write is measured against.
func BenchmarkWritePlain(b *testing.B) {
	keys, values := benchData()
	benchWrite(b, func(dir string) (func(), error) {
		db := openPlain(b, dir)
		wb := db.NewWriteBatch()
		for i := range keys {
			if err := wb.Set(append([]byte{prefixRow}, keys[i]...), values[i]); err != nil {
				return nil, err
			}
		}
		return func() { db.Close() }, wb.Flush()
	})
}

// BenchmarkWritePlainTxn writes the same rows as plain keys and values in transactions
// filled until Badger says bdg.ErrTxnTooBig and committed synchronously, as Write does.
func BenchmarkWritePlainTxn(b *testing.B) {
	keys, values := benchData()
	benchWrite(b, func(dir string) (func(), error) {
		db := openPlain(b, dir)
		closer := func() { db.Close() }
		txn := db.NewTransaction(true)
		defer func() { txn.Discard() }()
		for i := range keys {
			e := bdg.NewEntry(append([]byte{prefixRow}, keys[i]...), values[i])
			err := txn.SetEntry(e)
			if errors.Is(err, bdg.ErrTxnTooBig) {
				if err = txn.Commit(); err != nil {
					return closer, err
				}
				txn = db.NewTransaction(true)
				err = txn.SetEntry(e)
			}
			if err != nil {
				return closer, err
			}
		}
		return closer, txn.Commit()
	})
}
