package baseline

import (
	"bytes"
	"context"
	"fmt"

	"github.com/reconcile-dev/reconcile/merkle"
	"github.com/reconcile-dev/reconcile/reconcile"
)

// Manifest is the full manifest comparison: the target sends one record per live row,
// (key, version, hash), in one streamed response; the source holds the records by key
// and walks its own rows against them. It is always correct and reads and sends
// everything, whatever the difference.
type Manifest struct {
	// HashBytes is the width of the hash per row, a prefix of the row's EntryHash (which
	// covers key, version, expiry and value); 0 means DefaultHashBytes.
	HashBytes int
}

// manifestRec is one target row as the source keeps it.
type manifestRec struct {
	version uint64
	hash    [32]byte // the first HashBytes bytes are used
}

// Run compares source and target at now.
func (m Manifest) Run(ctx context.Context, source, target reconcile.Endpoint, now int64) (*Result, error) {
	hb := m.HashBytes
	if hb <= 0 || hb > 32 {
		hb = DefaultHashBytes
	}
	src, dst, err := snapshots(ctx, source, target, now)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	defer dst.Close()
	res := &Result{}
	l := link{&res.Cost}

	// One request ('M', now) and one streamed response: the records and an end mark.
	count := dst.Info().Root.Count
	recs := make(map[string]manifestRec, count)
	var resp int64 = 1
	var h [32]byte
	err = each(ctx, dst, nil, nil, func(e merkle.Entry, eh merkle.Hash) bool {
		copy(h[:hb], eh[:hb])
		recs[string(e.Key)] = manifestRec{version: e.Version, hash: h}
		resp += bytesLen(e.Key) + uvlen(e.Version) + int64(hb)
		return ctx.Err() == nil
	})
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return nil, fmt.Errorf("manifest: read target: %w", err)
	}
	l.round(1+uvlen(uint64(now)), resp)
	res.Cost.Hashes = int64(len(recs))

	p := newPlanner()
	err = each(ctx, src, nil, nil, func(e merkle.Entry, eh merkle.Hash) bool {
		r, ok := recs[string(e.Key)]
		switch {
		case !ok:
			p.upsert(e.Key, &p.found.OnlySource)
		case r.version != e.Version || !bytes.Equal(r.hash[:hb], eh[:hb]):
			delete(recs, string(e.Key))
			p.upsert(e.Key, &p.found.Changed)
		default:
			delete(recs, string(e.Key))
		}
		return ctx.Err() == nil
	})
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return nil, fmt.Errorf("manifest: read source: %w", err)
	}
	for k := range recs {
		p.del([]byte(k))
	}
	res.Plan, res.Found = p.plan(), p.found
	finish(&res.Cost, src, dst)
	return res, nil
}
