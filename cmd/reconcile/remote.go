package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	remote "github.com/reconcile-dev/reconcile/adapters/http"
	sqlep "github.com/reconcile-dev/reconcile/adapters/sql"
	"github.com/reconcile-dev/reconcile/reconcile"
)

// http(s) endpoints: a server run by `reconcile serve`. The token comes from
// ?token_file=FILE in the URL, or else from the RECONCILE_TOKEN environment variable.
// docs/http.md describes the server and what is not supported yet.

const tokenEnv = "RECONCILE_TOKEN"

// httpHelp is the form of http(s) endpoint URLs.
const httpHelp = "want http://host:port or https://host:port, with optional ?token_file=FILE and &timeout=DURATION"

// maxTokenFile bounds a token file.
const maxTokenFile = 4096

func parseHTTP(u *url.URL, loc *location) error {
	switch {
	case u.Opaque != "" || u.Host == "":
		return fmt.Errorf("want %s://host:port", u.Scheme)
	case u.User != nil:
		return errors.New("no user or password in the URL: give the token with ?token_file=FILE or " + tokenEnv)
	case u.Path != "" && u.Path != "/":
		return fmt.Errorf("unexpected path %q: a server serves one endpoint at %s://host:port", u.Path, u.Scheme)
	case u.Fragment != "":
		return fmt.Errorf("unexpected fragment %q", "#"+u.Fragment)
	}
	for k, v := range u.Query() {
		if len(v) != 1 || v[0] == "" {
			return fmt.Errorf("parameter %q wants one value", k)
		}
		switch k {
		case "token_file":
			loc.tokenFile = v[0]
		case "timeout":
			d, err := time.ParseDuration(v[0])
			if err != nil || d <= 0 {
				return fmt.Errorf("timeout=%s: give a positive duration, such as 30s or 5m", v[0])
			}
			loc.timeout = d
		default:
			return fmt.Errorf("unknown parameter %q (%s takes token_file=FILE and timeout=DURATION)", k, u.Scheme)
		}
	}
	loc.server = u.Scheme + "://" + u.Host
	return nil
}

// readToken reads a token file: its content with surrounding white space removed.
func readToken(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	defer f.Close()
	b := make([]byte, maxTokenFile+1)
	n, _ := f.Read(b)
	if n > maxTokenFile {
		return "", fmt.Errorf("token file %s: longer than %d bytes", path, maxTokenFile)
	}
	tok := strings.TrimSpace(string(b[:n]))
	if tok == "" {
		return "", fmt.Errorf("token file %s is empty", path)
	}
	return tok, nil
}

func openHTTP(loc location, _ access) (*endpoint, error) {
	c, err := httpClient(loc, "", "", "set "+tokenEnv+" or add ?token_file=FILE to the URL")
	if err != nil {
		return nil, err
	}
	return &endpoint{Endpoint: remoteEndpoint{c: c, url: loc.server}, loc: loc, remote: c}, nil
}

// httpClient returns a client for loc's server. Its token is token (given, from where
// from says) when set, else the URL's ?token_file=, else RECONCILE_TOKEN; help tells how
// to give one, for the message of a server that wants one.
func httpClient(loc location, token, from, help string) (*remote.Client, error) {
	if token == "" && loc.tokenFile != "" {
		var err error
		if token, err = readToken(loc.tokenFile); err != nil {
			return nil, err
		}
		from = "?token_file=" + loc.tokenFile
	}
	if token == "" {
		// Trimmed as a token file is: `export RECONCILE_TOKEN=$(cat file)` keeps no
		// newline, but other ways of setting it may, and no token holds white space.
		token, from = strings.TrimSpace(os.Getenv(tokenEnv)), tokenEnv
	}
	return remote.NewClient(loc.server, remote.ClientOptions{Token: token, KeyFormatter: sqlep.KeyFormatterFor,
		TokenSource: from, TokenHelp: help, Timeout: loc.timeout,
		TimeoutHelp: "raise ?timeout= in the server's URL (" + timeoutNow(loc.timeout) + "), e.g. '" + loc.server + "?timeout=10m'"})
}

// timeoutNow describes the timeout of one attempt a URL sets, for messages.
func timeoutNow(d time.Duration) string {
	if d <= 0 {
		return "now the default, 2m"
	}
	return "now " + d.String()
}

// remoteEndpoint stands for an http(s) endpoint where the commands expect a
// reconcile.Endpoint: sessions run against it as a Peer (runPeerSession when it is the
// target, runPullSession when it is the source), and everything that would need its
// snapshot here is refused.
type remoteEndpoint struct {
	c   *remote.Client
	url string
}

func (r remoteEndpoint) Open(context.Context, int64) (reconcile.Snapshot, error) {
	return nil, notYet("reading " + r.url + " as a local snapshot (as a session's source)")
}

func (r remoteEndpoint) Apply(context.Context, int64, []reconcile.Change) ([]reconcile.Outcome, error) {
	return nil, notYet("writing to " + r.url + " outside a session")
}

func (r remoteEndpoint) Close() error {
	err := r.c.Close()
	r.c.CloseIdleConnections()
	return err
}

func notYet(what string) error {
	return fmt.Errorf("%s: http(s) endpoints do not support this yet (see docs/http.md)", what)
}

// runPeerSession runs a session from source against an http(s) target and, like
// reconcile.Run, reads the target's root after a sync that wrote.
func runPeerSession(ctx context.Context, source reconcile.Endpoint, t *endpoint, opts reconcile.Options) (*reconcile.Report, error) {
	if opts.Now == 0 {
		opts.Now = time.Now().UnixNano()
	}
	rep, err := reconcile.RunPeer(ctx, source, t.remote, opts)
	t.remote.Close() // ends the session on the server, releasing its snapshot
	if err == nil {
		err = rep.ReadRootAfter(func() (reconcile.Info, error) { return t.remote.Root(ctx, opts.Now) })
	}
	return rep, err
}

// runPullSession runs a session from an http(s) source into a local target: the target
// initiates and reads the rows it lacks from the server (reconcile.RunFromPeer).
func runPullSession(ctx context.Context, s *endpoint, target reconcile.Endpoint, opts reconcile.Options) (*reconcile.Report, error) {
	rep, err := reconcile.RunFromPeer(ctx, s.remote, target, opts)
	s.remote.Close() // ends the session on the server, releasing its snapshot
	return rep, err
}
