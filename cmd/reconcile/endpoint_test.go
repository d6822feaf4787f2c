package main

import (
	"strconv"
	"strings"
	"testing"

	"github.com/reconcile-dev/reconcile/merkle"
)

func TestParseEndpoint(t *testing.T) {
	for _, tc := range []struct {
		raw      string
		path     string
		ordering merkle.Ordering
		err      string // substring of the error; "" for success
	}{
		{raw: "badger:///abs/path", path: "/abs/path"},
		{raw: "badger:///abs/path/", path: "/abs/path"},
		{raw: "BADGER:///abs", path: "/abs"},
		{raw: "badger://./rel/path", path: "rel/path"},
		{raw: "badger://../up/path", path: "../up/path"},
		{raw: "badger:///a%20b", path: "/a b"},
		{raw: "badger:///p?ordering=key", path: "/p", ordering: merkle.KeyOrder},
		{raw: "badger:///p?ordering=version", path: "/p", ordering: merkle.VersionOrder},
		{raw: "badger://rel/path", err: `"rel" would be a host name: write "badger://./rel/path"`},
		{raw: "badger:rel/path", err: "no // after badger:"},
		{raw: "badger://", err: "no path"},
		{raw: "badger:///", err: "no path"},
		{raw: "badger://./", err: "no path"},
		{raw: "badger://user@./x", err: "not a host"},
		{raw: "badger://./x#frag", err: `unexpected fragment "#frag"`},
		{raw: "badger:///p?ordering=hash", err: "unknown ordering"},
		{raw: "badger:///p?sync=1", err: `unknown parameter "sync"`},
		{raw: "badger:///p?max_row=256MiB", path: "/p"},
		{raw: "badger:///p?max_row=2GiB", err: "max_row=2GiB: want a size from 1KiB to 256MiB"},
		{raw: "badger:///p?max_row=300MiB", err: "could not cross the protocol"},
		{raw: "badger:///p?max_row=lots", err: "max_row=lots: want a size"},
		{raw: "badger:///p?ordering=key&ordering=version", err: `parameter "ordering" given 2 times`},
		{raw: "postgres://db/table", err: "no table: add ?table=NAME"},
		{raw: "redis://host/0", err: `unknown scheme "redis" (supported: badger, postgres, mysql, sqlite, http, https)`},
		{raw: "http://h:1/x", err: `unexpected path "/x"`},
		{raw: "https://u:p@h:1", err: "no user or password"},
		{raw: "http://h:1?token=x", err: `unknown parameter "token"`},
		{raw: "http://h:1?timeout=soon", err: "timeout=soon: give a positive duration"},
		{raw: "http:///x", err: "want http://host:port"},
		{raw: "mysql://root@host?table=t", err: "want mysql://user:pass@host:port/database?table=T"},
		{raw: "sqlite://rel.db?table=t", err: `"rel.db" would be a host name`},
		{raw: "sqlite:///x.db?table=t&mode=fast", err: "mode=fast: want scan or maintained"},
		{raw: "sqlite:///x.db?table=t&foo=1", err: `unknown parameter "foo" for sqlite`},
		{raw: "/abs/path", err: `did you mean "badger:///abs/path"?`},
		{raw: "rel/path", err: `did you mean "badger://./rel/path"?`},
		{raw: "", err: "empty endpoint"},
		{raw: "badger://%zz", err: "not a URL"},
		{raw: "postgres://db:5432/app?tabel=t", err: "no table"},
		{raw: "http://h:99999x", err: "want http://host:port or https://host:port"},
		// A mistake in a URL that holds a password: the message shows neither the password
		// nor the parser's quote of part of it.
		{raw: "postgres://bob:s3cr3t@db:5432/app?tabel=t", err: `"postgres://bob:xxxxx@db:5432/app?tabel=t": no table`},
		{raw: "postgres://bob:s3/cr3t@db:5432/app?table=t", err: "must be percent-encoded (%2F %3F %23 %40 %3A %25 %20)): want postgres://"},
		{raw: "mysql://bob@db/app?table=t&password=s3cr3t#x", err: "password=xxxxx#x"},
		// It parses (host "top", a path from "/s3cr3t@"), and would look up a piece of the
		// password as a host name.
		{raw: "postgres://bob:top@s3/cr3t@127.0.0.1:5432/test?table=t", err: `"postgres://bob:xxxxx@127.0.0.1:5432/test?table=t": an '@' follows the host: if the password holds a '/', a password's`},
		{raw: "https://bob:s3cr3t@h:1", err: `"https://bob:xxxxx@h:1": no user or password`},
	} {
		loc, err := parseEndpoint(tc.raw)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%q: %v", tc.raw, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: error %v, want one containing %q", tc.raw, err, tc.err)
		case tc.err == "" && (loc.path != tc.path || loc.ordering != tc.ordering || loc.scheme != "badger"):
			t.Errorf("%q: got %+v, want path %q ordering %v", tc.raw, loc, tc.path, tc.ordering)
		case err != nil && strings.Contains(err.Error(), "\n"):
			t.Errorf("%q: error spans lines: %q", tc.raw, err)
		case err != nil && strings.Contains(err.Error(), "cr3t"):
			t.Errorf("%q: error shows the password: %q", tc.raw, err)
		}
	}
	if _, err := parseEndpoint("mysql://bob:pw@db/te%40st?table=t"); err != nil { // an escaped '@' in the database's name
		t.Errorf("an escaped '@' in the path: %v", err)
	}
	// A user and no password, and an '@' in the path: no password to blame (this
	// panicked, found by FuzzParseEndpoint).
	for _, raw := range []string{"A://@/@", "postgres://bob@db/te@st?table=t"} {
		if _, err := parseEndpoint(raw); err != nil && strings.Contains(err.Error(), "percent-encoded") {
			t.Errorf("%s: %v", raw, err)
		}
	}
}

func TestReorderArgs(t *testing.T) {
	app := newApp(stdio{})
	for _, tc := range []struct{ in, want string }{
		{"reconcile diff a b --json", "reconcile diff --json -- a b"},
		{"reconcile diff --json a b", "reconcile diff --json -- a b"},
		{"reconcile sync a --max-delete 5 b --force", "reconcile sync --max-delete 5 --force -- a b"},
		{"reconcile sync a b --max-delete=5%", "reconcile sync --max-delete=5% -- a b"},
		{"reconcile load x -", "reconcile load -- x -"},
		{"reconcile gen x --rows 10 --drift-only", "reconcile gen --rows 10 --drift-only -- x"},
		{"reconcile dump -- -odd", "reconcile dump -- -odd"},
		{"reconcile --help", "reconcile --help"},
		{"reconcile nosuch a --json", "reconcile nosuch a --json"},
		{"reconcile demo", "reconcile demo"},
	} {
		got := strings.Join(reorderArgs(app, strings.Fields(tc.in)), " ")
		if got != tc.want {
			t.Errorf("%q: got %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestSameStore(t *testing.T) {
	a, _ := parseEndpoint("badger://./x/y")
	b, _ := parseEndpoint("badger://./x/../x/y/")
	c, _ := parseEndpoint("badger://./x/z")
	if !sameStore(a, b) || sameStore(a, c) {
		t.Fatal("sameStore")
	}
	h1, _ := parseEndpoint("http://h:1")
	h2, _ := parseEndpoint("http://h:1/?token_file=/t")
	h3, _ := parseEndpoint("https://h:1")
	if !sameStore(h1, h2) || sameStore(h1, h3) || sameStore(h1, a) {
		t.Fatal("sameStore of http endpoints")
	}
	// A SQL table is the same however its URL spells the server, user, options or schema
	// (a `run` job must wait for another on the same table: a helper saw two run at once).
	for _, c := range []struct {
		a, b string
		same bool
	}{
		{"mysql://root@127.0.0.1:3306/test?table=t", "mysql://app:pw@localhost/test?table=t&tls=false", true},
		{"mysql://root@127.0.0.1:3306/test?table=t", "mysql://root@127.0.0.1:3306/test?table=test.t", true},
		{"mysql://root@127.0.0.1:3306/test?table=t", "mysql://root@127.0.0.1:3307/test?table=t", false},
		{"mysql://root@127.0.0.1:3306/test?table=t", "mysql://root@127.0.0.1:3306/prod?table=t", false},
		{"postgres://postgres@127.0.0.1:5432/test?table=t", "postgres://u@localhost/test?table=public.t&sslmode=disable", true},
		{"postgres://postgres@[::1]:5432/test?table=t", "postgres://postgres@127.0.0.1/test?table=t", true},
		{"postgres://postgres@db1/test?table=t", "postgres://postgres@db2/test?table=t", false},
		{"postgres://postgres@db1/test?table=t", "postgres://postgres@db1/test?table=app.t", false},
		{"postgres://postgres@db1/test?table=t", "mysql://postgres@db1/test?table=t", false},
		{"sqlite://./x.db?table=t", "sqlite://./y/../x.db?table=t", true},
		{"sqlite://./x.db?table=t", "sqlite://./x.db?table=u", false},
	} {
		a, errA := parseEndpoint(c.a)
		b, errB := parseEndpoint(c.b)
		if errA != nil || errB != nil {
			t.Fatalf("%s, %s: %v %v", c.a, c.b, errA, errB)
		}
		if got := sameStore(a, b); got != c.same {
			t.Errorf("sameStore(%s, %s) = %v, want %v", c.a, c.b, got, c.same)
		}
	}
}

// FuzzParseEndpoint checks what every command does first with its arguments: an endpoint
// URL is accepted or refused with one line that never shows the password it holds.
func FuzzParseEndpoint(f *testing.F) {
	f.Add("badger://./x", "")
	f.Add("postgres://bob:%s@db:5432/app?table=t", "s3cr3t")
	f.Add("mysql://bob@db/app?table=t&password=%s", "s3cr3t")
	f.Add("postgres://bob:%s@db:5432/app?tabel=t", "s3/cr3t")
	f.Fuzz(func(t *testing.T, form, secret string) {
		raw := form
		hidden := len(secret) >= 6 && !strings.ContainsAny(secret, "@&#=:%\"\\") && strings.Count(form, "%s") == 1 &&
			(userPassword(form) || strings.Contains(form, "password=%s")) &&
			!strings.Contains(strconv.Quote(strings.ReplaceAll(form, "%s", "")), secret) // not a part of the rest
		if hidden {
			raw = strings.Replace(form, "%s", secret, 1)
		}
		loc, err := parseEndpoint(raw)
		if err == nil {
			if loc.scheme == "" || loc.path == "" && loc.sql == nil && loc.server == "" {
				t.Fatalf("%q parsed to %+v, which names nothing", raw, loc)
			}
			return
		}
		msg := err.Error()
		if strings.Contains(msg, "\n") {
			t.Fatalf("%q: error spans lines: %q", raw, msg)
		}
		if hidden && strings.Contains(msg, secret) {
			// The password may also appear by chance, made of the message's own words
			// and the rest of the URL ("./" before "00000" spells "/00000"): it leaks
			// only if the same URL with another password does not spell it too.
			_, other := parseEndpoint(strings.Replace(form, "%s", unlike(secret), 1))
			if other == nil || !strings.Contains(other.Error(), secret) {
				t.Fatalf("%q: error shows the password %q: %s", raw, secret, msg)
			}
		}
	})
}

// unlike returns a string as long as s that differs from it in every byte.
func unlike(s string) string {
	b := []byte(s)
	for i := range b {
		if b[i] == 'Q' {
			b[i] = 'R'
		} else {
			b[i] = 'Q'
		}
	}
	return string(b)
}

// userPassword reports whether the %s of form is the password of a URL's user part: the
// first ':' after its first "://", with no '/', '?', '#' or '@' between.
func userPassword(form string) bool {
	i, j := strings.Index(form, "://"), strings.Index(form, ":%s@")
	return i >= 0 && j >= i+3 && !strings.ContainsAny(form[i+3:j], "/?#@:")
}
