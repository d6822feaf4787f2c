package reconcile

import (
	"context"
	"errors"
	"fmt"
)

// plannedChange is one write the mirror resolution decided on.
type plannedChange struct {
	key    string
	upsert bool
}

// maxQuarantineRun is how many rows in a row may be quarantined, with nothing applied in
// between, before the sync gives up: past it the target is failing, not a row.
const maxQuarantineRun = 16

// mirror resolves the difference as target := source and applies it.
func (s *session) mirror(ctx context.Context) error {
	plan, err := s.resolve(ctx)
	if err != nil {
		return err
	}
	var deletes int64
	for _, p := range plan {
		if !p.upsert {
			deletes++
		}
	}
	targetCount := s.targetRoot().Count
	if allowed := s.opts.MaxDelete.Rows(targetCount); deletes > allowed && !s.opts.Force {
		return &DeleteGuardError{Deletes: deletes, Allowed: allowed, TargetCount: targetCount, Limit: s.opts.MaxDelete}
	}
	if s.opts.DryRun {
		s.rep.Upserted, s.rep.Deleted = len(plan)-int(deletes), int(deletes)
		return nil
	}

	size := s.opts.BatchRows
	attempts := map[string]int{}
	quarantineRun := 0
	for len(plan) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		if s.opts.stopped() {
			return fmt.Errorf("apply: %w (%d rows still to write)", ErrStopped, len(plan))
		}
		n := min(size, len(plan))
		changes, err := s.changes(ctx, plan[:n])
		if err != nil {
			return err
		}
		n = len(changes) // the byte cap may have shortened the batch
		resp, err := s.apply(ctx, changes)
		if err == nil {
			quarantineRun = 0
			for i, o := range resp.Outcomes {
				switch {
				case o == Raced:
					s.rep.Raced++
				case plan[i].upsert:
					s.rep.Upserted++
				default:
					s.rep.Deleted++
				}
			}
			plan = plan[n:]
			s.log.Debug("apply: batch written", "rows", n, "pending", len(plan))
			// Grow from what was sent, not from what was asked: a batch the byte cap cut
			// short must not keep reading ever more rows only to send a few.
			size = min(max(n*2, 1), s.opts.MaxBatchRows)
			s.progress("apply", s.rep.Upserted+s.rep.Deleted, len(plan))
			continue
		}
		if ctx.Err() != nil || errors.Is(err, ErrReadOnly) || errors.Is(err, ErrSessionLost) {
			return fmt.Errorf("apply: %w", err)
		}
		if n > 1 {
			size = max(1, n/2)
			s.log.Debug("apply: batch failed; halving it", "rows", n, "error", err)
			continue
		}
		k := plan[0].key
		attempts[k]++
		if attempts[k] < s.opts.Attempts {
			continue
		}
		s.rep.Quarantined++
		name := s.keyString([]byte(k))
		s.rep.QuarantinedRows = append(s.rep.QuarantinedRows, Quarantine{Key: name, Error: err.Error()})
		s.log.Warn("apply: row quarantined", "key", name, "attempts", attempts[k], "error", err)
		plan = plan[1:]
		size = s.opts.BatchRows
		if quarantineRun++; quarantineRun >= maxQuarantineRun {
			return fmt.Errorf("apply: %d rows in a row failed, the target keeps refusing writes: %w", quarantineRun, err)
		}
	}
	return nil
}

// changes builds the conditional writes for plan, reading the source rows at the
// snapshot. It stops early when the rows' values pass the batch byte cap (always keeping
// at least one).
func (s *session) changes(ctx context.Context, plan []plannedChange) ([]Change, error) {
	var keys [][]byte
	for _, p := range plan {
		if p.upsert {
			keys = append(keys, []byte(p.key))
		}
	}
	rows, err := s.sourceRows(ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("read source rows: %w", err)
	}
	if len(rows) > len(keys) || len(rows) == 0 && len(keys) > 0 {
		return nil, fmt.Errorf("read source rows: %d rows for %d keys", len(rows), len(keys))
	}
	out := make([]Change, 0, len(plan))
	bytes, r := 0, 0
	for _, p := range plan {
		c := Change{Key: []byte(p.key)}
		if e, ok := s.entryR[p.key]; ok {
			e := e
			c.Expect = &e
		}
		if p.upsert {
			if r == len(rows) {
				break // the source's answer stopped at the batch's byte cap
			}
			row := rows[r]
			r++
			if row.Key == nil {
				return nil, fmt.Errorf("read source rows: %s vanished from the source snapshot", s.keyString([]byte(p.key)))
			}
			if len(out) > 0 && bytes+len(row.Value) > s.opts.BatchBytes {
				break
			}
			bytes += len(row.Value)
			c.Put = &row
		}
		out = append(out, c)
	}
	return out, nil
}

// sourceRows reads the source's rows of keys at the session's snapshot: from the local
// snapshot, or from the peer when the source is the responder.
func (s *session) sourceRows(ctx context.Context, keys [][]byte) ([]Row, error) {
	if !s.reversed {
		return s.src.Rows(ctx, keys)
	}
	if len(keys) == 0 {
		return nil, nil
	}
	resp, err := s.peer.Rows(ctx, &RowsRequest{Keys: keys, MaxBytes: int64(s.opts.BatchBytes)})
	if err != nil {
		return nil, err
	}
	return resp.Rows, nil
}

// apply writes one batch on the target: through the peer, or here when the target is
// the initiator.
func (s *session) apply(ctx context.Context, changes []Change) (*ApplyResponse, error) {
	if !s.reversed {
		return s.peer.Apply(ctx, &ApplyRequest{Now: s.now, Changes: changes})
	}
	outcomes, err := s.local.Apply(ctx, s.now, changes)
	if err != nil {
		return nil, err
	}
	if len(outcomes) != len(changes) {
		return nil, fmt.Errorf("target answered %d outcomes for %d changes", len(outcomes), len(changes))
	}
	return &ApplyResponse{Outcomes: outcomes}, nil
}
