package sql

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/reconcile-dev/reconcile/reconcile"
)

// Config says which table an endpoint serves and how to reach it.
type Config struct {
	// Dialect is "postgres", "mysql" or "sqlite".
	Dialect string
	// DSN is what the driver opens: a postgres:// URL, a go-sql-driver/mysql DSN, or a
	// SQLite file path.
	DSN string
	// Table is the table's name, schema-qualified if needed ("app.users").
	Table string
	// Key names the key columns; empty means the primary key.
	Key []string
	// Version names a column that increases on every write (an integer or a timestamp).
	// Empty: the table is in key order and carries no versions.
	Version string
	// Columns names the value columns; empty means every column but the key, version and
	// expiry columns. It may name those too: they are compared as key, version and expiry.
	Columns []string
	// Expires names an optional expiry column (a timestamp, or an integer of unix ns);
	// rows whose expiry is at or before a session's now are left out. NULL means never.
	Expires string
	// Mode is "scan" (read the table once per session), "maintained" (answer from the
	// index that `reconcile index install` created) or "" (maintained where installed).
	Mode string
}

// endpointParams are the query parameters the URL forms take for reconcile itself; every
// other parameter goes to the driver.
var endpointParams = map[string]bool{"table": true, "key": true, "version": true, "columns": true, "expires": true, "mode": true}

// URLHelp shows the URL forms.
const URLHelp = "want postgres://user@host:5432/db?table=T, mysql://user:pass@host:3306/db?table=T or sqlite:///path/file.db?table=T (sqlite://./rel.db for a relative path), with optional &key=a,b&version=col&columns=a,b&expires=col&mode=scan|maintained"

// ParseURL parses an endpoint URL of the postgres (or postgresql), mysql and sqlite
// schemes. It checks the form only; Open checks the table.
func ParseURL(raw string) (Config, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Config{}, fmt.Errorf("not a URL: %s (%s)", reconcile.URLProblem(raw, err), URLHelp)
	}
	var c Config
	q := u.Query()
	c.Table = q.Get("table")
	if c.Table == "" {
		return c, fmt.Errorf("no table: add ?table=NAME (%s)", URLHelp)
	}
	c.Key = list(q.Get("key"))
	c.Version = q.Get("version")
	c.Columns = list(q.Get("columns"))
	c.Expires = q.Get("expires")
	c.Mode = q.Get("mode")
	switch c.Mode {
	case "", "scan", "maintained":
	default:
		return c, fmt.Errorf("mode=%s: want scan or maintained", c.Mode)
	}
	for k, v := range q {
		if endpointParams[k] && len(v) != 1 {
			return c, fmt.Errorf("parameter %s given %d times", k, len(v))
		}
	}
	if u.Fragment != "" {
		return c, fmt.Errorf("unexpected fragment %q (%s)", "#"+u.Fragment, URLHelp)
	}
	driver := url.Values{}
	for k, v := range q {
		if !endpointParams[k] {
			if own := misspelled(k); own != "" {
				// It would go to the driver, whose error ("unrecognized configuration
				// parameter", "Unknown system variable") does not say so.
				return c, fmt.Errorf("unknown parameter %q: did you mean %q? (reconcile's own are table, key, version, columns, expires and mode; any other goes to the database driver)", k, own)
			}
			driver[k] = v
		}
	}
	switch u.Scheme {
	case "postgres", "postgresql":
		c.Dialect = "postgres"
		if u.Host == "" {
			return c, fmt.Errorf("no host (%s)", URLHelp)
		}
		d := *u
		d.RawQuery = driver.Encode()
		c.DSN = d.String()
	case "mysql":
		c.Dialect = "mysql"
		if u.Host == "" || strings.Trim(u.Path, "/") == "" {
			return c, fmt.Errorf("want mysql://user:pass@host:port/database?table=T")
		}
		host := u.Host
		if u.Port() == "" {
			host += ":3306"
		}
		user := ""
		if u.User != nil {
			user = u.User.Username()
			if p, ok := u.User.Password(); ok {
				user += ":" + p
			}
		}
		// Timestamps are read and written in UTC; strict mode makes a value the column
		// cannot hold an error instead of a silent truncation.
		driver.Set("time_zone", "'+00:00'")
		driver.Set("sql_mode", "'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'")
		driver.Set("charset", "utf8mb4")
		// Read the server's max_allowed_packet at connect: with the driver's own default
		// (64 MiB) a row larger than the server's limit (16 MiB in MariaDB 10.11) is
		// sent anyway and the server cuts the connection ("connection reset by peer");
		// knowing the limit, the driver sends it in parts and the server names it.
		if driver.Get("maxAllowedPacket") == "" {
			driver.Set("maxAllowedPacket", "0")
		}
		c.DSN = fmt.Sprintf("%s@tcp(%s)/%s?%s", user, host, strings.Trim(u.Path, "/"), driver.Encode())
	case "sqlite":
		c.Dialect = "sqlite"
		switch {
		case u.User != nil || u.Port() != "":
			return c, fmt.Errorf("a sqlite URL names a file, not a server (%s)", URLHelp)
		case u.Host != "" && u.Host != "." && u.Host != "..":
			return c, fmt.Errorf("%q would be a host name: write %q for a relative path or %q for an absolute one", u.Host, "sqlite://./"+u.Host+u.Path, "sqlite:///"+u.Host+u.Path)
		case u.Path == "" || u.Path == "/":
			return c, fmt.Errorf("no file (%s)", URLHelp)
		}
		if len(driver) > 0 {
			return c, fmt.Errorf("unknown parameter %q for sqlite (%s)", firstKey(driver), URLHelp)
		}
		c.DSN = filepath.Clean(u.Host + u.Path)
	default:
		return c, errors.New("not a SQL endpoint scheme")
	}
	return c, nil
}

// misspelled returns the endpoint parameter that name is a near miss of (one or two letters
// off; one for "key"), or "".
func misspelled(name string) string {
	for own := range endpointParams {
		limit := 2
		if len(own) <= 3 {
			limit = 1
		}
		if editDistance(strings.ToLower(name), own) <= limit {
			return own
		}
	}
	return ""
}

// editDistance is the Levenshtein distance between a and b (bytes).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func firstKey(v url.Values) string {
	for k := range v {
		return k
	}
	return ""
}

func list(s string) []string {
	if s == "" {
		return nil
	}
	parts := strings.Split(s, ",")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return parts
}
