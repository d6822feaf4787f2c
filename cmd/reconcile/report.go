package main

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/reconcile-dev/reconcile/reconcile"
)

// count renders n with its noun, singular for one: "1 row", "0 rows", "2 differing
// keys". The noun's plural is its singular and "s".
func count[N ~int | ~int64 | ~uint64](n N, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// writeJSON writes v as one indented JSON document.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// printFailure returns err, first printing, with --json, the report of a failed session
// as far as it got (none if it did not start) with the error's message in "error", so that
// a script reading the JSON learns what happened and what was written. Without --json the
// message alone says it (standard error).
func printFailure(w io.Writer, r *reconcile.Report, err error, asJSON bool) error {
	if asJSON {
		writeJSON(w, struct {
			*reconcile.Report
			Error string `json:"error"`
		}{r, err.Error()})
	}
	return err
}

// printReport writes r as a compact aligned table, or as JSON.
func printReport(w io.Writer, r *reconcile.Report, asJSON bool) error {
	if asJSON {
		return writeJSON(w, r)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	mode := string(r.Mode)
	if r.DryRun {
		mode += " (dry run: nothing written)"
	}
	fmt.Fprintf(tw, "mode\t%s\n", mode)
	fmt.Fprintf(tw, "\tsource\ttarget\n")
	fmt.Fprintf(tw, "root\t%s\t%s\n", r.RootSource, r.RootTarget)
	if r.RootTargetAfter != "" {
		fmt.Fprintf(tw, "root after sync\t\t%s\n", r.RootTargetAfter)
	}
	fmt.Fprintf(tw, "rows\t%d\t%d\n", r.CountSource, r.CountTarget)
	fmt.Fprintf(tw, "only in\t%d\t%d\n", r.OnlySource, r.OnlyTarget)
	fmt.Fprintf(tw, "entries read\t%d\t%d\n", r.EntriesReadSource, r.EntriesReadTarget)
	fmt.Fprintf(tw, "nodes read\t%d\t%d\n", r.NodesReadSource, r.NodesReadTarget)
	fmt.Fprintf(tw, "changed\t%d\n", r.Changed)
	fmt.Fprintf(tw, "rounds\t%d\n", r.Rounds)
	fmt.Fprintf(tw, "bytes sent\t%d\n", r.BytesSent)
	fmt.Fprintf(tw, "bytes received\t%d\n", r.BytesReceived)
	fmt.Fprintf(tw, "value bytes\t%d\n", r.ValueBytes)
	if r.Mode != reconcile.Diff {
		fmt.Fprintf(tw, "upserted\t%d\n", r.Upserted)
		fmt.Fprintf(tw, "deleted\t%d\n", r.Deleted)
		fmt.Fprintf(tw, "quarantined\t%d\n", r.Quarantined)
		fmt.Fprintf(tw, "raced\t%d\n", r.Raced)
	}
	fmt.Fprintf(tw, "duration\t%s\n", time.Duration(r.DurationMS)*time.Millisecond)
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.Differences) > 0 {
		n := r.OnlySource + r.OnlyTarget + r.Changed
		fmt.Fprintf(w, "differences (%d of %d):\n", len(r.Differences), n)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, d := range r.Differences {
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", d.Class, clipKey(d.Key), versions(d))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	for _, q := range r.QuarantinedRows {
		fmt.Fprintf(w, "quarantined %s: %s\n", clipKey(q.Key), q.Error)
	}
	return nil
}

// maxKeyText is how much of a key the table shows: a key may be a MiB long (twice that as
// hex), which would bury the report.
const maxKeyText = 120

// clipKey shortens a long key for the table, saying how long it is (--json has it whole).
func clipKey(k string) string {
	if len(k) <= maxKeyText+40 {
		return k
	}
	cut := maxKeyText
	for cut > 0 && !utf8.RuneStart(k[cut]) {
		cut--
	}
	return fmt.Sprintf("%s… (%d characters; --json shows it whole)", k[:cut], utf8.RuneCountInString(k))
}

// versions shows a difference's versions: as times where the endpoint's versions are
// (Difference.SourceVersionText), else as numbers.
func versions(d reconcile.Difference) string {
	src, tgt := version(d.SourceVersion, d.SourceVersionText), version(d.TargetVersion, d.TargetVersionText)
	switch d.Class {
	case "only_source":
		return "source " + src
	case "only_target":
		return "target " + tgt
	}
	return "source " + src + ", target " + tgt
}

func version(v uint64, text string) string {
	if text != "" {
		return text
	}
	return fmt.Sprintf("v%d", v)
}
