package bench

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// WritePlots draws the report's figures into dir as format ("png" or "svg") files and
// returns their paths:
//
//   - bytes-vs-differing: protocol bytes against differing keys, the mixed scenario at
//     the size measured with the most drifts (the largest of those);
//   - rounds-vs-rows, time-vs-rows, reads-vs-rows, rss-vs-rows: round trips, wall time,
//     records read and peak RSS against rows, the mixed scenario at its smallest drift.
//
// One line per method on Badger stores; a method that was wrong on any point of a line is
// labelled "(wrong)" in the legend.
func WritePlots(r *Report, dir, format string) ([]string, error) {
	if format != "png" && format != "svg" {
		return nil, fmt.Errorf("plot format %q: want png or svg", format)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("plots: %w", err)
	}
	var mixed []Result
	for _, x := range r.Results {
		if x.Scenario == "mixed" && x.Endpoint == "badger" && x.Note == "" {
			mixed = append(mixed, x)
		}
	}
	if len(mixed) == 0 {
		return nil, fmt.Errorf("plots: the report has no results of the mixed scenario")
	}
	var out []string
	save := func(p *plot.Plot, name string) error {
		path := filepath.Join(dir, name+"."+format)
		if err := p.Save(7*vg.Inch, 4.5*vg.Inch, path); err != nil {
			return fmt.Errorf("plot %s: %w", name, err)
		}
		out = append(out, path)
		return nil
	}

	// Bytes against differing keys, at the largest size with several drifts.
	drifts := map[int]map[float64]bool{}
	for _, x := range mixed {
		if drifts[x.Rows] == nil {
			drifts[x.Rows] = map[float64]bool{}
		}
		drifts[x.Rows][x.Drift] = true
	}
	best := 0 // the size with the most drifts (the largest of those)
	for rows, ds := range drifts {
		if n := len(ds); n > 1 && (n > len(drifts[best]) || n == len(drifts[best]) && rows > best) {
			best = rows
		}
	}
	if best > 0 {
		p := newPlot(fmt.Sprintf("Protocol bytes, %s live rows (mixed drift)", count(int64(best))), "differing keys", "bytes (values excluded)")
		err := lines(p, mixed, func(x Result) bool { return x.Rows == best }, func(x Result) (float64, float64) {
			return float64(x.Differing), float64(x.Bytes)
		})
		if err != nil {
			return out, err
		}
		if err := save(p, "bytes-vs-differing"); err != nil {
			return out, err
		}
	}

	// Against rows, at the smallest drift measured.
	low := math.Inf(1)
	for _, x := range mixed {
		if x.Drift > 0 {
			low = math.Min(low, x.Drift)
		}
	}
	at := func(x Result) bool { return x.Drift == low }
	for _, f := range []struct {
		name, title, y string
		val            func(Result) float64
	}{
		{"rounds-vs-rows", "Round trips", "round trips", func(x Result) float64 { return float64(x.Rounds) }},
		{"time-vs-rows", "Wall time", "milliseconds", func(x Result) float64 { return x.WallMS }},
		{"reads-vs-rows", "Records read, both sides", "records (index entries, nodes, rows)", func(x Result) float64 { return float64(x.Reads) }},
		{"rss-vs-rows", "Peak RSS", "MB", func(x Result) float64 { return float64(x.PeakRSS) / 1e6 }},
	} {
		p := newPlot(fmt.Sprintf("%s, %g%% of keys differing (mixed drift)", f.title, low*100), "live rows", f.y)
		if err := lines(p, mixed, at, func(x Result) (float64, float64) { return float64(x.Rows), f.val(x) }); err != nil {
			return out, err
		}
		if err := save(p, f.name); err != nil {
			return out, err
		}
	}
	return out, nil
}

func newPlot(title, x, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = x
	p.Y.Label.Text = y
	p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
	p.X.Tick.Marker, p.Y.Tick.Marker = plot.LogTicks{Prec: -1}, plot.LogTicks{Prec: -1}
	p.Legend.Top = true
	p.Legend.Left = true
	p.Add(plotter.NewGrid())
	return p
}

// lines adds one line per method of the results that keep selects, at the points xy
// gives (points at or below zero cannot sit on a log scale and are left out).
func lines(p *plot.Plot, rs []Result, keep func(Result) bool, xy func(Result) (float64, float64)) error {
	type pt struct{ x, y float64 }
	pts := map[string][]pt{}
	wrong := map[string]bool{}
	for _, x := range rs {
		if !keep(x) {
			continue
		}
		a, b := xy(x)
		if a <= 0 || b <= 0 {
			continue
		}
		pts[x.Method] = append(pts[x.Method], pt{a, b})
		if !x.Correct {
			wrong[x.Method] = true
		}
	}
	for i, m := range MethodNames {
		ps := pts[m]
		if len(ps) == 0 {
			continue
		}
		sort.Slice(ps, func(a, b int) bool { return ps[a].x < ps[b].x })
		xys := make(plotter.XYs, len(ps))
		for j, q := range ps {
			xys[j].X, xys[j].Y = q.x, q.y
		}
		l, s, err := plotter.NewLinePoints(xys)
		if err != nil {
			return fmt.Errorf("plot: %w", err)
		}
		c := plotutil.Color(i)
		if m == MethodReconcile {
			c = color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}
			l.Width = vg.Points(2)
		}
		l.Color, s.Color = c, c
		s.Shape = plotutil.Shape(i)
		if wrong[m] {
			l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
			s.Shape = draw.CrossGlyph{}
		}
		p.Add(l, s)
		label := m
		if wrong[m] {
			label += " (wrong)"
		}
		p.Legend.Add(label, l, s)
	}
	// Room above the lines for the legend (the scale is logarithmic).
	p.Y.Max *= 30
	return nil
}
