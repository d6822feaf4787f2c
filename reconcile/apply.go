package reconcile

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/reconcile-dev/reconcile/merkle"
)

// plannedChange is one write the mirror resolution decided on.
type plannedChange struct {
	key    string
	upsert bool
}

// maxQuarantineRun is how many rows in a row may be quarantined, with nothing applied in
// between, before the sync gives up: past it the target is failing, not a row. Rows a
// target cannot hold often come together (a run of infinities MySQL refuses, in key
// order), so it is large; after a quarantine the next batch is one row (back to
// BatchRows once one succeeds), so a run of bad rows costs Attempts writes a row, not a
// halving from the full batch each. A target that cannot be reached at all stops the
// sync at once (ErrUnreachable), without this.
const maxQuarantineRun = 1024

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
			return fmt.Errorf("apply: %w (%s still to write)", ErrStopped, count(len(plan), "row"))
		}
		n := min(size, len(plan))
		b, err := s.changes(ctx, plan[:n])
		if err != nil {
			return err
		}
		n = b.taken // the byte cap may have shortened the batch
		if q := b.unsendable; q != nil {
			s.rep.Quarantined++
			s.rep.QuarantinedRows = append(s.rep.QuarantinedRows, *q)
			s.log.Warn("apply: row quarantined", "key", q.Key, "error", q.Error)
		}
		if len(b.changes) == 0 {
			s.rep.Raced += b.moved // every row of it moved on the source
			plan = plan[n:]
			continue
		}
		resp, err := s.apply(ctx, b.changes)
		if err == nil {
			afterQuarantine := quarantineRun > 0
			quarantineRun = 0
			s.rep.Raced += b.moved
			for i, o := range resp.Outcomes {
				switch {
				case o == Raced:
					s.rep.Raced++
				case plan[b.planned[i]].upsert:
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
			if afterQuarantine {
				size = max(size, s.opts.BatchRows) // the run of bad rows is over
			}
			s.progress("apply", s.rep.Upserted+s.rep.Deleted, len(plan))
			continue
		}
		if errors.Is(err, ErrReadOnly) || errors.Is(err, ErrEndpointFailed) {
			return applyErr(err)
		}
		if ctx.Err() != nil || errors.Is(err, ErrSessionLost) || errors.Is(err, ErrUnreachable) {
			// The request may have reached the target and been committed before the
			// answer was lost: say so, since the report counts only answered batches.
			return &InDoubtError{Rows: len(b.changes), Err: err}
		}
		var refused *RowRefusedError
		if errors.As(err, &refused) && refused.Index >= 0 && refused.Index < len(b.changes) {
			// The first row of the batch the target refuses for what it is: quarantined
			// now. The rows before it are sent again as the next batch, so that a run of
			// refused rows shrinks the batches to one row (doubled on each success) as a
			// halving would, instead of sending the rest of the batch once per bad row.
			// The rows before it move up one place over it: O(batch), not O(plan).
			j := b.planned[refused.Index]
			s.quarantine(plan[j].key, 1, err)
			copy(plan[1:j+1], plan[:j])
			plan = plan[1:]
			size = max(refused.Index, 1)
			if quarantineRun++; quarantineRun >= maxQuarantineRun {
				return fmt.Errorf("apply: %d rows in a row failed, the target keeps refusing writes (%s not tried; the report lists those quarantined): %w", quarantineRun, count(len(plan), "more row"), err)
			}
			continue
		}
		if len(b.changes) > 1 {
			size = max(1, n/2)
			s.log.Debug("apply: batch failed; halving it", "rows", n, "error", err)
			continue
		}
		// One row fails: the rows before it in the batch, if any, moved on the source.
		s.rep.Raced += b.planned[0]
		plan = plan[b.planned[0]:]
		k := plan[0].key
		attempts[k]++
		if attempts[k] < s.opts.Attempts {
			continue
		}
		s.quarantine(k, attempts[k], err)
		plan = plan[1:]
		size = 1 // the next row may be bad too; doubled on each success
		if quarantineRun++; quarantineRun >= maxQuarantineRun {
			return fmt.Errorf("apply: %d rows in a row failed, the target keeps refusing writes (%s not tried; the report lists those quarantined): %w", quarantineRun, count(len(plan), "more row"), err)
		}
	}
	return nil
}

// quarantine records the row of key as quarantined after attempts tries that failed
// with err.
func (s *session) quarantine(key string, attempts int, err error) {
	s.rep.Quarantined++
	name := s.keyString([]byte(key))
	s.rep.QuarantinedRows = append(s.rep.QuarantinedRows, Quarantine{Key: name, Error: err.Error()})
	s.log.Warn("apply: row quarantined", "key", name, "attempts", attempts, "error", err)
}

// InDoubtError is the error of an apply batch whose request may have reached the target
// and been committed before its answer was lost (the session was interrupted, or the
// peer became unreachable): the report counts only answered batches, so Rows more may
// have been written.
type InDoubtError struct {
	Rows int
	Err  error
}

func (e *InDoubtError) Error() string {
	return fmt.Sprintf("%v (the batch of %s being written then may have been committed too)", applyErr(e.Err), count(e.Rows, "row"))
}

func (e *InDoubtError) Unwrap() error { return e.Err }

// count writes n and noun, plural unless n is 1.
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// applyErr says an error is the apply phase's, once: a remote peer's errors say so
// already.
func applyErr(err error) error {
	if strings.HasPrefix(err.Error(), "apply: ") {
		return err
	}
	return fmt.Errorf("apply: %w", err)
}

// batch is one apply batch built from the head of the plan.
type batch struct {
	changes []Change
	planned []int // each change's index in the plan
	taken   int   // how many of the plan's changes the batch settles, moved ones included
	moved   int   // upserts skipped: the source's row is no longer the entry the session found
	// unsendable is an upsert skipped for good, the batch's last: the source's row is
	// longer than MaxValue, or the source cannot read it (its Rows refused it with a
	// RowRefusedError). A batch that holds one writes nothing.
	unsendable *Quarantine
}

// changes builds the conditional writes for plan, reading the source rows at the
// snapshot. It stops early when the rows' values pass the batch byte cap (always keeping
// at least one).
//
// A source row that is not the entry the session found is skipped and counted raced, as a
// target row that moved is: a SQL table's maintained index is caught up just before its
// read snapshot opens, and a row written in between reads newer than its entry (or not at
// all, when deleted). Writing it would leave the target unlike the source's root; the next
// sync takes the new row.
func (s *session) changes(ctx context.Context, plan []plannedChange) (batch, error) {
	var b batch
	var keys [][]byte
	for _, p := range plan {
		if p.upsert {
			keys = append(keys, []byte(p.key))
		}
	}
	// A row the source refuses to give (it cannot read it: a RowRefusedError) ends the
	// batch before it, and is quarantined by itself when it comes first, as a row too
	// large is: the target's copy, if any, is left alone.
	limit := len(keys)
	var unreadable error
	rows, tooLarge, err := s.sourceRows(ctx, keys)
	for refused := (*RowRefusedError)(nil); errors.As(err, &refused) && refused.Index >= 0 && refused.Index < limit; {
		limit, unreadable = refused.Index, refused.Err
		rows, tooLarge, err = nil, nil, nil
		if limit > 0 {
			rows, tooLarge, err = s.sourceRows(ctx, keys[:limit])
		}
	}
	if err != nil {
		return b, fmt.Errorf("read source rows: %w", err)
	}
	if len(rows) > limit || len(rows) == 0 && limit > 0 {
		return b, fmt.Errorf("read source rows: %d rows for %d keys", len(rows), limit)
	}
	b.changes = make([]Change, 0, len(plan))
	bytes, r := 0, 0
	for i, p := range plan {
		c := Change{Key: []byte(p.key)}
		if e, ok := s.entryR[p.key]; ok {
			e := e
			c.Expect = &e
		}
		if p.upsert {
			if r == len(rows) {
				if unreadable != nil && r == limit && len(b.changes) == 0 {
					b.unsendable = &Quarantine{Key: s.keyString([]byte(p.key)), Error: "the source cannot read this row, so it is not synced (and the target's copy is left as it is): " + unreadable.Error()}
					b.taken = i + 1
				}
				break // the source's answer stopped at the batch's byte cap, or before a row it refused
			}
			row := rows[r]
			if size, ok := tooLarge[r]; ok && row.Key != nil {
				// A batch of its own, with no writes: it cannot fail and be retried, so
				// the row is quarantined once.
				if len(b.changes) == 0 {
					b.unsendable = &Quarantine{Key: s.keyString([]byte(p.key)), Error: tooLargeError(size)}
					b.taken = i + 1
				}
				break
			}
			r++
			found, re := s.entryI[p.key], row.Entry()
			if row.Key == nil || !merkle.SameEntry(&found, &re) {
				s.log.Debug("apply: the source row moved since its snapshot's index; skipped as raced", "key", s.keyString([]byte(p.key)))
				b.moved++
				b.taken = i + 1
				continue
			}
			if len(b.changes) > 0 && bytes+len(row.Value) > s.opts.BatchBytes {
				break
			}
			bytes += len(row.Value)
			c.Put = &row
		}
		b.changes = append(b.changes, c)
		b.planned = append(b.planned, i)
		b.taken = i + 1
	}
	return b, nil
}

// sourceRows reads the source's rows of keys at the session's snapshot: from the local
// snapshot, or from the peer when the source is the responder. tooLarge maps the index of
// each row longer than MaxValue to its value's length (a peer sends such a row without
// its value).
func (s *session) sourceRows(ctx context.Context, keys [][]byte) (rows []Row, tooLarge map[int]int64, err error) {
	if !s.reversed {
		rows, err = s.src.Rows(ctx, keys)
		for i, r := range rows {
			if len(r.Value) > MaxValue {
				if tooLarge == nil {
					tooLarge = map[int]int64{}
				}
				tooLarge[i] = int64(len(r.Value))
			}
		}
		return rows, tooLarge, err
	}
	if len(keys) == 0 {
		return nil, nil, nil
	}
	resp, err := s.peer.Rows(ctx, &RowsRequest{Keys: keys, MaxBytes: int64(s.opts.BatchBytes)})
	if err != nil {
		return nil, nil, err
	}
	return resp.Rows, resp.TooLarge, nil
}

// tooLargeError is the quarantine message of a source row whose value no frame can carry.
func tooLargeError(size int64) string {
	return fmt.Sprintf("the source's row has %d bytes of value, over the %d MiB a row may carry in the protocol (reconcile.MaxValue): it cannot be synced; keep the row smaller, or copy it by other means", size, MaxValue>>20)
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
