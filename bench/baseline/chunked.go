package baseline

import (
	"bytes"
	"context"
	"fmt"

	"github.com/reconcile-dev/reconcile/merkle"
	"github.com/reconcile-dev/reconcile/reconcile"
)

// DefaultChunkRows is Chunked's batch size when none is given (pt-table-sync's default
// chunk is 1,000 rows).
const DefaultChunkRows = 1000

// Chunked is the chunked differencing scan. It walks both copies in version order from
// the newest version down, one batch (a version range holding about ChunkRows of the
// source's rows) at a time. For each batch the target answers its row count and a
// checksum of the batch (computed by reading the batch's rows); on a mismatch the target
// sends the batch's (key, version, hash) records and the source settles the batch, looking
// up by key each target row it does not hold in the batch (the key may sit at another
// version). After each batch it compares the two sides' counts of rows below the batch
// (each side's total, which the endpoint keeps, less the rows walked) and stops when they
// are equal: it takes equal counts to mean no more differences. That is its flaw: a
// difference that leaves counts equal below the stopping point (a value rewritten at its
// own version, a count-preserving swap, a delete balanced by an insert) is never seen;
// and while counts below differ it keeps walking, however few rows differ.
type Chunked struct {
	// ChunkRows is the batch size in source rows; 0 means DefaultChunkRows.
	ChunkRows int
	// HashBytes is the width of checksums and row hashes; 0 means DefaultHashBytes.
	HashBytes int
}

type chunkEntry struct {
	e merkle.Entry
	h merkle.Hash
}

// Run compares source and target at now. Both must be in version order.
func (c Chunked) Run(ctx context.Context, source, target reconcile.Endpoint, now int64) (*Result, error) {
	size := c.ChunkRows
	if size <= 0 {
		size = DefaultChunkRows
	}
	hb := c.HashBytes
	if hb <= 0 || hb > 32 {
		hb = DefaultHashBytes
	}
	src, dst, err := snapshots(ctx, source, target, now)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	defer dst.Close()
	if src.Info().Ordering != merkle.VersionOrder {
		return nil, fmt.Errorf("chunked scan: needs version order, not %s", src.Info().Ordering)
	}
	res := &Result{}
	l := link{&res.Cost}
	p := newPlanner()

	totalS, totalT := src.Info().Root.Count, dst.Info().Root.Count
	l.round(2, uvlen(totalT)) // open: the target's row count
	minV, _, err := minVersion(ctx, src)
	if err != nil {
		return nil, fmt.Errorf("chunked scan: %w", err)
	}
	maxV, _, err := maxVersion(ctx, src, nil)
	if err != nil {
		return nil, fmt.Errorf("chunked scan: %w", err)
	}
	// The first batch's width in versions, from the source's density; later batches adapt.
	width := max(1, (maxV-minV+1)*uint64(size)/max(totalS, 1))
	var hi []byte // nil: past the last position
	vhi := maxV + 1
	var walkedS, walkedT uint64
	changedSeen := map[string]bool{}
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var lo []byte
		vlo := uint64(0)
		if vhi > minV && vhi-minV > width {
			vlo = vhi - width
			lo = versionPos(vlo)
		}
		var local []chunkEntry
		var sumS merkle.Digest
		if err := each(ctx, src, lo, hi, func(e merkle.Entry, h merkle.Hash) bool {
			local = append(local, chunkEntry{e, h})
			sumS = sumS.Add(merkle.Digest{Count: 1, Sum: h})
			return true
		}); err != nil {
			return nil, fmt.Errorf("chunked scan: read source: %w", err)
		}
		var sumT merkle.Digest
		if err := each(ctx, dst, lo, hi, func(e merkle.Entry, h merkle.Hash) bool {
			sumT = sumT.Add(merkle.Digest{Count: 1, Sum: h})
			return true
		}); err != nil {
			return nil, fmt.Errorf("chunked scan: read target: %w", err)
		}
		req := 1 + posLen(lo) + posLen(hi)
		l.round(req, uvlen(sumT.Count)+int64(hb))
		res.Cost.Hashes++
		walkedS += sumS.Count
		walkedT += sumT.Count

		if sumS.Count != sumT.Count || !bytes.Equal(sumS.Sum[:hb], sumT.Sum[:hb]) {
			if err := c.settle(ctx, src, dst, lo, hi, local, hb, l, p, changedSeen); err != nil {
				return nil, err
			}
		}
		if lo == nil || totalS-walkedS == totalT-walkedT {
			break // the bottom, or equal counts below: taken to mean no more differences
		}
		// Aim the next batch at size source rows.
		n := sumS.Count
		switch {
		case n == 0:
			width *= 4
		default:
			width = min(max(width*uint64(size)/n, width/4, 1), width*4)
		}
		hi, vhi = lo, vlo
	}
	res.Plan, res.Found = p.plan(), p.found
	finish(&res.Cost, src, dst)
	return res, nil
}

// settle fetches a mismatching batch's target records and decides its rows.
func (c Chunked) settle(ctx context.Context, src, dst reconcile.Snapshot, lo, hi []byte, local []chunkEntry, hb int, l link, p *planner, changedSeen map[string]bool) error {
	type rec struct {
		version uint64
		hash    merkle.Hash
	}
	remote := map[string]rec{}
	var resp int64 = 1
	if err := each(ctx, dst, lo, hi, func(e merkle.Entry, h merkle.Hash) bool {
		remote[string(e.Key)] = rec{e.Version, h}
		resp += bytesLen(e.Key) + uvlen(e.Version) + int64(hb)
		return true
	}); err != nil {
		return fmt.Errorf("chunked scan: fetch target batch: %w", err)
	}
	l.round(1+posLen(lo)+posLen(hi), resp)
	l.c.Hashes += int64(len(remote))
	for _, x := range local {
		r, ok := remote[string(x.e.Key)]
		if ok && r.version == x.e.Version && bytes.Equal(r.hash[:hb], x.h[:hb]) {
			delete(remote, string(x.e.Key))
			continue
		}
		if ok {
			delete(remote, string(x.e.Key))
			changedSeen[string(x.e.Key)] = true
			p.upsert(x.e.Key, &p.found.Changed)
			continue
		}
		// Not in the target's batch: missing there, or held at another version (counted
		// as changed if the target's row shows up in a later batch).
		if changedSeen[string(x.e.Key)] {
			continue
		}
		p.upsert(x.e.Key, &p.found.OnlySource)
	}
	// Target rows the source's batch lacks: look each key up on the source.
	if len(remote) == 0 {
		return nil
	}
	keys := make([][]byte, 0, len(remote))
	for k := range remote {
		keys = append(keys, []byte(k))
	}
	rows, err := src.Rows(ctx, keys)
	if err != nil {
		return fmt.Errorf("chunked scan: look up source rows: %w", err)
	}
	l.c.RowsSource += int64(len(keys))
	for i, r := range rows {
		if r.Key == nil {
			p.del(keys[i])
			continue
		}
		k := string(keys[i])
		if p.upserts[k] {
			// Upserted as only-source from a batch above; it is a changed row.
			if !changedSeen[k] {
				p.found.OnlySource--
				p.found.Changed++
			}
			changedSeen[k] = true
			continue
		}
		changedSeen[k] = true
		p.upsert(keys[i], &p.found.Changed)
	}
	return nil
}

func posLen(p []byte) int64 {
	if p == nil {
		return 1
	}
	return bytesLen(p)
}
