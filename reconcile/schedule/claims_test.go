package schedule

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/reconcile-dev/reconcile/adapters/memory"
	"github.com/reconcile-dev/reconcile/merkle"
	"github.com/reconcile-dev/reconcile/reconcile"
)

func TestClaims(t *testing.T) {
	c := newClaims()
	ctx := context.Background()
	expired, cancel := context.WithCancel(ctx)
	cancel()
	read := []claim{{key: "a"}}
	write := []claim{{key: "a", exclusive: true}}
	both := []claim{{key: "b"}, {key: "a", exclusive: true}}

	if w, err := c.acquire(ctx, read); err != nil || w {
		t.Fatalf("first shared claim: waited %v, %v", w, err)
	}
	if _, err := c.acquire(ctx, read); err != nil {
		t.Fatal("shared claims go together")
	}
	if _, err := c.acquire(expired, write); err == nil {
		t.Fatal("an exclusive claim was taken while shared ones are held")
	}
	if c.waiters() != 0 {
		t.Fatalf("%d waiters after a cancelled wait", c.waiters())
	}
	c.release(read)
	c.release(read)
	// Taken all at once: b stays free when a is not.
	if _, err := c.acquire(ctx, write); err != nil {
		t.Fatal(err)
	}
	if _, err := c.acquire(expired, both); err == nil {
		t.Fatal("a claim set was taken while one of its claims is held")
	}
	if _, err := c.acquire(expired, []claim{{key: "b", exclusive: true}}); err != nil {
		t.Fatal("a failed claim set kept one of its claims")
	}
	c.release([]claim{{key: "b", exclusive: true}})

	// A waiter gets its claims when the holder releases them, and says it waited.
	got := make(chan bool)
	go func() {
		w, err := c.acquire(ctx, both)
		if err != nil {
			t.Error(err)
		}
		got <- w
	}()
	for c.waiters() != 1 {
		time.Sleep(time.Millisecond)
	}
	c.release(write)
	if !<-got {
		t.Fatal("the waiter did not report waiting")
	}
	c.release(both)
	if len(c.held)+len(c.shared) != 0 {
		t.Fatalf("claims left: %v %v", c.held, c.shared)
	}
}

// TestSecretsAndRedaction checks that secrets are read at every run (a rotated one is
// picked up), that they reach the opener, and that a password in a URL is warned about
// and never shown.
func TestSecretsAndRedaction(t *testing.T) {
	t.Setenv("TEST_SCHED_TOKEN", "first")
	src, dst := memory.New(merkle.VersionOrder), memory.New(merkle.VersionOrder)
	src.Put(reconcile.Row{Key: []byte("k"), Version: 1, Value: []byte("v")})
	var seen []string
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs bytes.Buffer
	s, err := New(Config{Jobs: []Job{{Name: "j", Mode: reconcile.Diff, Interval: time.Millisecond,
		Source: EndpointConfig{URL: "postgres://app:hunter2@db/app?table=t"},
		Target: EndpointConfig{URL: "https://replica:7700", TokenEnv: "TEST_SCHED_TOKEN"}}}},
		Options{
			Logger: slog.New(slog.NewTextHandler(&logs, nil)),
			Open: func(_ context.Context, req OpenRequest) (*Opened, error) {
				if req.Role == Source {
					return &Opened{Endpoint: src}, nil
				}
				seen = append(seen, req.Token)
				return &Opened{Endpoint: dst}, nil
			},
			OnResult: func(r Result) {
				if len(seen) == 1 {
					os.Setenv("TEST_SCHED_TOKEN", "rotated") // restored by the t.Setenv above
				} else {
					cancel()
				}
			},
		})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if strings.Join(seen, " ") != "first rotated" {
		t.Fatalf("tokens seen by the opener: %v", seen)
	}
	b, _ := json.Marshal(s.Jobs())
	if strings.Contains(string(b), "hunter2") || strings.Contains(logs.String(), "hunter2") {
		t.Fatalf("the password shows:\n%s\n%s", b, logs.String())
	}
	if !strings.Contains(logs.String(), "a password is written in the config") || !strings.Contains(string(b), "app:xxxxx@db") {
		t.Fatalf("no warning or redaction:\n%s\n%s", b, logs.String())
	}
}
