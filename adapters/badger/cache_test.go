package badger

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"

	bdg "github.com/dgraph-io/badger/v4"
)

// TestCacheModel drives the write cache with random reads, writes and range scans over a
// Badger DB holding random keys, and compares every answer with a plain map.
func TestCacheModel(t *testing.T) {
	db, err := bdg.Open(bdg.DefaultOptions(t.TempDir()).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rng := rand.New(rand.NewPCG(3, 4))
	key := func() []byte {
		k := make([]byte, 1+rng.IntN(3))
		for i := range k {
			k[i] = 'a' + byte(rng.IntN(6))
		}
		return k
	}
	model := map[string]string{}
	wb := db.NewWriteBatch()
	for range 150 {
		k := key()
		v := fmt.Sprint(rng.IntN(1000))
		model[string(k)] = v
		must(t, wb.Set(k, []byte(v)))
	}
	must(t, wb.Flush())

	var c *cache
	for round := range 120 {
		// A cache outlives its transaction, as in a Write: keep it for a few rounds.
		if round%3 == 0 {
			c = newCache(&pending{threshold: 1 << 20})
		}
		c.txn = db.NewTransaction(true)
		var log []string
		for step := range 300 {
			if dup := dupNode(c); dup != "" {
				for _, l := range log[max(0, len(log)-3):] {
					t.Log(l)
				}
				t.Fatalf("round %d step %d: duplicate node %q", round, step, dup)
			}
			switch op := rng.IntN(10); {
			case op < 3:
				k := key()
				v, ok, err := c.Get(k)
				must(t, err)
				log = append(log, fmt.Sprintf("Get(%s)", k))
				mv, mok := model[string(k)]
				if ok != mok || string(v) != mv {
					t.Fatalf("round %d step %d: Get(%s) = %q %v, model %q %v", round, step, k, v, ok, mv, mok)
				}
			case op < 5:
				k, v := key(), fmt.Sprint(rng.IntN(1000))
				must(t, c.Set(k, []byte(v)))
				model[string(k)] = v
				log = append(log, fmt.Sprintf("Set(%s, %s)", k, v))
			case op < 6:
				k := key()
				must(t, c.Delete(k))
				delete(model, string(k))
				log = append(log, fmt.Sprintf("Delete(%s)", k))
			default:
				var start, end []byte
				if rng.IntN(4) > 0 {
					start = key()
				}
				if rng.IntN(4) > 0 {
					end = key()
				}
				reverse := rng.IntN(2) == 0
				limit := 1 + rng.IntN(8)
				log = append(log, fmt.Sprintf("Iterate(%q, %q, %v, %d)", start, end, reverse, limit))
				var got []string
				must(t, c.Iterate(start, end, reverse, func(k, v []byte) bool {
					got = append(got, string(k)+"="+string(v))
					return len(got) < limit
				}))
				var want []string
				for k, v := range model {
					if (start == nil || k >= string(start)) && (end == nil || k < string(end)) {
						want = append(want, k+"="+v)
					}
				}
				sort.Strings(want)
				if reverse {
					for i, j := 0, len(want)-1; i < j; i, j = i+1, j-1 {
						want[i], want[j] = want[j], want[i]
					}
				}
				if len(want) > limit {
					want = want[:limit]
				}
				if fmt.Sprint(got) != fmt.Sprint(want) {
					for _, l := range log {
						if bytes.Contains([]byte(l), []byte("ae")) || bytes.HasPrefix([]byte(l), []byte("Iter")) {
							t.Log(l)
						}
					}
					dumpCache(t, c)
					t.Fatalf("round %d step %d: Iterate(%q, %q, reverse %v, limit %d) = %v, model %v", round, step, start, end, reverse, limit, got, want)
				}
			}
		}
		checkCacheLinks(t, c)
		must(t, c.flush())
		must(t, c.txn.Commit())
	}
}

// checkCacheLinks checks the skip list's order and back links.
func checkCacheLinks(t *testing.T, c *cache) {
	t.Helper()
	prev := c.head
	for n := c.head.next[0]; n != nil; n = n.next[0] {
		if n.prev != prev {
			t.Fatalf("node %q: prev link broken", n.key)
		}
		if prev != c.head && bytes.Compare(prev.key, n.key) >= 0 {
			t.Fatalf("nodes out of order: %q then %q", prev.key, n.key)
		}
		prev = n
	}
}

func dumpCache(t *testing.T, c *cache) {
	s := fmt.Sprintf("head gap=%v:", c.head.gap)
	for n := c.head.next[0]; n != nil; n = n.next[0] {
		s += fmt.Sprintf(" [%s ok=%v gap=%v]", n.key, n.ok, n.gap)
	}
	t.Log(s)
}

func dupNode(c *cache) string {
	for n := c.head.next[0]; n != nil && n.next[0] != nil; n = n.next[0] {
		if bytes.Equal(n.key, n.next[0].key) {
			return string(n.key)
		}
	}
	return ""
}
