package reconcile_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/reconcile-dev/reconcile/adapters/memory"
	"github.com/reconcile-dev/reconcile/merkle"
	"github.com/reconcile-dev/reconcile/reconcile"
)

// conflictPair returns a source and a target that differ in every class: k000-k009 equal,
// k010-k014 changed (the target newer for k010-k012, older for k013-k014), k015-k019 only
// on the source, k020-k024 only on the target.
func conflictPair() (src, dst *memory.Store) {
	src, dst = memory.New(merkle.VersionOrder), memory.New(merkle.VersionOrder)
	row := func(i int, v uint64, val string) reconcile.Row {
		return reconcile.Row{Key: []byte(fmt.Sprintf("k%03d", i)), Version: v, Value: []byte(val)}
	}
	for i := 0; i < 10; i++ {
		src.Put(row(i, 10, "same"))
		dst.Put(row(i, 10, "same"))
	}
	for i := 10; i < 15; i++ {
		src.Put(row(i, 20, "source"))
		if i < 13 {
			dst.Put(row(i, 30, "target newer"))
		} else {
			dst.Put(row(i, 15, "target older"))
		}
	}
	for i := 15; i < 20; i++ {
		src.Put(row(i, 20, "only source"))
	}
	for i := 20; i < 25; i++ {
		dst.Put(row(i, 20, "only target"))
	}
	return src, dst
}

func TestResolve(t *testing.T) {
	ctx := context.Background()
	src, dst := conflictPair()
	var asked []string
	// Last writer wins for changed keys, the replica's own rows are never deleted, and
	// k017 is left for later.
	resolve := func(_ context.Context, c reconcile.Conflict) (reconcile.Resolution, error) {
		asked = append(asked, c.Class+":"+string(c.Key))
		switch {
		case string(c.Key) == "k017":
			return reconcile.ResolveSkip, nil
		case c.Class == "changed" && c.Target.Version > c.Source.Version:
			return reconcile.ResolveTarget, nil
		case c.Class == "only_target":
			if c.Source != nil || c.Target == nil {
				t.Errorf("only_target conflict %s with entries %v %v", c.Key, c.Source, c.Target)
			}
			return reconcile.ResolveTarget, nil
		}
		return reconcile.ResolveSource, nil
	}
	// A diff session does not ask.
	rep, err := reconcile.Run(ctx, src, dst, reconcile.Options{Mode: reconcile.Diff, Now: testNow, Resolve: resolve})
	if err != nil || len(asked) != 0 || rep.Changed != 5 || rep.OnlySource != 5 || rep.OnlyTarget != 5 {
		t.Fatalf("diff: err %v, asked %v, report %+v", err, asked, rep)
	}
	// A dry run asks and counts what the answers let through.
	rep, err = reconcile.Run(ctx, src, dst, reconcile.Options{Mode: reconcile.Mirror, DryRun: true, Now: testNow, Resolve: resolve})
	if err != nil || rep.Upserted != 6 || rep.Deleted != 0 || rep.Kept != 8 || rep.Skipped != 1 {
		t.Fatalf("dry run: err %v, report %+v", err, rep)
	}
	want := "only_target:k020 only_target:k021 only_target:k022 only_target:k023 only_target:k024 " +
		"changed:k010 changed:k011 changed:k012 changed:k013 changed:k014 " +
		"only_source:k015 only_source:k016 only_source:k017 only_source:k018 only_source:k019"
	if got := strings.Join(asked, " "); got != want {
		t.Fatalf("asked\n%s\nwant\n%s", got, want)
	}
	// MaxDelete 0 forbids deletes, and none are let through, so the sync goes ahead.
	rep, err = reconcile.Run(ctx, src, dst, reconcile.Options{Mode: reconcile.Mirror, Now: testNow, Resolve: resolve, MaxDelete: mustLimit("0")})
	if err != nil || rep.Upserted != 6 || rep.Deleted != 0 || rep.Kept != 8 || rep.Skipped != 1 {
		t.Fatalf("mirror: err %v, report %+v", err, rep)
	}
	got := liveRows(dst, testNow)
	for k, v := range map[string]string{"k010": "target newer", "k013": "source", "k015": "only source", "k020": "only target"} {
		if string(got[k].Value) != v {
			t.Errorf("%s = %q, want %q", k, got[k].Value, v)
		}
	}
	if _, ok := got["k017"]; ok {
		t.Error("skipped k017 was written")
	}
	// What was kept or skipped is found again next time.
	rep, err = reconcile.Run(ctx, src, dst, reconcile.Options{Mode: reconcile.Diff, Now: testNow})
	if err != nil || rep.Changed != 3 || rep.OnlySource != 1 || rep.OnlyTarget != 5 {
		t.Fatalf("diff after: err %v, report %+v", err, rep)
	}
}

func TestResolveErrorWritesNothing(t *testing.T) {
	ctx := context.Background()
	src, dst := conflictPair()
	before, _ := reconcile.Root(ctx, dst, testNow)
	boom := errors.New("rules unavailable")
	n := 0
	_, err := reconcile.Run(ctx, src, dst, reconcile.Options{Mode: reconcile.Mirror, Now: testNow, Force: true,
		Resolve: func(_ context.Context, c reconcile.Conflict) (reconcile.Resolution, error) {
			if n++; n == 7 {
				return 0, boom
			}
			return reconcile.ResolveSource, nil
		}})
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "resolve k011") {
		t.Fatalf("err %v, want the callback's error naming k011", err)
	}
	_, err = reconcile.Run(ctx, src, dst, reconcile.Options{Mode: reconcile.Mirror, Now: testNow, Force: true,
		Resolve: func(context.Context, reconcile.Conflict) (reconcile.Resolution, error) { return 9, nil }})
	if err == nil || !strings.Contains(err.Error(), "unknown resolution") {
		t.Fatalf("err %v, want an unknown resolution error", err)
	}
	after, _ := reconcile.Root(ctx, dst, testNow)
	if after.Root != before.Root {
		t.Fatal("a failed resolution wrote to the target")
	}
}

// recorder is an Observer that keeps what it is told.
type recorder struct {
	progress []reconcile.Progress
	finished int
	rep      *reconcile.Report
	err      error
}

func (r *recorder) Progress(p reconcile.Progress) { r.progress = append(r.progress, p) }
func (r *recorder) Finished(rep *reconcile.Report, err error) {
	r.finished++
	r.rep, r.err = rep, err
}

func TestObserver(t *testing.T) {
	ctx := context.Background()
	src, dst := memory.New(merkle.VersionOrder), memory.New(merkle.VersionOrder)
	fill(src, 0, 2000, 1, 8)
	fill(dst, 0, 1500, 1, 8)

	var obs recorder
	var viaFunc int
	rep, err := reconcile.Run(ctx, src, dst, reconcile.Options{Mode: reconcile.Mirror, Now: testNow, BatchRows: 100,
		Observer: &obs, Progress: func(reconcile.Progress) { viaFunc++ }})
	if err != nil {
		t.Fatal(err)
	}
	if obs.finished != 1 || obs.rep != rep || obs.err != nil {
		t.Fatalf("finished %d times with %p/%v, want once with %p", obs.finished, obs.rep, obs.err, rep)
	}
	if obs.rep.RootTargetAfter == "" {
		t.Fatal("Finished was called before the report was complete")
	}
	if len(obs.progress) != viaFunc || len(obs.progress) == 0 {
		t.Fatalf("observer saw %d progress events, Progress %d", len(obs.progress), viaFunc)
	}
	last := obs.progress[len(obs.progress)-1]
	if last.Phase != "apply" || last.Applied != 500 || last.Pending != 0 {
		t.Fatalf("last progress %+v, want apply with 500 written", last)
	}

	// A failed session is reported too, once, with its error (RunPeer path).
	fill(dst, 3000, 3500, 1, 8)
	obs = recorder{}
	peer := reconcile.NewLocal(dst)
	defer peer.Close()
	rep, err = reconcile.RunPeer(ctx, src, peer, reconcile.Options{Mode: reconcile.Mirror, Now: testNow, Observer: &obs})
	if !errors.Is(err, reconcile.ErrDeleteGuard) || obs.finished != 1 || obs.err != err || obs.rep != rep {
		t.Fatalf("err %v; observer finished %d with %v", err, obs.finished, obs.err)
	}
}

func TestLogger(t *testing.T) {
	ctx := context.Background()
	src, dst := memory.New(merkle.VersionOrder), memory.New(merkle.VersionOrder)
	dst.MaxRowBytes = 100
	fill(src, 0, 100, 1, 8)
	src.Put(reconcile.Row{Key: []byte("poison"), Version: 7, Value: make([]byte, 1000)})
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})).With("job", "t")
	if _, err := reconcile.Run(ctx, src, dst, reconcile.Options{Mode: reconcile.Mirror, Now: testNow, Logger: log}); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"level=DEBUG msg=\"session open\" job=t",
		"level=WARN msg=\"apply: row quarantined\" job=t key=poison",
		"level=DEBUG msg=\"session done\" job=t mode=mirror",
		"upserted=100",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

// gate is a target whose Apply calls hook before writing each batch.
type gate struct {
	*memory.Store
	hook func(batch int)
	n    int
}

func (g *gate) Apply(ctx context.Context, now int64, cs []reconcile.Change) ([]reconcile.Outcome, error) {
	g.n++
	g.hook(g.n)
	return g.Store.Apply(ctx, now, cs)
}

func TestStop(t *testing.T) {
	ctx := context.Background()
	src, dst := memory.New(merkle.VersionOrder), memory.New(merkle.VersionOrder)
	fill(src, 0, 1000, 1, 8)

	// Closed before the session starts: nothing is opened or written.
	closed := make(chan struct{})
	close(closed)
	rep, err := reconcile.Run(ctx, src, dst, reconcile.Options{Mode: reconcile.Mirror, Now: testNow, Stop: closed})
	if !errors.Is(err, reconcile.ErrStopped) || rep.Upserted != 0 || len(dst.Rows()) != 0 {
		t.Fatalf("err %v, upserted %d, target rows %d", err, rep.Upserted, len(dst.Rows()))
	}

	// Closed while the second batch is being written: that batch completes, no other
	// starts, and what was written is all counted.
	stop := make(chan struct{})
	var once sync.Once
	g := &gate{Store: dst, hook: func(n int) {
		if n == 2 {
			once.Do(func() { close(stop) })
		}
	}}
	rep, err = reconcile.Run(ctx, src, g, reconcile.Options{Mode: reconcile.Mirror, Now: testNow, BatchRows: 100, Stop: stop})
	if !errors.Is(err, reconcile.ErrStopped) {
		t.Fatalf("err %v, want ErrStopped", err)
	}
	if g.n != 2 || rep.Upserted != 300 || len(liveRows(dst, testNow)) != 300 {
		t.Fatalf("%d batches, upserted %d, target holds %d rows; want 2 batches of 100 and 200 rows", g.n, rep.Upserted, len(liveRows(dst, testNow)))
	}
	// Nothing is lost: the next session writes the rest.
	rep, err = reconcile.Run(ctx, src, dst, reconcile.Options{Mode: reconcile.Mirror, Now: testNow})
	if err != nil || rep.Upserted != 700 || rep.RootTargetAfter != rep.RootSource {
		t.Fatalf("rerun: err %v, report %+v", err, rep)
	}
}

// TestDiverged: a sync that wrote every difference yet left the roots unequal is partial;
// one whose keys were kept, skipped, quarantined or raced is not called diverged (its
// roots differ by design or for a reason already reported), nor is one that wrote nothing.
func TestDiverged(t *testing.T) {
	base := reconcile.Report{Mode: reconcile.Mirror, Upserted: 3, RootSource: "aa", RootTargetAfter: "bb"}
	if !base.Diverged() || !base.Partial() || !strings.Contains(base.PartialReason(), "is not the source's") {
		t.Fatalf("unequal roots after a clean sync: diverged %v, %q", base.Diverged(), base.PartialReason())
	}
	for name, edit := range map[string]func(r *reconcile.Report){
		"equal roots":   func(r *reconcile.Report) { r.RootTargetAfter = "aa" },
		"wrote nothing": func(r *reconcile.Report) { r.RootTargetAfter = "" },
		"kept":          func(r *reconcile.Report) { r.Kept = 1 },
		"skipped":       func(r *reconcile.Report) { r.Skipped = 1 },
		"quarantined":   func(r *reconcile.Report) { r.Quarantined = 1 },
		"raced":         func(r *reconcile.Report) { r.Raced = 1 },
	} {
		r := base
		edit(&r)
		if r.Diverged() {
			t.Errorf("%s: diverged", name)
		}
		if want := r.Quarantined+r.Raced > 0; r.Partial() != want || (r.PartialReason() != "") != want {
			t.Errorf("%s: partial %v, reason %q", name, r.Partial(), r.PartialReason())
		}
	}
}

func TestPrintableKey(t *testing.T) {
	for k, want := range map[string]string{"": `""`, "user/1": "user/1", "a\x00": "0x6100", "\xff": "0xff", "é": "é"} {
		if got := reconcile.PrintableKey([]byte(k)); got != want {
			t.Errorf("%q: %q, want %q", k, got, want)
		}
	}
}

func TestFormatVersionAs(t *testing.T) {
	for _, tc := range []struct {
		format string
		v      uint64
		want   string
	}{
		{reconcile.VersionUnixNano, 1796355600428169000, "2026-12-04T03:40:00.428169Z"},
		{reconcile.VersionUnixNano, 0, "1970-01-01T00:00:00Z"},
		{reconcile.VersionUnixNano, math.MaxInt64 + 1, ""}, // no instant: the number shows
		{"", 5, ""},
		{"ticks", 5, ""},
	} {
		if got := reconcile.FormatVersionAs(tc.format, tc.v); got != tc.want {
			t.Errorf("%q %d: %q, want %q", tc.format, tc.v, got, tc.want)
		}
	}
}
