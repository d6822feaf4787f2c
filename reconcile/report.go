package reconcile

import (
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"time"
	"unicode/utf8"
)

// Report is what one session did. Its JSON form is the --json output of diff and sync.
type Report struct {
	Mode   Mode `json:"mode"`
	DryRun bool `json:"dry_run,omitempty"`

	Rounds        int   `json:"rounds"`
	BytesSent     int64 `json:"bytes_sent"`
	BytesReceived int64 `json:"bytes_received"`
	// ValueBytes is the part of BytesSent/BytesReceived that is row values (apply).
	ValueBytes int64 `json:"value_bytes"`

	OnlySource int `json:"only_source"`
	OnlyTarget int `json:"only_target"`
	Changed    int `json:"changed"`

	Upserted    int `json:"upserted"`
	Deleted     int `json:"deleted"`
	Quarantined int `json:"quarantined"`
	// Raced counts rows that changed during the sync and were skipped: on the target (its
	// entry was no longer the one expected) or on the source (its row no longer read as
	// the entry the session found). The next sync settles them.
	Raced int `json:"raced"`
	// Kept and Skipped count the differing keys Options.Resolve answered with
	// ResolveTarget and ResolveSkip: nothing was written for them.
	Kept    int `json:"kept,omitempty"`
	Skipped int `json:"skipped,omitempty"`

	EntriesReadSource int64 `json:"entries_read_source"`
	EntriesReadTarget int64 `json:"entries_read_target"`
	NodesReadSource   int64 `json:"nodes_read_source"`
	NodesReadTarget   int64 `json:"nodes_read_target"`

	DurationMS int64 `json:"duration_ms"`

	RootSource  string `json:"root_source"`
	RootTarget  string `json:"root_target"`
	CountSource uint64 `json:"count_source"`
	CountTarget uint64 `json:"count_target"`
	// RootTargetAfter is the target's root after a sync that wrote something.
	RootTargetAfter string `json:"root_target_after,omitempty"`

	// Differences lists differing keys for people: changed, then source-only, then
	// target-only, each in key order, up to Options.MaxDifferences (DifferenceSample by
	// default).
	Differences []Difference `json:"differences,omitempty"`
	// QuarantinedRows names each quarantined row and why.
	QuarantinedRows []Quarantine `json:"quarantined_rows,omitempty"`

	now int64 // the session's clock, for reading the target root after a sync
}

// DifferenceSample is the default cap of Report.Differences.
const DifferenceSample = 20

// Difference is one differing key.
type Difference struct {
	Class         string `json:"class"` // only_source, only_target, changed
	Key           string `json:"key"`   // for people: KeyFormatter's form, else UTF-8 as is, else 0x-hex
	SourceVersion uint64 `json:"source_version,omitempty"`
	TargetVersion uint64 `json:"target_version,omitempty"`
	// SourceVersionText and TargetVersionText render the versions for people where an
	// endpoint's versions mean more than their number (VersionFormatter): a SQL table's
	// timestamp version column gives "2026-12-04T03:40:00.428169Z". Empty otherwise.
	SourceVersionText string `json:"source_version_text,omitempty"`
	TargetVersionText string `json:"target_version_text,omitempty"`
}

// Quarantine is one row that kept failing to apply.
type Quarantine struct {
	Key   string `json:"key"`
	Error string `json:"error"`
}

// Differ reports whether the session found any difference.
func (r *Report) Differ() bool { return r.OnlySource+r.OnlyTarget+r.Changed > 0 }

// Partial reports whether a sync finished with rows it could not settle: quarantined,
// raced, or written yet not equal (Diverged).
func (r *Report) Partial() bool { return r.Quarantined > 0 || r.Raced > 0 || r.Diverged() }

// Diverged reports whether a mirror sync wrote every difference it found (none
// quarantined, raced, kept or skipped) and still left the target's root unlike the
// source's: the target changed rows as they were written (a trigger, a column default, a
// generated column, a type that does not keep the value) or someone else wrote it during
// the sync.
func (r *Report) Diverged() bool {
	return r.RootTargetAfter != "" && r.RootTargetAfter != r.RootSource &&
		r.Quarantined == 0 && r.Raced == 0 && r.Kept == 0 && r.Skipped == 0
}

// PartialReason says, after the word "sync", why a sync is partial and what to do; ""
// when it is not.
func (r *Report) PartialReason() string {
	switch {
	case r.Diverged():
		return fmt.Sprintf("wrote %s and deleted %d, yet the target's root after it (%s) is not the source's (%s): the target changed rows as they were written (a trigger, a column default, a generated column computed differently, a type that does not keep the value) or was written by someone else meanwhile; `reconcile diff` shows which rows",
			count(r.Upserted, "row"), r.Deleted, r.RootTargetAfter, r.RootSource)
	case r.Partial():
		return fmt.Sprintf("finished with %d quarantined and %d raced rows: run it again to retry them (the report lists the quarantined rows and why; a row the target cannot hold or the source cannot read, as its reason says, is quarantined again until it, or that side, changes)", r.Quarantined, r.Raced)
	}
	return ""
}

// FormatFingerprint renders a digest's full fingerprint in hex, as `root` prints it.
func FormatFingerprint(fp [16]byte) string { return hex.EncodeToString(fp[:]) }

// ErrDeleteGuard is wrapped by the error a mirror sync returns when it would delete more
// rows than --max-delete allows. Nothing has been written when it is returned.
var ErrDeleteGuard = errors.New("delete guard")

// DeleteGuardError carries the numbers behind a refused sync.
type DeleteGuardError struct {
	Deletes, Allowed int64
	TargetCount      uint64
	Limit            DeleteLimit
}

func (e *DeleteGuardError) Error() string {
	return fmt.Sprintf("sync would delete %d of the target's %d rows, more than --max-delete %s allows (%d); nothing was written: check the source, or pass --force or a larger --max-delete",
		e.Deletes, e.TargetCount, e.Limit, e.Allowed)
}

func (e *DeleteGuardError) Unwrap() error { return ErrDeleteGuard }

// KeyFormatter is implemented by endpoints whose key bytes encode something people know in
// another form, such as a SQL table's key columns. FormatKey renders a key for reports and
// messages ("id=18" rather than "0x8000000000000012"), and returns "" for bytes it cannot
// decode. A session uses its own endpoint's, else its peer's, else PrintableKey.
type KeyFormatter interface {
	FormatKey(key []byte) string
}

// VersionFormatter is implemented by endpoints whose versions stand for something people
// read in another form, such as a SQL table's timestamp version column (unix
// nanoseconds). FormatVersion renders a version for reports, and returns "" where the
// number says it best. A session uses its own endpoint's, else its peer's.
type VersionFormatter interface {
	FormatVersion(version uint64) string
}

// VersionUnixNano is the version format of endpoints whose versions are instants in unix
// nanoseconds (a SQL table's timestamp version column); FormatVersionAs renders them as
// RFC 3339 times in UTC.
const VersionUnixNano = "unix-ns"

// FormatVersionAs renders v as its version format says (VersionUnixNano), or "" for
// plain numbers, an unknown format or a version the format cannot hold.
func FormatVersionAs(format string, v uint64) string {
	if format != VersionUnixNano || v > math.MaxInt64 {
		return ""
	}
	return time.Unix(0, int64(v)).UTC().Format(time.RFC3339Nano)
}

// versionString renders v for people, "" where the number says it best (see
// VersionFormatter).
func (s *session) versionString(v uint64) string {
	return firstFormatted([]any{s.local, s.peer}, func(f VersionFormatter) string { return f.FormatVersion(v) })
}

// firstFormatted is the first non-empty answer of format for the eps that implement F
// (KeyFormatter, VersionFormatter), or "".
func firstFormatted[F any](eps []any, format func(F) string) string {
	for _, ep := range eps {
		if f, ok := ep.(F); ok {
			if t := format(f); t != "" {
				return t
			}
		}
	}
	return ""
}

// keyString renders k for people: with the KeyFormatter of the session's own endpoint or
// of its peer (an in-process peer passes its endpoint's on), else PrintableKey.
func (s *session) keyString(k []byte) string { return KeyText(k, s.local, s.peer) }

// KeyText renders k for people: as the first of eps that is a KeyFormatter and decodes
// it renders it, else as PrintableKey does.
func KeyText(k []byte, eps ...any) string {
	if s := firstFormatted(eps, func(f KeyFormatter) string { return f.FormatKey(k) }); s != "" {
		return s
	}
	return PrintableKey(k)
}

// PrintableKey renders a key for people: as is when it is printable UTF-8, else 0x-hex;
// the empty key as "".
func PrintableKey(k []byte) string {
	if len(k) == 0 {
		return `""` // the empty key, which would otherwise print as nothing at all
	}
	if utf8.Valid(k) {
		printable := true
		for _, r := range string(k) {
			if r < 0x20 || r == 0x7f {
				printable = false
				break
			}
		}
		if printable {
			return string(k)
		}
	}
	return "0x" + hex.EncodeToString(k)
}
