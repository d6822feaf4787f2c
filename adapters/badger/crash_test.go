package badger

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// TestKilledDuringFolds kills (SIGKILL) a process that writes through a store while its
// background folder folds the index log, and large Writes update the index directly, at
// several moments; each time a writable Open recovers the store, and its index is equal
// to its rows: every fold transaction applies log records and deletes them atomically,
// and Badger replays only whole transactions.
func TestKilledDuringFolds(t *testing.T) {
	if path := os.Getenv("RECONCILE_TEST_FOLD_CRASH"); path != "" {
		seed, _ := strconv.ParseUint(os.Getenv("RECONCILE_TEST_FOLD_SEED"), 10, 64)
		crashingWriter(path, seed) // never returns
	}
	if testing.Short() {
		t.Skip("kills a writer process several times (seconds)")
	}
	dir := t.TempDir()
	for round, delay := range []time.Duration{700 * time.Millisecond, 1100 * time.Millisecond, 1500 * time.Millisecond} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKilledDuringFolds$")
		cmd.Env = append(os.Environ(), "RECONCILE_TEST_FOLD_CRASH="+dir, fmt.Sprintf("RECONCILE_TEST_FOLD_SEED=%d", round))
		must(t, cmd.Start())
		time.Sleep(delay)
		must(t, cmd.Process.Kill())
		_ = cmd.Wait() // killed: the error says so

		s, err := Open(dir, Options{})
		if err != nil {
			t.Fatalf("round %d: open after the kill: %v", round, err)
		}
		c, err := s.VerifyIndex(context.Background())
		if err != nil || !c.OK() {
			s.Close()
			t.Fatalf("round %d: VerifyIndex after the kill = %+v, %v", round, c, err)
		}
		if c.Rows == 0 {
			s.Close()
			t.Fatalf("round %d: the writer wrote nothing before it was killed", round)
		}
		checkRoot(t, s, 0)
		t.Logf("round %d: killed after %v; %d rows, index equal to them", round, delay, c.Rows)
		must(t, s.Close())
	}
}

// crashingWriter writes to the store at path until the process is killed: one-row
// updates, inserts and deletes (logged, folded in the background), and now and then a
// Write of 1,500 rows (which updates the index directly).
func crashingWriter(path string, seed uint64) {
	s, err := Open(path, Options{Create: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	rng := rand.New(rand.NewPCG(seed, 7))
	for i := 0; ; i++ {
		if i%3000 == 2999 {
			err = s.Write(func(w *Writer) error {
				for j := range 1500 {
					k := fmt.Appendf(nil, "big%05d", rng.IntN(20000))
					if err := w.Put(k, fmt.Appendf(nil, "v%d.%d", i, j), uint64(i), 0); err != nil {
						return err
					}
				}
				return nil
			})
		} else {
			k := fmt.Appendf(nil, "k%05d", rng.IntN(20000))
			if rng.IntN(8) == 0 {
				err = s.Delete(k)
			} else {
				err = s.Put(k, fmt.Appendf(nil, "v%d", i), uint64(i), 0)
			}
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
	}
}
