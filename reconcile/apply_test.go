package reconcile_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/reconcile-dev/reconcile/adapters/memory"
	"github.com/reconcile-dev/reconcile/merkle"
	"github.com/reconcile-dev/reconcile/reconcile"
)

func fill(s *memory.Store, from, to int, version uint64, size int) {
	for i := from; i < to; i++ {
		s.Put(reconcile.Row{Key: []byte(fmt.Sprintf("k%05d", i)), Version: version + uint64(i), Value: make([]byte, size)})
	}
}

func TestDeleteGuard(t *testing.T) {
	ctx := context.Background()
	src, dst := memory.New(merkle.VersionOrder), memory.New(merkle.VersionOrder)
	fill(src, 0, 80, 1, 8)
	fill(dst, 0, 100, 1, 8) // the target holds 20 rows the source lacks: 20% of it
	before, _ := reconcile.Root(ctx, dst, testNow)

	limit := func(s string) reconcile.DeleteLimit {
		l, err := reconcile.ParseDeleteLimit(s)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	for _, tc := range []struct {
		name string
		opts reconcile.Options
	}{
		{"default 10%", reconcile.Options{}},
		{"zero forbids deletes", reconcile.Options{MaxDelete: limit("0")}},
		{"absolute", reconcile.Options{MaxDelete: limit("19")}},
		{"dry run refuses too", reconcile.Options{DryRun: true}},
	} {
		tc.opts.Mode, tc.opts.Now = reconcile.Mirror, testNow
		_, err := reconcile.Run(ctx, src, dst, tc.opts)
		var ge *reconcile.DeleteGuardError
		if !errors.As(err, &ge) || !errors.Is(err, reconcile.ErrDeleteGuard) || ge.Deletes != 20 {
			t.Fatalf("%s: err %v, want a delete guard error for 20 deletes", tc.name, err)
		}
		after, _ := reconcile.Root(ctx, dst, testNow)
		if after.Root != before.Root {
			t.Fatalf("%s: a refused sync wrote to the target", tc.name)
		}
	}
	rep, err := reconcile.Run(ctx, src, dst, reconcile.Options{Mode: reconcile.Mirror, Now: testNow, MaxDelete: limit("20%")})
	if err != nil || rep.Deleted != 20 {
		t.Fatalf("20%% limit: err %v, deleted %d", err, rep.Deleted)
	}
	fill(dst, 100, 150, 1, 8)
	rep, err = reconcile.Run(ctx, src, dst, reconcile.Options{Mode: reconcile.Mirror, Now: testNow, Force: true})
	if err != nil || rep.Deleted != 50 {
		t.Fatalf("forced: err %v, deleted %d", err, rep.Deleted)
	}
}

func TestQuarantine(t *testing.T) {
	ctx := context.Background()
	src, dst := memory.New(merkle.VersionOrder), memory.New(merkle.VersionOrder)
	dst.MaxRowBytes = 100
	fill(src, 0, 500, 1, 10)
	src.Put(reconcile.Row{Key: []byte("poison"), Version: 7, Value: make([]byte, 1000)})
	rep, err := reconcile.Run(ctx, src, dst, reconcile.Options{Mode: reconcile.Mirror, Now: testNow, BatchRows: 64})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Quarantined != 1 || rep.Upserted != 500 || !rep.Partial() || rep.QuarantinedRows[0].Key != "poison" {
		t.Fatalf("quarantined %d %+v, upserted %d", rep.Quarantined, rep.QuarantinedRows, rep.Upserted)
	}
	if len(liveRows(dst, testNow)) != 500 {
		t.Fatalf("target holds %d rows, want the 500 good ones", len(liveRows(dst, testNow)))
	}

	// A run of 100 bad rows together (in key order) is quarantined row by row, and the
	// sync goes on past it.
	src, dst = memory.New(merkle.VersionOrder), memory.New(merkle.VersionOrder)
	dst.MaxRowBytes = 100
	fill(src, 0, 500, 1, 10)
	for i := 0; i < 100; i++ {
		src.Put(reconcile.Row{Key: []byte(fmt.Sprintf("k00250-%03d", i)), Version: 7, Value: make([]byte, 1000)})
	}
	rep, err = reconcile.Run(ctx, src, dst, reconcile.Options{Mode: reconcile.Mirror, Now: testNow, BatchRows: 64})
	if err != nil || rep.Quarantined != 100 || rep.Upserted != 500 {
		t.Fatalf("a run of 100 bad rows: err %v, quarantined %d, upserted %d", err, rep.Quarantined, rep.Upserted)
	}
}

// sendCounting counts, for each key, the Apply calls whose batch held it, and fails
// every batch holding the key failing with a plain error (not a RowRefusedError).
type sendCounting struct {
	*memory.Store
	sent    map[string]int
	failing string
}

func (c *sendCounting) Apply(ctx context.Context, now int64, cs []reconcile.Change) ([]reconcile.Outcome, error) {
	for _, ch := range cs {
		c.sent[string(ch.Key)]++
	}
	for _, ch := range cs {
		if string(ch.Key) == c.failing {
			return nil, errors.New("apply: a constraint refuses it")
		}
	}
	return c.Store.Apply(ctx, now, cs)
}

// TestRefusedRowSentOnce: a row the target refuses for what it is (RowRefusedError, here
// over its size limit) is quarantined the first time it is refused, and the rest of its
// batch sent again without it: it goes on the wire once, not in every halving of its
// batch and then Attempts times alone. A row failing with another error still gets
// those chances (a smaller batch, a second try may pass).
func TestRefusedRowSentOnce(t *testing.T) {
	src, mem := memory.New(merkle.VersionOrder), memory.New(merkle.VersionOrder)
	mem.MaxRowBytes = 100
	fill(src, 0, 500, 1, 10)
	src.Put(reconcile.Row{Key: []byte("k00200x"), Version: 7, Value: make([]byte, 1000)})
	dst := &sendCounting{Store: mem, sent: map[string]int{}, failing: "k00300"}
	rep, err := reconcile.Run(context.Background(), src, dst, reconcile.Options{Mode: reconcile.Mirror, Now: testNow, BatchRows: 64, MaxBatchRows: 64})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Quarantined != 2 || rep.Upserted != 499 {
		t.Fatalf("quarantined %d %+v, upserted %d", rep.Quarantined, rep.QuarantinedRows, rep.Upserted)
	}
	if n := dst.sent["k00200x"]; n != 1 {
		t.Errorf("the refused row was sent %d times, want once", n)
	}
	if n := dst.sent["k00300"]; n < 3+1 {
		t.Errorf("the row failing with a plain error was sent %d times, want its batch's halvings and 3 attempts alone", n)
	}
	if n := dst.sent["k00201"]; n != 2 {
		t.Errorf("a row of the refused row's batch was sent %d times, want twice (the batch again without the refused row)", n)
	}

	// A run of 1,000 refused rows among 5,000 shrinks the batches as a halving would: the
	// changes sent stay within twice the rows (sending the rest of the batch again once
	// per refused row sent two million).
	src, mem = memory.New(merkle.VersionOrder), memory.New(merkle.VersionOrder)
	mem.MaxRowBytes = 100
	fill(src, 0, 5000, 1, 10)
	for i := range 1000 {
		src.Put(reconcile.Row{Key: fmt.Appendf(nil, "k02500-%04d", i), Version: 7, Value: make([]byte, 1000)})
	}
	dst = &sendCounting{Store: mem, sent: map[string]int{}}
	rep, err = reconcile.Run(context.Background(), src, dst, reconcile.Options{Mode: reconcile.Mirror, Now: testNow})
	if err != nil || rep.Quarantined != 1000 || rep.Upserted != 5000 {
		t.Fatalf("a run of 1,000 refused rows: err %v, quarantined %d, upserted %d", err, rep.Quarantined, rep.Upserted)
	}
	sent := 0
	for _, n := range dst.sent {
		sent += n
	}
	if sent > 2*6000 {
		t.Errorf("a run of 1,000 refused rows among 5,000: %d changes sent, want at most 12,000", sent)
	}
}

// racing writes to one key of the target after the session's snapshot and before apply.
type racing struct {
	*memory.Store
	key []byte
}

func (r racing) Apply(ctx context.Context, now int64, cs []reconcile.Change) ([]reconcile.Outcome, error) {
	r.Store.Put(reconcile.Row{Key: r.key, Version: 999, Value: []byte("written meanwhile")})
	return r.Store.Apply(ctx, now, cs)
}

func TestRaced(t *testing.T) {
	ctx := context.Background()
	src, dst := memory.New(merkle.VersionOrder), memory.New(merkle.VersionOrder)
	fill(src, 0, 50, 1, 4)
	fill(dst, 0, 40, 1, 4)
	ep := racing{Store: dst, key: []byte("k00045")}
	rep, err := reconcile.Run(ctx, src, ep, reconcile.Options{Mode: reconcile.Mirror, Now: testNow})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Raced != 1 || rep.Upserted != 9 || !rep.Partial() {
		t.Fatalf("raced %d upserted %d", rep.Raced, rep.Upserted)
	}
	if got := liveRows(dst, testNow)["k00045"]; got.Version != 999 {
		t.Fatalf("the concurrent write was overwritten: version %d", got.Version)
	}
}

func TestSchemaMismatch(t *testing.T) {
	v, k := memory.New(merkle.VersionOrder), memory.New(merkle.KeyOrder)
	_, err := reconcile.Run(context.Background(), v, k, reconcile.Options{})
	if err == nil || !strings.Contains(err.Error(), "version order") || !strings.Contains(err.Error(), "key order") {
		t.Fatalf("sessions between different orderings must fail, naming both: %v", err)
	}
	peer := reconcile.NewLocal(k)
	defer peer.Close()
	if _, err := reconcile.RunFromPeer(context.Background(), peer, v, reconcile.Options{}); err == nil {
		t.Fatal("pulled sessions between different orderings must fail")
	}
}

// countingRows counts the rows a session reads from an endpoint's snapshots.
type countingRows struct {
	*memory.Store
	read *int
}

func (c countingRows) Open(ctx context.Context, now int64) (reconcile.Snapshot, error) {
	snap, err := c.Store.Open(ctx, now)
	return countingSnap{snap, c.read}, err
}

type countingSnap struct {
	reconcile.Snapshot
	read *int
}

func (c countingSnap) Rows(ctx context.Context, keys [][]byte) ([]reconcile.Row, error) {
	*c.read += len(keys)
	return c.Snapshot.Rows(ctx, keys)
}

// TestBatchBytesBoundsReads: rows large against BatchBytes are sent a few a batch, and
// the batches do not keep growing in rows read (each read is at most twice the last batch
// sent), in either direction.
func TestBatchBytesBoundsReads(t *testing.T) {
	ctx := context.Background()
	for _, fromPeer := range []bool{false, true} {
		read := 0
		src := memory.New(merkle.VersionOrder)
		fill(src, 0, 300, 1, 1000)
		dst := memory.New(merkle.VersionOrder)
		opts := reconcile.Options{Mode: reconcile.Mirror, Now: testNow, BatchBytes: 2500, Force: true}
		var rep *reconcile.Report
		var err error
		if fromPeer {
			peer := reconcile.NewLocal(countingRows{src, &read})
			rep, err = reconcile.RunFromPeer(ctx, peer, dst, opts)
			peer.Close()
		} else {
			rep, err = reconcile.Run(ctx, countingRows{src, &read}, dst, opts)
		}
		if err != nil || rep.Upserted != 300 {
			t.Fatalf("from peer %v: %v, %d upserted", fromPeer, err, rep.Upserted)
		}
		if read > 2*300+256 {
			t.Fatalf("from peer %v: read %d rows to send 300 in batches of at most 2500 bytes", fromPeer, read)
		}
		// Pulled from a peer, the rows that cross the wire are those written, each once.
		if fromPeer && rep.ValueBytes != 300*1000 {
			t.Fatalf("pulled %d value bytes to write 300 rows of 1000", rep.ValueBytes)
		}
	}
}

// movingSource is a source whose rows move after its snapshot's index was read, as a SQL
// table's rows can between its maintained index's catch-up and its read snapshot: Rows
// answers moved's row for a key (nil: the row is gone).
type movingSource struct {
	*memory.Store
	moved map[string]*reconcile.Row
}

func (m movingSource) Open(ctx context.Context, now int64) (reconcile.Snapshot, error) {
	s, err := m.Store.Open(ctx, now)
	return movedRows{s, m.moved}, err
}

type movedRows struct {
	reconcile.Snapshot
	moved map[string]*reconcile.Row
}

func (m movedRows) Rows(ctx context.Context, keys [][]byte) ([]reconcile.Row, error) {
	rows, err := m.Snapshot.Rows(ctx, keys)
	for i, k := range keys {
		if r, ok := m.moved[string(k)]; ok && err == nil {
			rows[i] = reconcile.Row{}
			if r != nil {
				rows[i] = *r
			}
		}
	}
	return rows, err
}

// TestSourceRowMoved: a source row that reads unlike the entry the session found (newer,
// or gone) is skipped and counted raced, and the rest of the sync goes on; a sync failed
// on it ("vanished from the source snapshot").
func TestSourceRowMoved(t *testing.T) {
	ctx := context.Background()
	for _, batchRows := range []int{1, 4, 256} {
		src, dst := memory.New(merkle.VersionOrder), memory.New(merkle.VersionOrder)
		fill(src, 0, 50, 1, 8)
		newer := reconcile.Row{Key: []byte("k00003"), Version: 500, Value: []byte("newer")}
		moving := movingSource{src, map[string]*reconcile.Row{"k00003": &newer, "k00005": nil, "k00006": nil}}
		rep, err := reconcile.Run(ctx, moving, dst, reconcile.Options{Mode: reconcile.Mirror, Now: testNow, BatchRows: batchRows})
		if err != nil {
			t.Fatalf("batches of %d: %v", batchRows, err)
		}
		if rep.Raced != 3 || rep.Upserted != 47 || !rep.Partial() || rep.Diverged() {
			t.Fatalf("batches of %d: raced %d, upserted %d, partial %v", batchRows, rep.Raced, rep.Upserted, rep.Partial())
		}
		for _, k := range []string{"k00003", "k00005", "k00006"} {
			if rows := rowsOf(t, dst, k); rows[0].Key != nil {
				t.Fatalf("batches of %d: %s written: %+v", batchRows, k, rows[0])
			}
		}
	}
}

func rowsOf(t *testing.T, ep reconcile.Endpoint, keys ...string) []reconcile.Row {
	t.Helper()
	snap, err := ep.Open(context.Background(), testNow)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	var ks [][]byte
	for _, k := range keys {
		ks = append(ks, []byte(k))
	}
	rows, err := snap.Rows(context.Background(), ks)
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// vanishing is a target that applies a few batches and then cannot be reached.
type vanishing struct {
	*memory.Store
	batches *int
}

func (v vanishing) Apply(ctx context.Context, now int64, cs []reconcile.Change) ([]reconcile.Outcome, error) {
	if *v.batches == 0 {
		return nil, fmt.Errorf("apply: connection refused (gave up after 4 attempts): %w", reconcile.ErrUnreachable)
	}
	*v.batches--
	return v.Store.Apply(ctx, now, cs)
}

// TestUnreachableTargetStops: a target that stops answering ends the apply at once,
// with no batch halved and no row quarantined; the report counts the batches it answered
// and the error names the batch whose answer was lost.
func TestUnreachableTargetStops(t *testing.T) {
	src, dst := memory.New(merkle.VersionOrder), memory.New(merkle.VersionOrder)
	fill(src, 0, 500, 1, 10)
	left := 2
	ep := vanishing{Store: dst, batches: &left}
	rep, err := reconcile.Run(context.Background(), src, ep, reconcile.Options{Mode: reconcile.Mirror, Now: testNow, BatchRows: 50, MaxBatchRows: 50})
	var d *reconcile.InDoubtError
	if !errors.As(err, &d) || !errors.Is(err, reconcile.ErrUnreachable) || d.Rows != 50 {
		t.Fatalf("err %v, want an InDoubtError of 50 rows wrapping ErrUnreachable", err)
	}
	if rep == nil || rep.Upserted != 100 || rep.Quarantined != 0 {
		t.Fatalf("report %+v, want 100 upserted and nothing quarantined", rep)
	}
	if n := len(liveRows(dst, testNow)); n != 100 {
		t.Fatalf("target holds %d rows, want 100", n)
	}
}

// TestRowTooLargeToSend: a source row longer than MaxValue cannot cross any frame; the
// session quarantines it with a message that says so, once, and writes the other rows,
// whether it reads the rows itself or pulls them from the source's peer.
func TestRowTooLargeToSend(t *testing.T) {
	ctx := context.Background()
	src := memory.New(merkle.VersionOrder)
	fill(src, 0, 40, 1, 10)
	huge := make([]byte, reconcile.MaxValue+1)
	src.Put(reconcile.Row{Key: []byte("k00010x"), Version: 99, Value: huge})
	src.Put(reconcile.Row{Key: []byte("k00020x"), Version: 100, Value: huge})
	for _, fromPeer := range []bool{false, true} {
		dst := memory.New(merkle.VersionOrder)
		opts := reconcile.Options{Mode: reconcile.Mirror, Now: testNow, BatchRows: 8}
		var rep *reconcile.Report
		var err error
		if fromPeer {
			peer := reconcile.NewLocal(src)
			rep, err = reconcile.RunFromPeer(ctx, peer, dst, opts)
			peer.Close()
		} else {
			rep, err = reconcile.Run(ctx, src, dst, opts)
		}
		if err != nil {
			t.Fatalf("from peer %v: %v", fromPeer, err)
		}
		if rep.Upserted != 40 || rep.Quarantined != 2 || len(rep.QuarantinedRows) != 2 || rep.Raced != 0 {
			t.Fatalf("from peer %v: upserted %d, quarantined %d %v, raced %d; want 40, 2, 0", fromPeer, rep.Upserted, rep.Quarantined, rep.QuarantinedRows, rep.Raced)
		}
		for _, q := range rep.QuarantinedRows {
			if !strings.Contains(q.Error, "256 MiB a row may carry") || !strings.Contains(q.Error, fmt.Sprint(reconcile.MaxValue+1)) {
				t.Fatalf("from peer %v: quarantine message %q does not say the row is too large to send", fromPeer, q.Error)
			}
		}
		if got := len(liveRows(dst, testNow)); got != 40 {
			t.Fatalf("from peer %v: target holds %d rows, want 40", fromPeer, got)
		}
		if rep.ValueBytes > 1<<20 {
			t.Fatalf("from peer %v: %d value bytes crossed", fromPeer, rep.ValueBytes)
		}
	}
}

// slowRoot is a target whose snapshots after the first take a while to open, as a SQL
// table's do while its maintained index catches up with a sync's writes.
type slowRoot struct {
	*memory.Store
	opens *int
}

func (s slowRoot) Open(ctx context.Context, now int64) (reconcile.Snapshot, error) {
	if *s.opens++; *s.opens > 1 {
		time.Sleep(300 * time.Millisecond)
	}
	return s.Store.Open(ctx, now)
}

// TestDurationCountsRootAfter: a sync's duration counts the read of the target's root
// after its writes (it stopped before it).
func TestDurationCountsRootAfter(t *testing.T) {
	src := memory.New(merkle.VersionOrder)
	fill(src, 0, 10, 1, 8)
	opens := 0
	rep, err := reconcile.Run(context.Background(), src, slowRoot{memory.New(merkle.VersionOrder), &opens}, reconcile.Options{Mode: reconcile.Mirror, Now: testNow})
	if err != nil || rep.RootTargetAfter == "" || opens != 2 {
		t.Fatalf("%v, root after %q, %d opens", err, rep.RootTargetAfter, opens)
	}
	if rep.DurationMS < 300 {
		t.Fatalf("duration %d ms leaves out the 300 ms root read after the writes", rep.DurationMS)
	}
}

// TestQuarantineRunStops: a target that refuses row after row stops the sync, and the
// error says how many rows were not tried.
func TestQuarantineRunStops(t *testing.T) {
	src, dst := memory.New(merkle.VersionOrder), memory.New(merkle.VersionOrder)
	dst.MaxRowBytes = 4
	fill(src, 0, 1100, 1, 10) // every row too large for the target
	rep, err := reconcile.Run(context.Background(), src, dst, reconcile.Options{Mode: reconcile.Mirror, Now: testNow})
	if err == nil || !strings.Contains(err.Error(), "1024 rows in a row failed") || !strings.Contains(err.Error(), "(76 more rows not tried;") {
		t.Fatalf("err %v", err)
	}
	if rep.Quarantined != 1024 || rep.Upserted != 0 {
		t.Fatalf("quarantined %d, upserted %d", rep.Quarantined, rep.Upserted)
	}
}
