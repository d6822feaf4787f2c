package schedule

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/reconcile-dev/reconcile/reconcile"
)

func TestParse(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "pg-password")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TEST_REPLICA_TOKEN", "tok")
	cfg, err := Parse([]byte(`
concurrency: 3
grace-period: 1m
defaults:
  mode: mirror
  interval: 5m
  jitter: 30s
  max-delete: 5%
  batch-rows: 128
jobs:
  - name: users
    source:
      url: postgres://app@db1:5432/app?table=users
      password-file: ` + secret + `
    target:
      url: https://replica:7443
      token-env: TEST_REPLICA_TOKEN
  - name: audit
    source: badger:///var/lib/a
    target: badger:///var/lib/b
    mode: diff
    interval: 1h
    timeout: 2m
    max-delete: "100"
`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Concurrency != 3 || cfg.GracePeriod != time.Minute || cfg.History != DefaultHistory || len(cfg.Jobs) != 2 {
		t.Fatalf("config %+v", cfg)
	}
	u, a := cfg.Jobs[0], cfg.Jobs[1]
	if u.Mode != reconcile.Mirror || u.Interval != 5*time.Minute || u.Jitter != 30*time.Second || u.Timeout != DefaultTimeout ||
		u.Backoff != DefaultBackoff || u.MaxBackoff != 5*time.Minute || u.Session.BatchRows != 128 || u.Session.MaxDelete.String() != "5%" {
		t.Fatalf("users inherits the defaults: %+v", u)
	}
	if pw, tok, err := u.Source.secrets(); err != nil || pw != "s3cret" || tok != "" {
		t.Fatalf("source secrets %q %q %v", pw, tok, err)
	}
	if _, tok, err := u.Target.secrets(); err != nil || tok != "tok" {
		t.Fatalf("target token %q %v", tok, err)
	}
	if a.Mode != reconcile.Diff || a.Interval != time.Hour || a.Timeout != 2*time.Minute || a.Session.MaxDelete.String() != "100" || a.Source.URL != "badger:///var/lib/a" {
		t.Fatalf("audit: %+v", a)
	}
	if r := (EndpointConfig{URL: "postgres://app:pw@db/app?table=t"}).Redacted(); strings.Contains(r, "pw") {
		t.Fatalf("redacted %s", r)
	}
}

// TestBadConfig checks that every mistake is refused with the job and field it is about.
func TestBadConfig(t *testing.T) {
	const job = `
  - name: users
    source: badger:///a
    target: badger:///b
    mode: mirror
    interval: 5m
`
	t.Setenv("TEST_EMPTY_SECRET", "")
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"unknown top-level field", "concurency: 2\njobs:" + job, []string{`unknown field "concurency"`, "line 1"}},
		{"unknown job field", "jobs:" + job + "    intrval: 5m\n", []string{`job "users": unknown field "intrval"`, "line 7"}},
		{"unknown endpoint field", "jobs:\n  - name: users\n    source:\n      url: badger:///a\n      tokn-file: x\n    target: badger:///b\n    mode: diff\n    interval: 1m\n",
			[]string{`job "users": source: unknown field "tokn-file"`, "line 5"}},
		{"wrong type", "jobs:" + job + "    batch-rows: many\n", []string{`job "users": batch-rows:`, "cannot unmarshal", "line 7"}},
		{"bad duration", "jobs:" + strings.Replace(job, "5m", "5x", 1), []string{`job "users": interval: "5x" is not a duration`}},
		{"number without unit", "jobs:" + strings.Replace(job, "5m", "300", 1), []string{`job "users": interval: "300" is not a duration (a number needs a unit)`}},
		{"no interval", "jobs:" + strings.Replace(job, "    interval: 5m\n", "", 1), []string{`job "users": interval: required`}},
		{"no mode", "jobs:" + strings.Replace(job, "    mode: mirror\n", "", 1), []string{`job "users": mode: required`}},
		{"merge", "jobs:" + strings.Replace(job, "mirror", "merge", 1), []string{`job "users": mode: "merge" is not supported`}},
		{"no target", "jobs:" + strings.Replace(job, "    target: badger:///b\n", "", 1), []string{`job "users": target: required`}},
		{"same endpoints", "jobs:" + strings.Replace(job, "badger:///b", "badger:///a", 1), []string{`job "users": target: the same endpoint as the source`}},
		{"bad max-delete", "jobs:" + job + "    max-delete: lots\n", []string{`job "users": max-delete: "lots"`}},
		{"negative", "jobs:" + job + "    attempts: -1\n", []string{`job "users": attempts: must not be negative`}},
		{"fingerprint", "jobs:" + job + "    fingerprint-bytes: 17\n", []string{`job "users": fingerprint-bytes: must be between 1 and 16`}},
		{"fanout", "jobs:" + job + "    fanout: 1\n", []string{`job "users": fanout: must be at least 2`}},
		{"backoffs", "jobs:" + job + "    backoff: 1m\n    max-backoff: 10s\n", []string{`job "users": max-backoff: shorter than backoff`}},
		{"duplicate", "jobs:" + job + strings.Replace(job, "badger:///b", "badger:///c", 1), []string{`job "users" (jobs[1]): name: another job has this name`}},
		// Two jobs of one name keep their problems apart: the second's bad interval does
		// not hide the first's.
		{"duplicate with problems", "jobs:" + strings.Replace(job, "5m", "-5s", 1) + strings.Replace(job, "5m", "5", 1), []string{
			`job "users" (jobs[0]): interval: -5s: must be positive`, `job "users" (jobs[1]): interval: "5" is not a duration`, `job "users" (jobs[1]): name: another job has this name`}},
		{"bad name", "jobs:" + strings.Replace(job, "users", "my job!", 1), []string{`job "my job!": name: use up to 64 letters`}},
		{"no name", "jobs:" + strings.Replace(job, "- name: users\n    source", "- source", 1), []string{"jobs[0]: name: required"}},
		{"missing secret file", "jobs:\n  - name: users\n    source: {url: 'postgres://u@h/db?table=t', password-file: /no/such/secret}\n    target: badger:///b\n    mode: diff\n    interval: 1m\n",
			[]string{`job "users": source: password: read secret file`, "no such file"}},
		{"empty secret env", "jobs:\n  - name: users\n    source: badger:///a\n    target: {url: 'https://r:1', token-env: TEST_EMPTY_SECRET}\n    mode: diff\n    interval: 1m\n",
			[]string{`job "users": target: token: environment variable TEST_EMPTY_SECRET is unset or empty`}},
		{"two secrets", "jobs:\n  - name: users\n    source: badger:///a\n    target: {url: 'https://r:1', token-env: A, token-file: B}\n    mode: diff\n    interval: 1m\n",
			[]string{`job "users": target: give token-file or token-env, not both`}},
		{"endpoint in defaults", "defaults:\n  source: badger:///a\njobs:" + job, []string{"defaults: name, source and target belong in each job"}},
		{"no jobs", "concurrency: 2\n", []string{"jobs: no jobs"}},
		{"empty file", "", []string{"jobs: no jobs"}},
		{"not YAML", "jobs: [\n", []string{"did not find expected"}},
		{"negative concurrency", "concurrency: -1\njobs:" + job, []string{"concurrency: must be at least 1"}},
	} {
		_, err := Parse([]byte(tc.yaml))
		var ce *ConfigError
		if !errors.As(err, &ce) {
			t.Errorf("%s: err %v, want a *ConfigError", tc.name, err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q lacks %q", tc.name, err, w)
			}
		}
	}

	// Several problems are all reported, each on its own line.
	_, err := Parse([]byte("jobs:\n  - name: a\n    mode: diff\n  - name: b\n    source: x\n    target: y\n    mode: mirror\n    interval: -1s\n"))
	if err == nil || strings.Count(err.Error(), "\n") < 3 || !strings.Contains(err.Error(), `job "a": source: required`) || !strings.Contains(err.Error(), `job "b": interval: -1s: must be positive`) {
		t.Fatalf("err %v", err)
	}
}

// TestNewChecksURLs checks URLs with the CheckFunc at New, naming job and field.
func TestNewChecksURLs(t *testing.T) {
	check := func(u string, role Role) (Store, error) {
		if strings.HasPrefix(u, "bogus:") {
			return Store{}, errors.New("unknown scheme bogus")
		}
		if role == Source && strings.HasPrefix(u, "ftp:") {
			return Store{}, errors.New("an ftp endpoint can only be a target")
		}
		return Store{Name: strings.TrimSuffix(u, "/")}, nil
	}
	open := (&opener{}).open
	for _, tc := range []struct {
		src, dst string
		want     string
	}{
		{"bogus:x", "badger:///b", `job "j": source: unknown scheme bogus`},
		{"badger:///a", "bogus:y", `job "j": target: unknown scheme bogus`},
		{"ftp://r:1", "badger:///b", `job "j": source: an ftp endpoint can only be a target`},
		{"badger:///a", "badger:///a/", `job "j": target: the same store as the source`},
	} {
		_, err := New(Config{Jobs: []Job{{Name: "j", Source: EndpointConfig{URL: tc.src}, Target: EndpointConfig{URL: tc.dst}, Mode: reconcile.Diff, Interval: time.Minute}}},
			Options{Open: open, Check: check})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s -> %s: err %v, want %q", tc.src, tc.dst, err, tc.want)
		}
	}
	if _, err := New(Config{}, Options{}); err == nil {
		t.Error("New without an opener must fail")
	}
}

// TestDocumentedConfigs parses the configuration examples of docs/run.md and README.md,
// with their secret files and variables provided.
func TestDocumentedConfigs(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("pw"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DATA_TIER_TOKEN", "tok")
	for _, doc := range []string{"../../docs/run.md", "../../README.md"} {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		i := strings.Index(text, "```yaml\n")
		if i < 0 {
			t.Fatalf("%s has no yaml example", doc)
		}
		block := text[i+len("```yaml\n"):]
		block = block[:strings.Index(block, "```")]
		for _, p := range []string{"/run/secrets/pg-password", "/run/secrets/pg"} {
			block = strings.ReplaceAll(block, p+"\n", secret+"\n")
			block = strings.ReplaceAll(block, p+"}", secret+"}")
		}
		cfg, err := Parse([]byte(block))
		if err != nil {
			t.Fatalf("%s: %v\n%s", doc, err, block)
		}
		if len(cfg.Jobs) == 0 {
			t.Fatalf("%s: no jobs", doc)
		}
	}
}

// FuzzParse feeds Parse what a configuration file could hold: it returns a configuration
// that validates again, or an error, and never panics.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`
concurrency: 2
grace-period: 30s
defaults:
  mode: mirror
  interval: 5m
  max-delete: 1%
jobs:
  - name: users
    source: {url: "postgres://app:pw@db1/app?table=users"}
    target: badger:///var/lib/replica/users
    jitter: 10s
  - name: audit
    source: badger:///a
    target: badger:///b
    mode: diff
    interval: 1h
`))
	f.Add([]byte("jobs:\n  - name: x\n    source: badger:///a\n    target: badger:///a\n"))
	f.Add([]byte("jobs: [{interval: -5m}]\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data)
		if err != nil {
			if cfg != nil {
				t.Fatalf("Parse returned a configuration and an error: %v", err)
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("a configuration Parse accepted does not validate: %v", err)
		}
		for _, j := range cfg.Jobs {
			if j.Source.URL == "" || j.Target.URL == "" || j.Interval <= 0 {
				t.Fatalf("Parse accepted job %+v", j)
			}
		}
	})
}

// TestLoadFileReportsEveryProblem: unknown fields, values of the wrong type, durations
// that do not parse, missing fields and URLs the check refuses are all reported by one
// error, grouped by job, and a field that failed to parse is not also called missing.
func TestLoadFileReportsEveryProblem(t *testing.T) {
	path := filepath.Join(t.TempDir(), "jobs.yaml")
	data := `jobs:
  - name: a
    source: badger:///a
    target: nope://x
    every: 10s
    colour: red
  - name: b
    source: {url: 'badger:///b', pasword-file: x}
    target: badger:///c
    interval: banana
    batch-rows: many
    mode: mirror
`
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	check := func(u string, _ Role) (Store, error) {
		if strings.HasPrefix(u, "nope:") {
			return Store{}, errors.New(`unknown scheme "nope"`)
		}
		return Store{Name: u}, nil
	}
	_, err := LoadFile(path, check)
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("err %v, want a *ConfigError", err)
	}
	want := []string{
		`job "a": unknown field "every" (line 5)`,
		`job "a": unknown field "colour" (line 6)`,
		`job "a": mode: required`,
		`job "a": interval: required`,
		`job "a": target: unknown scheme "nope"`,
		`job "b": source: unknown field "pasword-file" (line 8)`,
		`job "b": batch-rows: cannot unmarshal`,
		`job "b": interval: "banana" is not a duration`,
	}
	if len(ce.Problems) != len(want) {
		t.Fatalf("%d problems, want %d:\n%v", len(ce.Problems), len(want), err)
	}
	for i, w := range want {
		if !strings.HasPrefix(ce.Problems[i], w) {
			t.Errorf("problem %d: %q, want %q", i, ce.Problems[i], w)
		}
	}
	// Without a check, the same file reports everything but the URL.
	if _, err := LoadFile(path, nil); !errors.As(err, &ce) || len(ce.Problems) != len(want)-1 {
		t.Fatalf("without a check: %v", err)
	}
}

// max-backoff defaults to the interval, or to backoff when that is longer (docs/run.md).
func TestMaxBackoffDefault(t *testing.T) {
	for _, c := range []struct {
		fields           string
		backoff, maxWait time.Duration
	}{
		{"interval: 3s\n    backoff: 1s\n", time.Second, 3 * time.Second},
		{"interval: 3s\n", DefaultBackoff, DefaultBackoff},
		{"interval: 5m\n", DefaultBackoff, 5 * time.Minute},
		{"interval: 5m\n    max-backoff: 1m\n", DefaultBackoff, time.Minute},
	} {
		cfg, err := Parse([]byte("jobs:\n  - name: j\n    source: badger:///a\n    target: badger:///b\n    mode: diff\n    " + c.fields))
		if err != nil {
			t.Fatal(err)
		}
		if j := cfg.Jobs[0]; j.Backoff != c.backoff || j.MaxBackoff != c.maxWait {
			t.Errorf("%q: backoff %s, max-backoff %s; want %s, %s", c.fields, j.Backoff, j.MaxBackoff, c.backoff, c.maxWait)
		}
	}
}
