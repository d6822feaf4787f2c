package schedule

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/reconcile-dev/reconcile/reconcile"
)

// Config is a scheduler's whole configuration: what `reconcile run --config` reads, or
// what a service builds in Go. Zero fields take the defaults Validate documents.
type Config struct {
	// Concurrency is how many runs may go on at once across all jobs (default 2).
	Concurrency int
	// GracePeriod bounds how long a shutdown waits for the apply batches in flight
	// (default 30s); past it their contexts are cancelled and their transactions write
	// nothing.
	GracePeriod time.Duration
	// History is how many recent results each job keeps for /jobs (default 20).
	History int
	// Jobs run in this order when they are due at the same time.
	Jobs []Job
}

// Job is one named pair of endpoints reconciled on a schedule.
type Job struct {
	Name           string
	Source, Target EndpointConfig
	// Mode is reconcile.Mirror (the target is made equal to the source) or reconcile.Diff
	// (report only).
	Mode reconcile.Mode
	// Interval is the time from the end of one run to the start of the next; each wait
	// adds a random part of Jitter (and the first run waits a random part of Jitter).
	Interval, Jitter time.Duration
	// Timeout bounds one run, opening the endpoints included (default 30m).
	Timeout time.Duration
	// Backoff is the wait after a failed run (default 10s), doubled after each further
	// failure up to MaxBackoff (default: Interval, or Backoff if that is longer).
	Backoff, MaxBackoff time.Duration
	// Session holds the session's settings: MaxDelete, BatchRows, MaxBatchRows,
	// BatchBytes, Attempts, Fanout, LeafMax, FingerprintBytes (zero: the engine's
	// defaults). Mode is taken from the job; Progress, Observer, Logger and Stop are set
	// by the scheduler; Resolve is kept, for services that embed the scheduler.
	Session reconcile.Options
}

// EndpointConfig names one endpoint of a job and where its secrets come from. Secrets
// are read from their file or environment variable at every run (so a rotated secret is
// picked up) and never appear in logs, /jobs or errors.
type EndpointConfig struct {
	// URL is the endpoint as the CLI takes it (badger:///path, postgres://…, https://…).
	URL string
	// PasswordFile or PasswordEnv give the password of a database URL.
	PasswordFile, PasswordEnv string
	// TokenFile or TokenEnv give the bearer token of an http(s) endpoint.
	TokenFile, TokenEnv string
}

// secrets reads the endpoint's password and token.
func (e EndpointConfig) secrets() (password, token string, err error) {
	if password, err = readSecret(e.PasswordFile, e.PasswordEnv); err != nil {
		return "", "", fmt.Errorf("password: %w", err)
	}
	if token, err = readSecret(e.TokenFile, e.TokenEnv); err != nil {
		return "", "", fmt.Errorf("token: %w", err)
	}
	return password, token, nil
}

// maxSecretFile bounds a secret file.
const maxSecretFile = 64 << 10

// readSecret reads a secret from file or env (at most one is set); "" when neither is.
func readSecret(file, env string) (string, error) {
	switch {
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("read secret file: %w", err)
		}
		if len(b) > maxSecretFile {
			return "", fmt.Errorf("secret file %s: longer than %d bytes", file, maxSecretFile)
		}
		s := strings.TrimSpace(string(b))
		if s == "" {
			return "", fmt.Errorf("secret file %s is empty", file)
		}
		return s, nil
	case env != "":
		s := strings.TrimSpace(os.Getenv(env))
		if s == "" {
			return "", fmt.Errorf("environment variable %s is unset or empty", env)
		}
		return s, nil
	}
	return "", nil
}

// Redacted returns the URL with any password in it replaced by "xxxxx", for logs and
// /jobs.
func (e EndpointConfig) Redacted() string { return reconcile.RedactURL(e.URL) }

// Defaults of Config and Job.
const (
	DefaultConcurrency = 2
	DefaultGracePeriod = 30 * time.Second
	DefaultHistory     = 20
	DefaultTimeout     = 30 * time.Minute
	DefaultBackoff     = 10 * time.Second
	maxHistory         = 10000
)

var jobName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// problems collects configuration errors, each naming its job and field. A field that
// could not be decoded or parsed is settled: the later checks, which see its zero value,
// add nothing more about it.
type problems struct {
	list    []problem
	settled map[string]bool // by fieldKey
}

type problem struct{ where, msg string }

func fieldKey(where, field string) string { return where + "\x00" + field }

func (p *problems) add(where, field, format string, args ...any) {
	if p.settled[fieldKey(where, field)] {
		return
	}
	msg := fmt.Sprintf(format, args...)
	switch {
	case where != "" && field != "":
		msg = where + ": " + field + ": " + msg
	case where != "":
		msg = where + ": " + msg
	case field != "":
		msg = field + ": " + msg
	}
	p.list = append(p.list, problem{where, msg})
}

// settle marks a field whose problem has been added.
func (p *problems) settle(where, field string) {
	if p.settled == nil {
		p.settled = map[string]bool{}
	}
	p.settled[fieldKey(where, field)] = true
}

// err lists the problems grouped by job (the file's own settings first), each group in
// the order its problems were found.
func (p *problems) err() error {
	if len(p.list) == 0 {
		return nil
	}
	first := map[string]int{"": -1}
	for i, q := range p.list {
		if _, ok := first[q.where]; !ok {
			first[q.where] = i
		}
	}
	list := slices.Clone(p.list)
	slices.SortStableFunc(list, func(a, b problem) int { return first[a.where] - first[b.where] })
	msgs := make([]string, len(list))
	for i, q := range list {
		msgs[i] = q.msg
	}
	return &ConfigError{Problems: msgs}
}

// ConfigError lists everything wrong with a configuration, each problem naming the job
// and field it is about (`job "users": interval: …`).
type ConfigError struct {
	Problems []string
}

// Error lists the problems, one a line when there are several.
func (e *ConfigError) Error() string {
	if len(e.Problems) == 1 {
		return "invalid config: " + e.Problems[0]
	}
	return "invalid config:\n  " + strings.Join(e.Problems, "\n  ")
}

// jobLabel names job i of a list whose names are names, for messages: by its name, with
// its place in the list when another job has the name too (so their problems stay apart).
func jobLabel(names []string, i int) string {
	name := names[i]
	if name == "" {
		return fmt.Sprintf("jobs[%d]", i)
	}
	for k, other := range names {
		if k != i && other == name {
			return fmt.Sprintf("job %q (jobs[%d])", name, i)
		}
	}
	return fmt.Sprintf("job %q", name)
}

// jobNames returns the names of jobs.
func jobNames(jobs []Job) []string {
	names := make([]string, len(jobs))
	for i, j := range jobs {
		names[i] = j.Name
	}
	return names
}

// Validate fills in defaults and checks c: every job named (letters, digits, '_', '.',
// '-'; unique), both endpoints given with at most one source per secret, secret files
// and variables readable, a mode of mirror or diff, a positive interval, no negative
// durations or sizes. It returns a *ConfigError naming the job and field of each
// problem.
func (c *Config) Validate() error {
	var p problems
	c.validate(&p)
	return p.err()
}

func (c *Config) validate(p *problems) {
	if c.Concurrency < 0 {
		p.add("", "concurrency", "must be at least 1")
	} else if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.GracePeriod < 0 {
		p.add("", "grace-period", "must not be negative")
	} else if c.GracePeriod == 0 {
		c.GracePeriod = DefaultGracePeriod
	}
	if c.History < 0 || c.History > maxHistory {
		p.add("", "history", "must be between 1 and %d", maxHistory)
	} else if c.History == 0 {
		c.History = DefaultHistory
	}
	if len(c.Jobs) == 0 {
		p.add("", "jobs", "no jobs: give at least one")
	}
	seen := map[string]bool{}
	names := jobNames(c.Jobs)
	for i := range c.Jobs {
		j := &c.Jobs[i]
		where := jobLabel(names, i)
		switch {
		case j.Name == "":
			p.add(where, "name", "required")
		case !jobName.MatchString(j.Name):
			p.add(where, "name", "use up to 64 letters, digits, '_', '.' and '-', starting with a letter or digit")
		case seen[j.Name]:
			p.add(where, "name", "another job has this name")
		}
		seen[j.Name] = true
		j.validate(where, p)
	}
}

// checkEndpoints checks every job's given URLs with check and returns the store names of
// each job's source and target (the URLs as written where check is nil or refuses one).
func checkEndpoints(jobs []Job, check CheckFunc, p *problems) (stores [][2]string) {
	names := jobNames(jobs)
	for i, j := range jobs {
		where := jobLabel(names, i)
		names := [2]string{j.Source.URL, j.Target.URL}
		if check != nil && j.Source.URL != "" && j.Target.URL != "" {
			a, aerr := check(j.Source.URL, Source)
			if aerr != nil {
				p.add(where, "source", "%v", aerr)
			}
			b, berr := check(j.Target.URL, Target)
			if berr != nil {
				p.add(where, "target", "%v", berr)
			}
			if aerr == nil && berr == nil {
				names = [2]string{a.Name, b.Name}
				if a.Name == b.Name && j.Source.URL != j.Target.URL {
					p.add(where, "target", "the same store as the source")
				}
			}
		}
		stores = append(stores, names)
	}
	return stores
}

func (j *Job) validate(where string, p *problems) {
	for _, e := range []struct {
		field string
		ep    EndpointConfig
	}{{"source", j.Source}, {"target", j.Target}} {
		if e.ep.URL == "" {
			p.add(where, e.field, "required (an endpoint URL such as badger:///var/lib/replica)")
			continue
		}
		if e.ep.PasswordFile != "" && e.ep.PasswordEnv != "" {
			p.add(where, e.field, "give password-file or password-env, not both")
		}
		if e.ep.TokenFile != "" && e.ep.TokenEnv != "" {
			p.add(where, e.field, "give token-file or token-env, not both")
		}
		if _, _, err := e.ep.secrets(); err != nil {
			p.add(where, e.field, "%v", err)
		}
	}
	if j.Source.URL != "" && j.Source.URL == j.Target.URL {
		p.add(where, "target", "the same endpoint as the source")
	}
	switch j.Mode {
	case reconcile.Mirror, reconcile.Diff:
	case "":
		p.add(where, "mode", "required: mirror (make the target equal to the source) or diff (report only)")
	default:
		p.add(where, "mode", "%q is not supported: use mirror or diff", j.Mode)
	}
	if j.Interval < 0 {
		p.add(where, "interval", "%s: must be positive, such as 5m", j.Interval)
	} else if j.Interval == 0 {
		p.add(where, "interval", "required: a positive duration such as 5m")
	}
	for _, d := range []struct {
		field string
		v     *time.Duration
		def   time.Duration
	}{{"jitter", &j.Jitter, 0}, {"timeout", &j.Timeout, DefaultTimeout}, {"backoff", &j.Backoff, DefaultBackoff}, {"max-backoff", &j.MaxBackoff, 0}} {
		if *d.v < 0 {
			p.add(where, d.field, "must not be negative")
		} else if *d.v == 0 {
			*d.v = d.def
		}
	}
	if j.MaxBackoff == 0 { // its default depends on backoff's, set just above
		j.MaxBackoff = max(j.Interval, j.Backoff)
	}
	if j.MaxBackoff < j.Backoff {
		p.add(where, "max-backoff", "shorter than backoff (%s)", j.Backoff)
	}
	s := &j.Session
	for _, n := range []struct {
		field string
		v     int
	}{{"batch-rows", s.BatchRows}, {"max-batch-rows", s.MaxBatchRows}, {"batch-bytes", s.BatchBytes}, {"attempts", s.Attempts}, {"fanout", s.Fanout}, {"leaf-max", s.LeafMax}} {
		if n.v < 0 {
			p.add(where, n.field, "must not be negative (0 or absent means the default)")
		}
	}
	if s.Fanout == 1 {
		p.add(where, "fanout", "must be at least 2 (0 or absent means the default)")
	}
	if s.FingerprintBytes < 0 || s.FingerprintBytes > 16 {
		p.add(where, "fingerprint-bytes", "must be between 1 and 16 (0 or absent means the default)")
	}
	if s.MaxBatchRows > 0 && s.BatchRows > s.MaxBatchRows {
		p.add(where, "batch-rows", "larger than max-batch-rows (%d)", s.MaxBatchRows)
	}
}

// The configuration file (YAML). Field names are those of the CLI's flags.

type fileConfig struct {
	Concurrency int       `yaml:"concurrency"`
	GracePeriod string    `yaml:"grace-period"`
	History     int       `yaml:"history"`
	Defaults    *fileJob  `yaml:"defaults"`
	Jobs        []fileJob `yaml:"jobs"`
}

type fileJob struct {
	Name         string        `yaml:"name"`
	Source       *fileEndpoint `yaml:"source"`
	Target       *fileEndpoint `yaml:"target"`
	Mode         string        `yaml:"mode"`
	Interval     string        `yaml:"interval"`
	Jitter       string        `yaml:"jitter"`
	Timeout      string        `yaml:"timeout"`
	Backoff      string        `yaml:"backoff"`
	MaxBackoff   string        `yaml:"max-backoff"`
	MaxDelete    string        `yaml:"max-delete"`
	BatchRows    int           `yaml:"batch-rows"`
	MaxBatchRows int           `yaml:"max-batch-rows"`
	BatchBytes   int           `yaml:"batch-bytes"`
	Attempts     int           `yaml:"attempts"`
	Fanout       int           `yaml:"fanout"`
	LeafMax      int           `yaml:"leaf-max"`
	FPBytes      int           `yaml:"fingerprint-bytes"`
}

// fileEndpoint is an endpoint: a URL string, or a mapping with url and secrets.
type fileEndpoint struct {
	URL          string `yaml:"url"`
	PasswordFile string `yaml:"password-file"`
	PasswordEnv  string `yaml:"password-env"`
	TokenFile    string `yaml:"token-file"`
	TokenEnv     string `yaml:"token-env"`
}

// endpointField reports whether k is a field of an endpoint mapping.
func endpointField(k string) bool {
	switch k {
	case "url", "password-file", "password-env", "token-file", "token-env":
		return true
	}
	return false
}

// UnmarshalYAML takes a plain URL or a mapping. yaml's KnownFields does not reach into
// a custom unmarshaller, so unknown keys are refused here, with their line.
func (e *fileEndpoint) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		e.URL = n.Value
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: want a URL or a mapping with url and password-file, password-env, token-file or token-env", n.Line)}}
	}
	// A *yaml.TypeError, unlike other errors, lets the decoder go on to the rest of the
	// file, so every problem is reported at once.
	var unknown []string
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; !endpointField(k.Value) {
			unknown = append(unknown, fmt.Sprintf("line %d: field %s not found in type endpoint", k.Line, k.Value))
		}
	}
	if unknown != nil {
		return &yaml.TypeError{Errors: unknown}
	}
	type plain fileEndpoint
	return n.Decode((*plain)(e))
}

// Parse reads a YAML configuration and validates it (see Config.Validate). Unknown fields
// are errors; every error names the job and field (and the line) it is about, and all of
// them are reported at once. Durations are strings such as "90s" or "5m"; a job's absent
// fields take the values under `defaults:`.
func Parse(data []byte) (*Config, error) {
	cfg, p := parse(data)
	if err := p.err(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// LoadFile reads the configuration file at path, parses it as Parse does and checks
// every URL with check (nil: none; New checks them again): one error lists every problem
// of the file.
func LoadFile(path string, check CheckFunc) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cfg, p := parse(data)
	if cfg != nil {
		checkEndpoints(cfg.Jobs, check, &p)
	}
	if err := p.err(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// parse decodes and validates data. The Config is nil only when data is not YAML at all;
// otherwise it holds what could be read, and p every problem found.
func parse(data []byte) (*Config, problems) {
	var p problems
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		p.add("", "", "%s", strings.TrimPrefix(err.Error(), "yaml: "))
		return nil, p
	}
	var fc fileConfig
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&fc); err != nil && !errors.Is(err, io.EOF) { // io.EOF: an empty file
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			p.add("", "", "%s", strings.TrimPrefix(err.Error(), "yaml: "))
			return nil, p
		}
		locate(&doc, te, &p) // the decoder went on past these: check the rest too
	}
	cfg := &Config{Concurrency: fc.Concurrency, History: fc.History}
	cfg.GracePeriod = parseDuration(&p, "", "grace-period", fc.GracePeriod)
	var def fileJob
	if fc.Defaults != nil {
		def = *fc.Defaults
		if def.Name != "" || def.Source != nil || def.Target != nil {
			p.add("defaults", "", "name, source and target belong in each job, not in defaults")
		}
	}
	names := make([]string, len(fc.Jobs))
	for i, fj := range fc.Jobs {
		names[i] = fj.Name
	}
	for i, fj := range fc.Jobs {
		cfg.Jobs = append(cfg.Jobs, fj.job(&p, jobLabel(names, i), def))
	}
	cfg.validate(&p)
	return cfg, p
}

// job converts a file job, taking absent fields from def.
func (fj fileJob) job(p *problems, where string, def fileJob) Job {
	str := func(v, d string) string {
		if v == "" {
			return d
		}
		return v
	}
	num := func(v, d int) int {
		if v == 0 {
			return d
		}
		return v
	}
	j := Job{Name: fj.Name, Mode: reconcile.Mode(str(fj.Mode, def.Mode))}
	if fj.Source != nil {
		j.Source = EndpointConfig(*fj.Source)
	}
	if fj.Target != nil {
		j.Target = EndpointConfig(*fj.Target)
	}
	j.Interval = parseDuration(p, where, "interval", str(fj.Interval, def.Interval))
	j.Jitter = parseDuration(p, where, "jitter", str(fj.Jitter, def.Jitter))
	j.Timeout = parseDuration(p, where, "timeout", str(fj.Timeout, def.Timeout))
	j.Backoff = parseDuration(p, where, "backoff", str(fj.Backoff, def.Backoff))
	j.MaxBackoff = parseDuration(p, where, "max-backoff", str(fj.MaxBackoff, def.MaxBackoff))
	if md := str(fj.MaxDelete, def.MaxDelete); md != "" {
		l, err := reconcile.ParseDeleteLimit(md)
		if err != nil {
			p.add(where, "max-delete", "%q: want a number of rows or a percentage of the target such as 10%%", md)
			p.settle(where, "max-delete")
		}
		j.Session.MaxDelete = l
	}
	j.Session.BatchRows = num(fj.BatchRows, def.BatchRows)
	j.Session.MaxBatchRows = num(fj.MaxBatchRows, def.MaxBatchRows)
	j.Session.BatchBytes = num(fj.BatchBytes, def.BatchBytes)
	j.Session.Attempts = num(fj.Attempts, def.Attempts)
	j.Session.Fanout = num(fj.Fanout, def.Fanout)
	j.Session.LeafMax = num(fj.LeafMax, def.LeafMax)
	j.Session.FingerprintBytes = num(fj.FPBytes, def.FPBytes)
	return j
}

// parseDuration parses a duration field; "" is zero (the default).
func parseDuration(p *problems, where, field, s string) time.Duration {
	if s == "" {
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		hint := ""
		if _, nerr := strconv.ParseFloat(s, 64); nerr == nil {
			hint = " (a number needs a unit)"
		}
		p.add(where, field, "%q is not a duration%s: write it as 30s, 5m or 1h30m", s, hint)
		p.settle(where, field)
		return 0
	}
	return d
}

var (
	lineMsg      = regexp.MustCompile(`^line (\d+): (.*)$`)
	unknownField = regexp.MustCompile(`^field (\S+) not found in type \S+$`)
)

// locate adds yaml's decoding errors ("line 7: field intrval not found in type …") to p,
// each naming the job and field it is about, and settles those fields.
func locate(doc *yaml.Node, te *yaml.TypeError, p *problems) {
	keys := keyLines(doc)
	var settle []keyAt
	for _, m := range te.Errors {
		sm := lineMsg.FindStringSubmatch(m)
		if sm == nil {
			p.add("", "", "%s", m)
			continue
		}
		line, _ := strconv.Atoi(sm[1])
		msg := sm[2]
		k, ok := keys[line]
		if f := unknownField.FindStringSubmatch(msg); f != nil {
			msg = fmt.Sprintf("unknown field %q", f[1])
			if ok && k.name == f[1] {
				k.field = k.parent
			}
		}
		if !ok {
			p.add("", "", "%s (line %d)", msg, line)
			continue
		}
		p.add(k.where, k.field, "%s (line %d)", msg, line)
		if k.field != "" {
			settle = append(settle, k)
		}
	}
	for _, k := range settle { // after the loop: a field may have several problems
		p.settle(k.where, k.field)
	}
}

// keyAt says what a line of the document holds: the job (or section) and the field.
type keyAt struct {
	where  string
	field  string // the key's path in its job or section: "source.url"
	name   string // the key itself: "url"
	parent string // the path of the mapping holding it: "source"
}

// keyLines maps each line holding a mapping key to its job and field.
func keyLines(doc *yaml.Node) map[int]keyAt {
	out := map[int]keyAt{}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return out
	}
	var walk func(n *yaml.Node, where, parent string)
	walk = func(n *yaml.Node, where, parent string) {
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			field := k.Value
			if parent != "" {
				field = parent + "." + k.Value
			}
			if _, dup := out[k.Line]; !dup {
				out[k.Line] = keyAt{where: where, field: field, name: k.Value, parent: parent}
			}
			if v.Line != k.Line {
				if _, dup := out[v.Line]; !dup && v.Kind == yaml.ScalarNode {
					out[v.Line] = keyAt{where: where, field: field, name: k.Value, parent: parent}
				}
			}
			walk(v, where, field)
		}
	}
	top := doc.Content[0]
	for i := 0; i+1 < len(top.Content); i += 2 {
		k, v := top.Content[i], top.Content[i+1]
		out[k.Line] = keyAt{field: k.Value, name: k.Value}
		switch {
		case k.Value == "jobs" && v.Kind == yaml.SequenceNode:
			names := make([]string, len(v.Content))
			for j, jn := range v.Content {
				if jn.Kind == yaml.MappingNode {
					for x := 0; x+1 < len(jn.Content); x += 2 {
						if jn.Content[x].Value == "name" {
							names[j] = jn.Content[x+1].Value
						}
					}
				}
			}
			for j, jn := range v.Content {
				walk(jn, jobLabel(names, j), "")
			}
		case k.Value == "defaults":
			walk(v, "defaults", "")
		}
	}
	return out
}
