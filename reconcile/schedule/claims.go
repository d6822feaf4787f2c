package schedule

import (
	"context"
	"sync"
)

// claim is one lock a run holds: exclusive, or shared with other shared claims.
type claim struct {
	key       string
	exclusive bool
}

// claims is a set of named shared/exclusive locks taken all at once, so that a run
// holding several never deadlocks with another. It keeps runs of one pair of endpoints
// from overlapping (an exclusive claim on the pair) and a store from being written by
// one run while another reads or writes it (an exclusive claim on a mirror's target, a
// shared one on every other endpoint): a Badger directory opened for writing cannot be
// opened again, even in the same process.
type claims struct {
	mu      sync.Mutex
	shared  map[string]int
	held    map[string]bool // exclusive
	changed chan struct{}   // closed and replaced on every release
	waiting int             // acquire calls waiting now
}

func newClaims() *claims {
	return &claims{shared: map[string]int{}, held: map[string]bool{}, changed: make(chan struct{})}
}

// acquire takes every claim in cs, waiting until all are free at once or ctx is done. It
// reports whether it had to wait.
func (c *claims) acquire(ctx context.Context, cs []claim) (waited bool, err error) {
	defer func() {
		if waited {
			c.mu.Lock()
			c.waiting--
			c.mu.Unlock()
		}
	}()
	for {
		c.mu.Lock()
		if c.free(cs) {
			for _, x := range cs {
				if x.exclusive {
					c.held[x.key] = true
				} else {
					c.shared[x.key]++
				}
			}
			c.mu.Unlock()
			return waited, nil
		}
		ch := c.changed
		if !waited {
			c.waiting++
		}
		c.mu.Unlock()
		waited = true
		select {
		case <-ctx.Done():
			return waited, ctx.Err()
		case <-ch:
		}
	}
}

// free reports whether every claim in cs can be taken now; c.mu is held.
func (c *claims) free(cs []claim) bool {
	for _, x := range cs {
		if c.held[x.key] || (x.exclusive && c.shared[x.key] > 0) {
			return false
		}
	}
	return true
}

// waiters returns how many acquire calls are waiting.
func (c *claims) waiters() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.waiting
}

// release gives back claims taken by acquire.
func (c *claims) release(cs []claim) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, x := range cs {
		if x.exclusive {
			delete(c.held, x.key)
		} else if c.shared[x.key]--; c.shared[x.key] <= 0 {
			delete(c.shared, x.key)
		}
	}
	close(c.changed)
	c.changed = make(chan struct{})
}
