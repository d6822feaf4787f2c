package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/reconcile-dev/reconcile/adapters/badger"
	remote "github.com/reconcile-dev/reconcile/adapters/http"
	sqlep "github.com/reconcile-dev/reconcile/adapters/sql"
	"github.com/reconcile-dev/reconcile/bench"
	"github.com/reconcile-dev/reconcile/merkle"
	"github.com/reconcile-dev/reconcile/reconcile"
)

// Endpoint URLs
//
// Every command names its endpoints with URLs. Supported schemes:
//
//	badger:///abs/path          a Badger store at an absolute path
//	badger://./rel/path         a Badger store relative to the working directory
//	badger://../rel/path        (also relative)
//	badger:///path?ordering=key a new store is created with key ordering (default: version)
//	badger:///path?max_row=256MiB  rows up to that size are accepted (default 64MiB, at most 256MiB)
//	postgres://user@host:5432/db?table=T[&key=a,b&version=col&columns=a,b&expires=col]
//	mysql://user:pass@host:3306/db?table=T[...]     (MySQL and MariaDB)
//	sqlite:///abs/file.db?table=T[...] or sqlite://./rel/file.db?table=T[...]
//	http://host:port, https://host:port[?token_file=F&timeout=D]   a `reconcile serve` server
//
// badger://rel/path is refused rather than guessed at: in a URL the part after "//" is a
// host, so it could mean ./rel/path or /rel/path, and http:// endpoints will read it as a
// host. Paths are percent-decoded like any URL path (write %25 for a literal %).
//
// Adding a scheme (postgres://, sqlite://, http://) means adding a case to lookupScheme:
// a parse function that validates the URL before anything is opened, and an open function.

// access says how a command uses an endpoint.
type access int

const (
	readOnly  access = iota // diff, root, dump, a sync's source
	readWrite               // a sync's target
	create                  // load and gen: create the store when it is missing
)

// location is a parsed endpoint URL.
type location struct {
	raw    string
	scheme string
	// path is the file-system path of file-based schemes (badger), cleaned.
	path string
	// ordering is the index ordering the URL asks for; 0 means the store's own.
	ordering merkle.Ordering
	// maxRow is a Badger store's largest row (?max_row=); 0 means the store's default.
	maxRow int
	// sql is the table of SQL schemes.
	sql *sqlep.Config
	// server is the base URL of http(s) schemes (scheme://host:port); tokenFile the
	// file named by ?token_file=, timeout the ?timeout= of one request's attempt (0: the
	// client's default, 2 minutes).
	server, tokenFile string
	timeout           time.Duration
}

// endpoint is an opened endpoint with the extra abilities its scheme offers.
type endpoint struct {
	reconcile.Endpoint
	loc location
	// scan calls fn for each live row in key order until fn returns false. Nil where the
	// scheme cannot list rows.
	scan func(fn func(reconcile.Row) bool) error
	// write calls fn with a Sink and commits what it writes in batches; on failure the
	// error says how many writes were committed. Nil where the scheme takes no raw writes.
	write func(fn func(bench.Sink) error) error
	// table is set for SQL endpoints: their rows travel as JSON "columns" objects.
	table *sqlep.Table
	// remote is set for http(s) endpoints: a session runs against it as a Peer.
	remote *remote.Client
	// purge deletes the rows expired at now and says how many; it stops when ctx ends,
	// after the transaction under way. Nil where the scheme keeps no expired rows to purge.
	purge func(ctx context.Context, now int64) (int, error)
	// store is set for Badger endpoints, and keyFormat to the description of its keys
	// that a sync from a SQL table recorded (the table's KeyFormat), "" if none.
	store     *badger.Store
	keyFormat string
}

// keyedStore is a Badger store that shows its keys as the columns of the SQL table it
// replicates (reconcile.KeyFormatter); *badger.Store's other methods show through.
type keyedStore struct {
	*badger.Store
	f      reconcile.KeyFormatter
	format string // what f was made from (Store.KeyFormat)
}

func (k keyedStore) FormatKey(key []byte) string { return k.f.FormatKey(key) }

// keyFormatOf is the key format a mirror of ep records: a SQL table's, or the one a Badger
// replica of a table has recorded; "" for none.
func keyFormatOf(ep reconcile.Endpoint) string {
	switch e := ep.(type) {
	case *sqlep.Table:
		return e.KeyFormat()
	case keyedStore:
		return e.format
	}
	return ""
}

// recordKeyFormat makes a Badger endpoint, the target of a mirror that has just
// finished, remember its source's key format (so that its own diffs and reports show keys
// as the table's columns: id=18); nothing for other endpoints, or when it already does.
func (e *endpoint) recordKeyFormat(format string) error {
	if format == "" || e.store == nil || e.keyFormat == format {
		return nil
	}
	if err := e.store.SetKeyFormat(format); err != nil {
		return fmt.Errorf("%s: could not record the source's key format (its reports will show keys as bytes): %w", e.loc, err)
	}
	e.keyFormat = format
	return nil
}

// toColumns renders a row as load and dump write it for this endpoint.
func (e *endpoint) rowLine(r reconcile.Row) (rowLine, error) {
	l := formatRowLine(r)
	if e.table == nil {
		return l, nil
	}
	cols, err := e.table.RowColumns(r)
	if err != nil {
		return l, fmt.Errorf("row %s: %w", reconcile.KeyText(r.Key, e.table), err)
	}
	l.Key, l.KeyB64, l.Value, l.ValueB64 = nil, nil, nil, nil
	l.Columns = json.RawMessage(cols)
	return l, nil
}

// String is the endpoint's URL as messages show it: with any password hidden.
func (l location) String() string { return reconcile.RedactURL(l.raw) }

// scheme is one kind of endpoint.
type scheme struct {
	parse func(u *url.URL, loc *location) error
	open  func(loc location, a access) (*endpoint, error)
	help  string // the form of its URLs, for messages
}

// lookupScheme is the one place that knows every scheme.
func lookupScheme(name string) (scheme, bool) {
	switch name {
	case "badger":
		return scheme{parse: parseBadger, open: openBadger, help: urlHelp}, true
	case "postgres", "postgresql", "mysql", "sqlite":
		return scheme{parse: parseSQL, open: openSQL, help: sqlep.URLHelp}, true
	case "http", "https":
		return scheme{parse: parseHTTP, open: openHTTP, help: httpHelp}, true
	}
	return scheme{}, false
}

const supportedSchemes = "badger, postgres, mysql, sqlite, http, https"

const urlHelp = "want badger:///abs/path or badger://./rel/path"

// parseEndpoint validates an endpoint URL without opening anything.
func parseEndpoint(raw string) (location, error) {
	loc := location{raw: raw}
	shown := loc.String() // raw with any password hidden
	if raw == "" {
		return loc, fmt.Errorf("empty endpoint: %s", urlHelp)
	}
	u, err := url.Parse(raw)
	if err != nil {
		help := urlHelp
		if name, _, ok := strings.Cut(raw, "://"); ok {
			if s, known := lookupScheme(name); known {
				help = s.help
			}
		}
		return loc, fmt.Errorf("endpoint %q is not a URL (%s): %s", shown, reconcile.URLProblem(raw, err), help)
	}
	if u.Scheme == "" {
		hint := urlHelp
		if strings.HasPrefix(raw, "/") {
			hint = fmt.Sprintf("did you mean %q?", reconcile.RedactURL("badger://"+raw))
		} else if !strings.Contains(raw, ":") {
			hint = fmt.Sprintf("did you mean %q?", reconcile.RedactURL("badger://./"+strings.TrimPrefix(raw, "./")))
		}
		return loc, fmt.Errorf("endpoint %q has no scheme: %s", shown, hint)
	}
	if _, pw := u.User.Password(); pw && strings.Contains(u.EscapedPath(), "@") {
		// "u:p@ss/word@host/db" parses as the host "ss" and a path: a password's '/'
		// was not escaped, and connecting would look up a piece of the password.
		return loc, fmt.Errorf("endpoint %q: an '@' follows the host: if the password holds a '/', %s", shown, reconcile.PasswordHint)
	}
	loc.scheme = u.Scheme
	s, ok := lookupScheme(u.Scheme)
	if !ok {
		return loc, fmt.Errorf("endpoint %q: unknown scheme %q (supported: %s)", shown, u.Scheme, supportedSchemes)
	}
	if err := s.parse(u, &loc); err != nil {
		return loc, fmt.Errorf("endpoint %q: %w", shown, err)
	}
	return loc, nil
}

// openEndpoint parses raw and opens it.
func openEndpoint(raw string, a access) (*endpoint, error) {
	loc, err := parseEndpoint(raw)
	if err != nil {
		return nil, err
	}
	s, _ := lookupScheme(loc.scheme)
	return s.open(loc, a)
}

// sameStore reports whether two locations name one store, which cannot be opened twice.
func sameStore(a, b location) bool {
	if a.server != "" || b.server != "" {
		return a.server == b.server
	}
	if a.sql != nil && b.sql != nil {
		return sqlStore(a.sql) == sqlStore(b.sql)
	}
	if a.scheme != b.scheme || a.path == "" {
		return false
	}
	pa, errA := filepath.Abs(a.path)
	pb, errB := filepath.Abs(b.path)
	return errA == nil && errB == nil && pa == pb
}

// sqlStore names the table a SQL endpoint reads, the same however its URL spells it: the
// server (any spelling of the loopback address is one; the engine's default port when none
// is given), the database, and the table qualified by its schema (PostgreSQL's "public"
// when none is given) or database (MySQL); for SQLite the file's absolute path. The user,
// password and driver options are left out: they do not change which table it is.
func sqlStore(c *sqlep.Config) string {
	host, db := "", ""
	switch c.Dialect {
	case "postgres":
		if u, err := url.Parse(c.DSN); err == nil {
			host, db = hostPort(u.Host, "5432"), strings.Trim(u.Path, "/")
		}
	case "mysql":
		// user[:pass]@tcp(host:port)/db?options
		rest := c.DSN[strings.LastIndex(c.DSN, "@")+1:]
		if i, j := strings.Index(rest, "("), strings.Index(rest, ")"); i >= 0 && j > i {
			host = hostPort(rest[i+1:j], "3306")
			db, _, _ = strings.Cut(strings.TrimPrefix(rest[j+1:], "/"), "?")
		}
	case "sqlite":
		abs, err := filepath.Abs(c.DSN)
		if err != nil {
			abs = c.DSN
		}
		return "sqlite\x00" + abs + "\x00" + c.Table
	}
	table := c.Table
	if !strings.Contains(table, ".") {
		switch c.Dialect {
		case "postgres":
			table = "public." + table
		case "mysql":
			table = db + "." + table
		}
	}
	return c.Dialect + "\x00" + host + "\x00" + db + "\x00" + table
}

// hostPort is hostport with the port def when it has none, and every loopback spelling
// (localhost, 127.0.0.1, ::1) written as one.
func hostPort(hostport, def string) string {
	h, p, err := net.SplitHostPort(hostport)
	if err != nil {
		h, p = strings.Trim(hostport, "[]"), def
	}
	if ip := net.ParseIP(h); h == "localhost" || (ip != nil && ip.IsLoopback()) {
		h = "loopback"
	}
	return net.JoinHostPort(strings.ToLower(h), p)
}

func parseBadger(u *url.URL, loc *location) error {
	switch {
	case u.Opaque != "":
		return fmt.Errorf("no // after badger: (%s)", urlHelp)
	case u.User != nil || u.Port() != "":
		return fmt.Errorf("a badger URL names a local path, not a host (%s)", urlHelp)
	case u.Fragment != "":
		return fmt.Errorf("unexpected fragment %q (%s)", "#"+u.Fragment, urlHelp)
	case u.Host != "" && u.Host != "." && u.Host != "..":
		return fmt.Errorf("%q would be a host name: write %q for a relative path or %q for an absolute one", u.Host, "badger://./"+u.Host+u.Path, "badger:///"+u.Host+u.Path)
	case u.Path == "" || u.Path == "/":
		return fmt.Errorf("no path (%s)", urlHelp)
	}
	loc.path = filepath.Clean(u.Host + u.Path)
	for k, v := range u.Query() {
		if len(v) != 1 {
			return fmt.Errorf("parameter %q given %d times", k, len(v))
		}
		switch k {
		case "ordering":
			o, err := merkle.ParseOrdering(v[0])
			if err != nil {
				return err
			}
			loc.ordering = o
		case "max_row":
			n, err := parseSize(v[0])
			if err != nil || n < 1<<10 || n > maxBadgerRow {
				return fmt.Errorf("max_row=%s: want a size from 1KiB to 256MiB, such as 128MiB (a larger row could not cross the protocol to be synced)", v[0])
			}
			loc.maxRow = int(n)
		default:
			return fmt.Errorf("unknown parameter %q (badger takes ordering=version|key and max_row=SIZE)", k)
		}
	}
	return nil
}

// maxBadgerRow bounds max_row: the protocol carries a row's value in one frame of at most
// reconcile.MaxValue bytes, and a session quarantines a longer row.
const maxBadgerRow = reconcile.MaxValue

func openBadger(loc location, a access) (*endpoint, error) {
	opts := badger.Options{Ordering: loc.ordering, Create: a == create, ReadOnly: a == readOnly, MaxRowBytes: loc.maxRow}
	s, err := badger.Open(loc.path, opts)
	if (errors.Is(err, badger.ErrNotClosedCleanly) || errors.Is(err, badger.ErrRebuildInterrupted)) && recoverStore(loc, opts) {
		s, err = badger.Open(loc.path, opts)
	}
	if err != nil {
		return nil, err // the adapter's message names the path and what to do
	}
	format, err := s.KeyFormat()
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("%s: %w", loc, err)
	}
	var ep reconcile.Endpoint = s
	if f := sqlep.KeyFormatterFor(format); f != nil {
		ep = keyedStore{s, f, format}
	}
	return &endpoint{
		Endpoint:  ep,
		store:     s,
		keyFormat: format,
		loc:       loc,
		scan:      func(fn func(reconcile.Row) bool) error { return s.Scan(nil, fn) },
		write: func(fn func(bench.Sink) error) error {
			if err := s.Write(func(w *badger.Writer) error { return fn(w) }); err != nil {
				return err
			}
			// A bulk write leaves stale versions of the index's nodes for reads to step
			// over until Badger compacts; compact now so the next session is fast.
			return s.Compact()
		},
		purge: s.PurgeExpired,
	}, nil
}

// recoverStore opens writable a Badger store whose writer stopped without closing it, which
// replays Badger's write-ahead log and folds the index log (badger.ErrNotClosedCleanly),
// or whose index rebuild stopped, which finishes the rebuild (badger.ErrRebuildInterrupted),
// and closes it, so that a read-only open can follow; it reports whether that worked (not
// when another process has the store open).
func recoverStore(loc location, opts badger.Options) bool {
	opts.ReadOnly, opts.Create = false, false
	s, err := badger.Open(loc.path, opts)
	if err != nil {
		return false
	}
	return s.Close() == nil
}

func parseSQL(u *url.URL, loc *location) error {
	cfg, err := sqlep.ParseURL(u.String())
	if err != nil {
		return err
	}
	loc.sql = &cfg
	return nil
}

// sqlOpenTimeout bounds connecting and reading the catalog.
const sqlOpenTimeout = 30 * time.Second

func openSQL(loc location, a access) (*endpoint, error) {
	ctx, cancel := context.WithTimeout(context.Background(), sqlOpenTimeout)
	defer cancel()
	t, err := sqlep.Open(ctx, *loc.sql)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", loc, err)
	}
	t.ReadOnly = a == readOnly
	return &endpoint{
		Endpoint: t,
		loc:      loc,
		table:    t,
		scan: func(fn func(reconcile.Row) bool) error {
			return t.Scan(context.Background(), time.Now().UnixNano(), fn)
		},
		write: func(fn func(bench.Sink) error) error {
			return t.Write(context.Background(), func(w *sqlep.Writer) error { return fn(w) })
		},
	}, nil
}

// newStore is a Badger store that a command is about to create: its path does not
// exist, or is an empty directory. A command that fails removes what it created
// (remove), so that no empty or partial store is left to pass for a copy of something,
// or to refuse the next command with the ordering it happened to be made with.
type newStore struct {
	path    string
	keepDir bool   // the directory was there (empty): empty it, keep it
	top     string // the outermost directory the open will create (path, or a parent)
}

// freshStore is the store that opening loc to write would create, nil when loc is not a
// Badger URL or its path holds something already.
func freshStore(loc location) *newStore {
	if loc.scheme != "badger" {
		return nil
	}
	entries, err := os.ReadDir(loc.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		top := loc.path
		for {
			parent := filepath.Dir(top)
			if _, err := os.Stat(parent); parent == top || err == nil {
				break
			}
			top = parent
		}
		return &newStore{path: loc.path, top: top}
	case err == nil && len(entries) == 0:
		return &newStore{path: loc.path, keepDir: true}
	}
	return nil
}

// remove deletes the store (the endpoint must be closed), and says so in a message
// that ends err's.
func (n *newStore) remove(err error) error {
	var rerr error
	if n.keepDir {
		if rerr = os.RemoveAll(n.path); rerr == nil {
			rerr = os.Mkdir(n.path, 0o755)
		}
	} else {
		rerr = os.RemoveAll(n.top) // with the parent directories the open made
	}
	if rerr != nil {
		return fmt.Errorf("%w; %s was created by this command and could not be removed again (%v): remove it", err, n.path, rerr)
	}
	return fmt.Errorf("%w; %s was created by this command and is removed again, so nothing of it is left", err, n.path)
}

// ordered is an endpoint that knows its ordering before a session (Badger stores, SQL
// tables): a store a sync creates for it takes the same.
type ordered interface{ Ordering() merkle.Ordering }
