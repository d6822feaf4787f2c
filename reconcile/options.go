package reconcile

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
)

// Mode says what a session does with the difference it finds.
type Mode string

const (
	// Diff reports the difference and writes nothing.
	Diff Mode = "diff"
	// Mirror makes the target equal to the source: upsert only-source and changed rows,
	// delete only-target rows.
	Mirror Mode = "mirror"
)

// Options tune one session. The zero value is usable: Defaults fills it in.
type Options struct {
	Mode Mode
	// DryRun computes everything a sync would write and writes nothing.
	DryRun bool
	// MaxDelete guards mirror syncs against wiping a target; see DeleteLimit.
	MaxDelete DeleteLimit
	// Force overrides MaxDelete.
	Force bool
	// Now is the session's clock (unix ns) for expiry; 0 means time.Now().
	Now int64
	// Fanout is the number of parts a mismatching range is split into (at least).
	Fanout int
	// LeafMax is the size at or below which a range is settled by listing its entries.
	LeafMax int
	// FingerprintBytes is the longest short fingerprint exchanged while descending: the
	// first round uses it, later rounds as few bits (at least 16) as keep a collision,
	// which costs a second pass, about 2^-10 likely (docs/protocol.md).
	FingerprintBytes int
	// BatchRows is the first apply batch size; MaxBatchRows caps its growth.
	BatchRows, MaxBatchRows int
	// BatchBytes caps the value bytes of one apply batch.
	BatchBytes int
	// Attempts is how many times one row is tried alone before it is quarantined.
	Attempts int
	// MaxDifferences is how many differing keys Report.Differences lists: 0 means
	// DifferenceSample, a negative number every one.
	MaxDifferences int
	// Progress, when set, is called after each round and each apply batch.
	Progress func(Progress)

	// Resolve, when set, decides each differing key of a Mirror session before anything is
	// written (dry runs too): ResolveSource writes the source's state to the target (what
	// a mirror does without Resolve), ResolveTarget and ResolveSkip write nothing for the
	// key. It is called on the session's goroutine once per key, target-only keys first
	// (deletes are applied first), then changed, then source-only, each in key order;
	// MaxDelete counts only the deletes
	// it lets through. An error ends the session before any write. Diff sessions do not
	// call it.
	Resolve func(ctx context.Context, c Conflict) (Resolution, error)
	// Observer, when set, is told of the session's progress and of its result.
	Observer Observer
	// Logger, when set, receives the session's structured records: Debug for its start,
	// rounds, apply batches (written or failed and halved) and result, Info for keys
	// Resolve left alone, Warn for a failed session, a quarantined row and a fingerprint
	// collision. Nil logs nothing.
	Logger *slog.Logger
	// Stop, when closed, asks the session to stop where stopping loses nothing: before
	// its next descent round or apply batch. An apply batch in flight completes (cancel
	// ctx to abandon it; its transaction then writes nothing). The session returns an
	// error wrapping ErrStopped, with the report filled as far as it got.
	Stop <-chan struct{}
}

// Progress is a snapshot of a running session for progress displays.
type Progress struct {
	Phase   string `json:"phase"` // "open" (reconcile run, until the first round), "descend", "apply"
	Rounds  int    `json:"rounds"`
	Found   int    `json:"found"`   // differing keys found so far
	Applied int    `json:"applied"` // rows written so far
	Pending int    `json:"pending"` // rows still to write
}

// Defaults returns o with zero fields set to measured defaults.
func (o Options) Defaults() Options {
	if o.Mode == "" {
		o.Mode = Diff
	}
	if o.Fanout <= 1 {
		o.Fanout = 16
	}
	if o.LeafMax <= 0 {
		o.LeafMax = 32
	}
	if o.FingerprintBytes <= 0 {
		o.FingerprintBytes = 4
	}
	if o.FingerprintBytes > 16 {
		o.FingerprintBytes = 16
	}
	if o.BatchRows <= 0 {
		o.BatchRows = 256
	}
	if o.MaxBatchRows <= 0 {
		o.MaxBatchRows = 8192
	}
	if o.BatchBytes <= 0 {
		o.BatchBytes = 16 << 20
	}
	if o.Attempts <= 0 {
		o.Attempts = 3
	}
	if !o.MaxDelete.given() {
		o.MaxDelete = DeleteLimit{set: true, Percent: 10, IsPercent: true}
	}
	return o
}

// DeleteLimit is the --max-delete guard: an absolute number of rows, or a percentage of
// the target's live rows. The zero value means "the default" (10%); a literal with N > 0,
// or with IsPercent set, is that limit. To forbid deletes use ParseDeleteLimit("0") (a
// literal N: 0 is the zero value).
type DeleteLimit struct {
	N         int64
	Percent   float64
	IsPercent bool
	set       bool
}

// ParseDeleteLimit parses "N" or "P%".
func ParseDeleteLimit(s string) (DeleteLimit, error) {
	s = strings.TrimSpace(s)
	if strings.HasSuffix(s, "%") {
		p, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
		if err != nil || !(p >= 0 && p <= 100) { // NaN too
			return DeleteLimit{}, fmt.Errorf("max-delete %q: want a number of rows or a percentage such as 10%%", s)
		}
		return DeleteLimit{Percent: p, IsPercent: true, set: true}, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return DeleteLimit{}, fmt.Errorf("max-delete %q: want a number of rows or a percentage such as 10%%", s)
	}
	return DeleteLimit{N: n, set: true}, nil
}

// Rows returns the number of deletes allowed on a target holding targetCount live rows.
func (l DeleteLimit) Rows(targetCount uint64) int64 {
	if !l.given() {
		l = DeleteLimit{Percent: 10, IsPercent: true, set: true}
	}
	if l.IsPercent {
		return int64(float64(targetCount) * l.Percent / 100)
	}
	return l.N
}

// given reports whether l is a limit rather than the zero value: parsed, or a literal
// that names one.
func (l DeleteLimit) given() bool { return l.set || l.N > 0 || l.IsPercent }

func (l DeleteLimit) String() string {
	if !l.given() {
		return "10%"
	}
	if l.IsPercent {
		return strconv.FormatFloat(l.Percent, 'f', -1, 64) + "%"
	}
	return strconv.FormatInt(l.N, 10)
}
