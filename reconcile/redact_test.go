package reconcile

import (
	"strings"
	"testing"
)

func TestRedactURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"badger:///data/a", "badger:///data/a"},
		{"postgres://bob@db:5432/app?table=t", "postgres://bob@db:5432/app?table=t"},
		{"postgres://bob:hunter2@db:5432/app?table=t", "postgres://bob:xxxxx@db:5432/app?table=t"},
		{"mysql://root:p%40ss@127.0.0.1:3306/test?table=t&tls=true", "mysql://root:xxxxx@127.0.0.1:3306/test?table=t&tls=true"},
		{"postgres://bob@db/app?table=t&password=hunter2&sslpassword=k3y", "postgres://bob@db/app?table=t&password=xxxxx&sslpassword=xxxxx"},
		{"https://host:7700?token_file=/etc/tok", "https://host:7700?token_file=/etc/tok"},
		// url.Parse refuses these (a space in the host, a bad escape), and the error that
		// quotes them must not show the password either.
		{"postgres://bob:hunter2@d b:5432/app?table=t", "postgres://bob:xxxxx@d b:5432/app?table=t"},
		{"mysql://bob:hun%zz@db/app?table=t&password=x%zz", "mysql://bob:xxxxx@db/app?table=t&password=xxxxx"},
		{"postgres://bob:a@b@db/app", "postgres://bob:xxxxx@db/app"},
		{"postgres://bob:pa/ss?w#rd@db/app?table=t", "postgres://bob:xxxxx@db/app?table=t"},
		{"badger:///data/a:b@c", "badger:///data/a:b@c"},
		// This one parses (host bob, port 12, path /cd@db/app), but the '@' says that
		// "12/cd" was meant as a password.
		{"postgres://bob:12/cd@db/app?table=t", "postgres://bob:xxxxx@db/app?table=t"},
		{"mysql://bob:pw@db/app?table=t&note=a@b", "mysql://bob:xxxxx@db/app?table=t&note=a@b"},
		// This one parses too (host sec, path /ret@127.0.0.1:5432/test): "top@sec/ret" was
		// the password, and its "sec/ret" showed.
		{"postgres://postgres:top@sec/ret@127.0.0.1:5432/test?table=x", "postgres://postgres:xxxxx@127.0.0.1:5432/test?table=x"},
		{"postgres://db/app?table=t&%70assword=hunter2", "postgres://db/app?table=t&%70assword=xxxxx"},
		{"=password=hunter2", "=password=xxxxx"},
		// An unescaped '?' inside a secret's value is part of it: only '&' or '#' ends it.
		{"password=?00000", "password=xxxxx"},
		{"mysql://db/app?table=t&password=pa?ss/w&tls=true", "mysql://db/app?table=t&password=xxxxx&tls=true"},
		{"\x80\xffPAss=hunter2", "\x80\xffPAss=xxxxx"}, // not UTF-8: strings.ToLower would shift the indexes
		{"mysql://db/app?table=t&note=passphrase", "mysql://db/app?table=t&note=passphrase"},
		{"", ""},
	} {
		if got := RedactURL(tc.in); got != tc.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func FuzzRedactURL(f *testing.F) {
	f.Add("postgres://bob:hunter2@db:5432/app?table=t", "hunter2")
	f.Add("mysql://u:%zzsecret1@h/db?password=secret1", "secret1")
	f.Fuzz(func(t *testing.T, prefix, secret string) {
		if len(secret) < 6 || strings.ContainsAny(secret, "@#&=:% \\") || strings.Contains(redacted, secret) {
			return
		}
		for _, raw := range []string{
			"postgres://bob:" + secret + "@" + prefix + "/db?table=t",
			"mysql://" + prefix + "/db?table=t&password=" + secret,
			prefix + "://u:" + secret + "@host/db",
		} {
			if strings.Count(raw, secret) > 1 {
				continue // it shows elsewhere too (a host "00000" and a password "00000/")
			}
			if got := RedactURL(raw); strings.Contains(got, secret) {
				t.Fatalf("RedactURL(%q) = %q shows the secret", raw, got)
			}
		}
	})
}
