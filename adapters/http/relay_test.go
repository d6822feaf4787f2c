package remote

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

// TestRelayModel runs the model scenarios between two servers: the source's server runs
// the session and the client carries its requests to the target's server. The results
// are those of a naive comparison, the rounds and frame bytes those of the same session
// in process, and after a sync the target equals the source.
func TestRelayModel(t *testing.T) {
	// One nonce for every session: which entries share a short prefix, and so what a
	// session fetches, depends on it, and the sessions compared here must send the same.
	defer reconcile.FixNonce()()
	ctx := context.Background()
	for kind := 0; kind < 7; kind++ {
		for _, o := range []merkle.Ordering{merkle.VersionOrder, merkle.KeyOrder} {
			t.Run(fmt.Sprintf("kind%d/%s", kind, o), func(t *testing.T) {
				src, dst := modelScenario(kind, int64(kind), o)
				srcA, dstA := cloneIn(o, src), cloneIn(o, dst)
				wantS, wantD, wantC := naiveDiff(src, dst)
				_, _, cs := serve(t, src, ServerOptions{ReadOnly: true}, ClientOptions{})
				_, _, ct := serve(t, dst, ServerOptions{}, ClientOptions{})
				for _, mode := range []reconcile.Mode{reconcile.Diff, reconcile.Mirror} {
					opts := reconcile.Options{Mode: mode, Now: testNow, Force: true, BatchRows: 5, MaxDifferences: -1}
					local, err := reconcile.Run(ctx, srcA, dstA, opts)
					if err != nil {
						t.Fatal(err)
					}
					start := time.Now()
					rep, err := cs.Relay(ctx, ct, opts)
					if err != nil {
						t.Fatalf("%s: %v", mode, err)
					}
					if time.Since(start) > 5*time.Second {
						t.Fatalf("%s took %s", mode, time.Since(start)) // a stuck relay, not a performance check
					}
					if rep.OnlySource != wantS || rep.OnlyTarget != wantD || rep.Changed != wantC {
						t.Fatalf("%s found %d/%d/%d, naive %d/%d/%d", mode, rep.OnlySource, rep.OnlyTarget, rep.Changed, wantS, wantD, wantC)
					}
					if len(rep.Differences) != wantS+wantD+wantC { // MaxDifferences crossed to the source's server
						t.Fatalf("%s: %d differences listed, want all %d", mode, len(rep.Differences), wantS+wantD+wantC)
					}
					if rep.Rounds != local.Rounds || rep.Upserted != local.Upserted || rep.Deleted != local.Deleted || rep.Raced != 0 {
						t.Fatalf("%s: relayed %+v, in process %+v", mode, rep, local)
					}
					if rep.BytesSent < local.BytesSent || rep.BytesReceived < local.BytesReceived {
						t.Fatalf("%s: wire bytes %d/%d below the frames' %d/%d", mode, rep.BytesSent, rep.BytesReceived, local.BytesSent, local.BytesReceived)
					}
				}
				if a, b := liveRows(src), liveRows(dst); strings.Join(a, ",") != strings.Join(b, ",") {
					t.Fatal("after a relayed sync the target differs from the source")
				}
				if rep, err := cs.Relay(ctx, ct, reconcile.Options{Now: testNow}); err != nil || rep.Differ() || rep.Rounds != 1 {
					t.Fatalf("diff after sync: %v", err)
				}
			})
		}
	}
}

// TestRelayErrors: a read-only target refuses the relayed sync's writes, a sync from an
// empty source is refused by the delete guard, and a relay whose client went away is
// closed by the idle timeout.
func TestRelayErrors(t *testing.T) {
	ctx := context.Background()
	src, dst := pair(2)
	srvS, _, cs := serve(t, src, ServerOptions{IdleTimeout: 50 * time.Millisecond, RequestTimeout: 50 * time.Millisecond}, ClientOptions{})
	_, _, ro := serve(t, dst, ServerOptions{ReadOnly: true}, ClientOptions{})
	rep, err := cs.Relay(ctx, ro, mirror())
	if !errors.Is(err, reconcile.ErrReadOnly) || !strings.Contains(err.Error(), "the target refuses writes") || !strings.Contains(err.Error(), "use it as a diff target or a sync source") {
		t.Fatalf("relayed sync to a read-only server: %v", err)
	}
	if rep == nil || rep.Rounds != 1 {
		t.Fatalf("relayed sync to a read-only server: report %+v; want it stopped at the open (1 round)", rep)
	}
	dry := mirror()
	dry.DryRun = true
	if _, err := cs.Relay(ctx, ro, dry); err != nil {
		t.Fatalf("relayed dry run to a read-only server: %v", err)
	}

	_, _, ce := serve(t, memory.New(merkle.VersionOrder), ServerOptions{}, ClientOptions{})
	_, _, ct := serve(t, dst, ServerOptions{}, ClientOptions{})
	before := liveRows(dst)
	_, err = ce.Relay(ctx, ct, reconcile.Options{Mode: reconcile.Mirror, Now: testNow})
	if !errors.Is(err, reconcile.ErrDeleteGuard) {
		t.Fatalf("relayed sync from an empty source: %v", err)
	}
	if strings.Join(liveRows(dst), ",") != strings.Join(before, ",") {
		t.Fatal("a refused sync wrote")
	}

	// A client that starts a relay and never answers: the session expires.
	if _, _, err := cs.do(ctx, call{what: "relay", method: "POST", path: pathRelays, body: []byte(`{"mode":"diff","now":1}`)}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		srvS.mu.Lock()
		n := len(srvS.relays)
		srvS.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("an abandoned relay was not closed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, bad := range []string{`{"mode":"merge","now":1}`, `{"mode":"diff"}`, `not json`} {
		if _, _, err := cs.do(ctx, call{what: "relay", method: "POST", path: pathRelays, body: []byte(bad)}); err == nil || !strings.Contains(err.Error(), "400") && !strings.Contains(err.Error(), "relay:") {
			t.Fatalf("relay options %s: %v", bad, err)
		}
	}
}
