package reconcile

import "testing"

// TestDeleteLimitLiterals: a DeleteLimit written as a Go literal is the limit it names
// (it used to be replaced by the default 10% unless it came from ParseDeleteLimit); the
// zero value is the default.
func TestDeleteLimitLiterals(t *testing.T) {
	for _, c := range []struct {
		l    DeleteLimit
		want int64
	}{
		{DeleteLimit{}, 1000},
		{DeleteLimit{N: 5}, 5},
		{DeleteLimit{Percent: 50, IsPercent: true}, 5000},
		{DeleteLimit{IsPercent: true}, 0},
	} {
		if got := c.l.Rows(10_000); got != c.want {
			t.Errorf("%+v.Rows(10000) = %d, want %d", c.l, got, c.want)
		}
	}
	if l, err := ParseDeleteLimit("0"); err != nil || l.Rows(10_000) != 0 {
		t.Errorf(`ParseDeleteLimit("0") = %+v, %v; want no deletes`, l, err)
	}
	if got := (Options{MaxDelete: DeleteLimit{N: 5}}).Defaults().MaxDelete.Rows(10_000); got != 5 {
		t.Errorf("Options.Defaults replaced a literal limit: %d rows", got)
	}
}

// TestParseDeleteLimitRefuses: what is not a count of rows or a percentage from 0 to 100
// is refused (NaN% was taken, and allowed a negative number of deletes).
func TestParseDeleteLimitRefuses(t *testing.T) {
	for _, s := range []string{"NaN%", "nan%", "Inf%", "-Inf%", "101%", "-1%", "-1", "%", "ten", "1.5", ""} {
		if l, err := ParseDeleteLimit(s); err == nil {
			t.Errorf("ParseDeleteLimit(%q) = %+v, want an error", s, l)
		}
	}
	for s, want := range map[string]int64{"10%": 1000, "0.5%": 50, "100%": 10_000, " 7 ": 7} {
		if l, err := ParseDeleteLimit(s); err != nil || l.Rows(10_000) != want {
			t.Errorf("ParseDeleteLimit(%q) = %+v, %v; want %d rows of 10000", s, l, err, want)
		}
	}
}
