package reconcile

import (
	"errors"
	"net/url"
	"strings"
)

// redacted is what RedactURL shows in place of a secret.
const redacted = "xxxxx"

// RedactURL returns an endpoint URL fit for messages and logs: the password of its user
// part (between "://" and the authority's last '@') and the value of every name=value pair
// whose name mentions a password or a secret (password=, sslpassword=, client_secret=)
// are replaced by "xxxxx"; the rest is kept as written. It does not need the URL to parse,
// since a mistyped URL is exactly what an error message quotes: where the URL does not
// parse, or an '@' follows its authority, the password is taken to run to the last '@' of
// the text, in case it holds a character its writer did not escape. A URL holding no
// secret comes back unchanged.
func RedactURL(raw string) string {
	var b strings.Builder
	rest := raw
	_, err := url.Parse(raw)
	// Every "://" starts an authority (one in a path too: better hide too much).
	for {
		i := strings.Index(rest, "://")
		if i < 0 {
			break
		}
		b.WriteString(rest[:i+3])
		rest = rest[i+3:]
		end := strings.IndexAny(rest, "/?#")
		if end < 0 {
			end = len(rest)
		}
		// The password follows the first ':' of the authority, up to its last '@'. Where
		// the URL does not parse, or the authority holds no '@' but the text after it
		// does, it may be a password holding a '/', '?', '#' or '@' its writer did not
		// escape: hide everything up to the text's last '@'.
		c := strings.IndexByte(rest[:end], ':')
		at := strings.LastIndexByte(rest[:end], '@')
		path := rest[end:]
		if q := strings.IndexAny(path, "?#"); q >= 0 {
			path = path[:q]
		}
		if err != nil || at < 0 || strings.IndexByte(path, '@') >= 0 {
			// An '@' in the path too: "u:p@ss/word@host/db" parses as the host "ss"
			// and a path, and the password runs to the last '@'.
			at = strings.LastIndexByte(rest, '@')
		}
		if c >= 0 && at > c {
			b.WriteString(rest[:c+1] + redacted)
			rest = rest[at:]
		}
	}
	b.WriteString(rest)
	rest = b.String()
	b.Reset()
	// Pairs are separated by '?', '&' or '#' wherever they are (a pair misplaced
	// after a '#' is still shown only redacted). A secret's value runs on to the next
	// '&' or '#': a '?' its writer did not escape is part of the password.
	for rest != "" {
		end := strings.IndexAny(rest, "?&#")
		if end < 0 {
			end = len(rest)
		}
		p := redactPair(rest[:end])
		if p != rest[:end] {
			end = strings.IndexAny(rest, "&#")
			if end < 0 {
				end = len(rest)
			}
		}
		b.WriteString(p)
		if end < len(rest) {
			b.WriteByte(rest[end])
			end++
		}
		rest = rest[end:]
	}
	return b.String()
}

// redactPair returns name=value with its value redacted when the name names a secret
// (after unescaping it, or anywhere before an '=', so that a=password=x is caught too),
// and anything else unchanged.
func redactPair(p string) string {
	lp := asciiLower(p) // byte for byte: its indexes are p's
	at := -1
	for _, word := range []string{"pass", "secret"} {
		if i := strings.Index(lp, word); i >= 0 && (at < 0 || i < at) {
			at = i
		}
	}
	if at >= 0 {
		if eq := strings.IndexByte(p[at:], '='); eq >= 0 {
			return p[:at+eq+1] + redacted
		}
	}
	name, _, ok := strings.Cut(p, "=")
	if !ok {
		return p
	}
	if n, err := url.QueryUnescape(name); err == nil {
		n = asciiLower(n)
		if strings.Contains(n, "pass") || strings.Contains(n, "secret") {
			return name + "=" + redacted
		}
	}
	return p
}

// asciiLower lowercases the ASCII letters of s and leaves every other byte as it is.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// PasswordHint is the usual cause of a URL that holds a password and does not parse as
// meant.
const PasswordHint = "a password's / ? # @ : % and spaces must be percent-encoded (%2F %3F %23 %40 %3A %25 %20)"

// URLProblem says why url.Parse refused raw (err is what it returned) without quoting a
// secret: the parser's own words quote parts of the URL, so where raw holds a password
// or a secret parameter they give way to a hint about the usual cause, a character of
// the password that is not percent-encoded.
func URLProblem(raw string, err error) string {
	if RedactURL(raw) != raw {
		return PasswordHint
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return err.Error()
}
