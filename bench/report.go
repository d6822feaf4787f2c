package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// ReadReport reads a report WriteJSON wrote.
func ReadReport(rd io.Reader) (*Report, error) {
	var r Report
	if err := json.NewDecoder(rd).Decode(&r); err != nil {
		return nil, fmt.Errorf("read report: %w", err)
	}
	return &r, nil
}

// WriteTable writes the results as an aligned table for people, then the targets.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\trows\tdrift\tmethod\tdiffering\tfound\tcorrect\tmissed\tlost\treads\tbytes\trounds\twall\tCPU\tpeak RSS (+ above open)\t")
	var skipped []string
	for _, x := range r.Results {
		if strings.HasPrefix(x.Note, "skipped") {
			skipped = append(skipped, fmt.Sprintf("%s %s rows %s %s: %s", x.Method, x.Scenario, count(int64(x.Rows)), pct(x.Drift), x.Note))
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%d\t%d\t%s\t%s\t%d\t%s\t%s\t%s\t\n",
			x.Scenario, count(int64(x.Rows)), pct(x.Drift), methodLabel(x), x.Differing, x.Found, yesNo(x.Correct), x.Missed, x.Lost,
			count(x.Reads), Bytes(x.Bytes), x.Rounds, ms(x.WallMS), ms(x.CPUMS), rss(x))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range skipped {
		fmt.Fprintln(w, s)
	}
	if len(r.Targets) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "target\trows\tdrift\tmeasured\twant\tmet\tfigures")
		for _, t := range r.Targets {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.Name, count(int64(t.Rows)), pct(t.Drift), ratioText(t), wantText(t), yesNo(t.Met), t.Detail)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

func methodLabel(x Result) string {
	if x.Endpoint == "mariadb" && !strings.Contains(x.Method, "(") && x.Method != MethodPTTableSync {
		return x.Method + " (mariadb)"
	}
	return x.Method
}

func ratioText(t Target) string {
	if t.Name == "correct where hwm is not" {
		return yesNo(t.Met)
	}
	return fmt.Sprintf("%.1fx", t.Measured)
}

func wantText(t Target) string {
	if t.Name == "correct where hwm is not" {
		return "yes"
	}
	return fmt.Sprintf(">= %gx", t.Want)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "NO"
}

func pct(f float64) string { return fmt.Sprintf("%g%%", f*100) }

// count renders n with k/M suffixes.
func count(n int64) string {
	switch {
	case n >= 10_000_000:
		return fmt.Sprintf("%.0fM", float64(n)/1e6)
	case n >= 1_000_000:
		return fmt.Sprintf("%.1fM", float64(n)/1e6)
	case n >= 10_000:
		return fmt.Sprintf("%.0fk", float64(n)/1e3)
	}
	return fmt.Sprint(n)
}

// Bytes renders a byte count in B, kB, MB or GB (powers of 1000).
func Bytes(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2f GB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.2f MB", float64(n)/1e6)
	case n >= 1e4:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d B", n)
}

func ms(v float64) string {
	switch {
	case v >= 10_000:
		return fmt.Sprintf("%.1f s", v/1000)
	case v >= 1000:
		return fmt.Sprintf("%.2f s", v/1000)
	}
	return fmt.Sprintf("%.1f ms", v)
}

func rss(x Result) string {
	if x.PeakRSS == 0 {
		return "-"
	}
	s := fmt.Sprintf("%.0f MB", float64(x.PeakRSS)/1e6)
	if x.OpenRSS > 0 {
		s = fmt.Sprintf("%.0f MB (+%.0f)", float64(x.PeakRSS)/1e6, float64(x.PeakRSS-x.OpenRSS)/1e6)
	}
	if x.RSSScope == "process" {
		s += " (process)"
	}
	return s
}

// WriteMarkdown writes the results and targets as Markdown tables (for the README).
func (r *Report) WriteMarkdown(w io.Writer) error {
	fmt.Fprintln(w, "| scenario | rows | drift | method | differing | correct (missed, lost) | reads | bytes | rounds | wall | CPU | peak RSS (+ above open) |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, x := range r.Results {
		if strings.HasPrefix(x.Note, "skipped") {
			continue
		}
		ok := "yes"
		if !x.Correct {
			ok = fmt.Sprintf("**no** (%d, %d)", x.Missed, x.Lost)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %d | %s | %s | %s | %d | %s | %s | %s |\n",
			x.Scenario, count(int64(x.Rows)), pct(x.Drift), methodLabel(x), x.Differing, ok,
			count(x.Reads), Bytes(x.Bytes), x.Rounds, ms(x.WallMS), ms(x.CPUMS), rss(x))
	}
	if len(r.Targets) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| target | rows | drift | measured | want | met | figures |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- |")
	for _, t := range r.Targets {
		met := "yes"
		if !t.Met {
			met = "**no**"
		}
		_, err := fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", t.Name, count(int64(t.Rows)), pct(t.Drift), ratioText(t), wantText(t), met, t.Detail)
		if err != nil {
			return err
		}
	}
	return nil
}
