package sql

import (
	"strings"
	"testing"
)

// TestParseURLNearMisses: a parameter a letter or two off one of reconcile's own is
// refused with the one it resembles (it went to the driver, whose error did not say so);
// the drivers' own parameters still go through.
func TestParseURLNearMisses(t *testing.T) {
	for raw, want := range map[string]string{
		"postgres://u@h/db?table=t&verison=ver":   `unknown parameter "verison": did you mean "version"?`,
		"mysql://u@h/db?table=t&colums=a,b":       `unknown parameter "colums": did you mean "columns"?`,
		"postgres://u@h/db?table=t&Key=id":        `unknown parameter "Key": did you mean "key"?`,
		"postgres://u@h/db?table=t&expire=ttl":    `unknown parameter "expire": did you mean "expires"?`,
		"sqlite:///x.db?table=t&versions=ver":     `unknown parameter "versions": did you mean "version"?`,
		"postgres://u@h/db?tabel=t&table=t&mod=x": `did you mean`,
	} {
		if _, err := ParseURL(raw); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v; want %q", raw, err, want)
		}
	}
	for _, raw := range []string{
		"postgres://u@h/db?table=t&sslmode=disable&sslkey=k&connect_timeout=5&application_name=a&search_path=s",
		"mysql://u@h/db?table=t&tls=true&timeout=5s&loc=UTC&parseTime=true&collation=utf8mb4_bin&columnsWithAlias=true",
	} {
		if _, err := ParseURL(raw); err != nil {
			t.Errorf("%s: %v", raw, err)
		}
	}
}
