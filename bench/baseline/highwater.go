package baseline

import (
	"context"
	"fmt"

	"github.com/reconcile-dev/reconcile/merkle"
	"github.com/reconcile-dev/reconcile/reconcile"
)

// HighWater is the high-water-mark sync, as replication by version watermark does it:
// the source asks the target for its highest version and uploads every row above it.
// When the source's own highest version is below the target's (the source went
// backwards: restored from a backup), it first has the target delete every row above the
// source's highest version, then uploads the rows above the target's new highest
// version. It reads and sends little. It is wrong wherever the difference is not "the
// target lacks the newest writes": it never sees a delete, a rewrite at an old version or
// a row the target lost, and after a rollback it deletes the target's newer copies of
// rows whose older copies it then never sends: those rows are lost.
type HighWater struct{}

// Run plans a sync from source to target at now. Both must be in version order.
func (HighWater) Run(ctx context.Context, source, target reconcile.Endpoint, now int64) (*Result, error) {
	src, dst, err := snapshots(ctx, source, target, now)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	defer dst.Close()
	if src.Info().Ordering != merkle.VersionOrder {
		return nil, fmt.Errorf("high-water-mark sync: needs version order, not %s", src.Info().Ordering)
	}
	res := &Result{}
	l := link{&res.Cost}
	p := newPlanner()

	remoteMax, remoteAny, err := maxVersion(ctx, dst, nil)
	if err != nil {
		return nil, fmt.Errorf("high-water-mark sync: target's highest version: %w", err)
	}
	l.round(1, 1+uvlen(remoteMax))
	localMax, localAny, err := maxVersion(ctx, src, nil)
	if err != nil {
		return nil, fmt.Errorf("high-water-mark sync: source's highest version: %w", err)
	}
	if remoteAny && (!localAny || localMax < remoteMax) {
		// The source went backwards: the target deletes every row above localMax (one
		// statement; it answers how many and its new highest version).
		var from []byte
		if localAny {
			from = versionPos(localMax + 1)
		}
		n := 0
		if err := each(ctx, dst, from, nil, func(e merkle.Entry, _ merkle.Hash) bool {
			p.del(e.Key)
			n++
			return true
		}); err != nil {
			return nil, fmt.Errorf("high-water-mark sync: delete above %d: %w", localMax, err)
		}
		if from == nil {
			remoteMax, remoteAny = 0, false
		} else if remoteMax, remoteAny, err = maxVersion(ctx, dst, from); err != nil {
			return nil, fmt.Errorf("high-water-mark sync: target's highest version: %w", err)
		}
		l.round(1+uvlen(localMax), uvlen(uint64(n))+1+uvlen(remoteMax))
	}
	// Upload every source row above the target's highest version (values not counted).
	var from []byte
	if remoteAny {
		from = versionPos(remoteMax + 1)
	}
	var sent int64 = 1
	rows := 0
	if err := each(ctx, src, from, nil, func(e merkle.Entry, _ merkle.Hash) bool {
		p.upsert(e.Key, &p.found.OnlySource)
		sent += bytesLen(e.Key) + uvlen(e.Version) + uvlen(zigzag(e.ExpiresAt))
		rows++
		return true
	}); err != nil {
		return nil, fmt.Errorf("high-water-mark sync: read source: %w", err)
	}
	if rows > 0 {
		l.round(sent, 1+uvlen(uint64(rows)))
	}
	res.Plan, res.Found = p.plan(), p.found
	finish(&res.Cost, src, dst)
	return res, nil
}

func zigzag(x int64) uint64 { return uint64(x<<1) ^ uint64(x>>63) }
