package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/reconcile-dev/reconcile/merkle"
)

// Hooks for services that embed sessions (Options.Resolve, Options.Observer,
// Options.Logger, Options.Stop). Each is optional; a session without them behaves
// exactly as the CLI's diff and sync.

// Resolution is what a mirror session does with one differing key (see Options.Resolve).
// The zero value is ResolveSource, the mirror's own rule.
type Resolution uint8

const (
	// ResolveSource makes the target hold what the source holds: upsert the source's row,
	// or delete the target's row where the source has none.
	ResolveSource Resolution = iota
	// ResolveTarget keeps what the target holds: nothing is written, and the key counts
	// in Report.Kept. It stays a difference, so later sessions find it again (and ask
	// again).
	ResolveTarget
	// ResolveSkip leaves the key for later: nothing is written, and the key counts in
	// Report.Skipped.
	ResolveSkip
)

// String names the resolution as reports and logs do.
func (r Resolution) String() string {
	switch r {
	case ResolveSource:
		return "source"
	case ResolveTarget:
		return "target"
	case ResolveSkip:
		return "skip"
	}
	return "unknown"
}

// Conflict is one differing key that Options.Resolve decides.
type Conflict struct {
	Key []byte
	// Class is "changed" (both sides hold the key), "only_source" or "only_target", as in
	// Report.Differences.
	Class string
	// Source and Target are the key's index entries on each side (version, expiry, value
	// hash, flags); nil on the side that has no live row. Values are not included: a
	// service that needs them reads them from the endpoints it constructed.
	Source, Target *merkle.Entry
}

// Observer watches a session. Its methods are called on the session's goroutine, so they
// see events in order and must return quickly.
type Observer interface {
	// Progress is called after each descent round and each apply batch (as
	// Options.Progress is).
	Progress(Progress)
	// Finished is called exactly once, when the session returns, with the report it
	// returns (never nil) and its error (nil on success).
	Finished(*Report, error)
}

// ErrStopped is wrapped by the error of a session that stopped because Options.Stop was
// closed. What it wrote before stopping stays written and counted in the report; the
// next session settles the rest.
var ErrStopped = errors.New("session stopped")

// stopped reports whether o.Stop has been closed.
func (o *Options) stopped() bool {
	if o.Stop == nil {
		return false
	}
	select {
	case <-o.Stop:
		return true
	default:
	}
	return false
}

// logger returns o.Logger, or a logger that discards everything.
func (o *Options) logger() *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// resolve asks opts.Resolve about every differing key (target-only, then changed, then
// source-only, each in key order) and returns the changes to make, in that order. Deletes
// go first so that a key the target's collation calls equal to a source key ('user1' and
// 'USER1' in a case-insensitive MySQL column, whose case changed on the source) is gone
// before the source's key is inserted: applied the other way, the insert finds the old
// key, is skipped as raced, and the old key is then deleted, leaving the target without
// either until the next run.
func (s *session) resolve(ctx context.Context) ([]plannedChange, error) {
	var plan []plannedChange
	ask := func(class string, k string, upsert bool) error {
		r := ResolveSource
		if s.opts.Resolve != nil {
			c := Conflict{Key: []byte(k), Class: class}
			if e, ok := s.entryI[k]; ok {
				c.Source = &e
			}
			if e, ok := s.entryR[k]; ok {
				c.Target = &e
			}
			var err error
			if r, err = s.opts.Resolve(ctx, c); err != nil {
				return fmt.Errorf("resolve %s: %w", s.keyString(c.Key), err)
			}
		}
		switch r {
		case ResolveSource:
			plan = append(plan, plannedChange{key: k, upsert: upsert})
		case ResolveTarget:
			s.rep.Kept++
		case ResolveSkip:
			s.rep.Skipped++
		default:
			return fmt.Errorf("resolve %s: unknown resolution %d", s.keyString([]byte(k)), r)
		}
		return nil
	}
	for _, cl := range []struct {
		class  string
		keys   []string
		upsert bool
	}{{"only_target", s.tgtOnly, false}, {"changed", s.changed, true}, {"only_source", s.srcOnly, true}} {
		for _, k := range cl.keys {
			if err := ask(cl.class, k, cl.upsert); err != nil {
				return nil, err
			}
		}
	}
	if s.rep.Kept+s.rep.Skipped > 0 {
		s.log.Info("resolve: keys left as the target holds them", "kept", s.rep.Kept, "skipped", s.rep.Skipped)
	}
	return plan, nil
}
