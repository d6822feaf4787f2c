package memory_test

import (
	"testing"

	"github.com/reconcile-dev/reconcile/adapters/memory"
	"github.com/reconcile-dev/reconcile/merkle"
	"github.com/reconcile-dev/reconcile/reconcile"
	"github.com/reconcile-dev/reconcile/reconcile/endpointtest"
)

func TestConformance(t *testing.T) {
	for _, o := range []merkle.Ordering{merkle.VersionOrder, merkle.KeyOrder} {
		t.Run(o.String(), func(t *testing.T) {
			endpointtest.Run(t, func(t *testing.T) endpointtest.Harness {
				s := memory.New(o)
				s.MaxRowBytes = 2 << 20
				return endpointtest.Harness{
					Endpoint:         s,
					Put:              func(r reconcile.Row) error { s.Put(r); return nil },
					Delete:           func(k []byte) error { s.Delete(k); return nil },
					RejectValueBytes: 2<<20 + 1,
				}
			})
		})
	}
}
