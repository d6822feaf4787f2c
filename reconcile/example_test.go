package reconcile_test

import (
	"context"
	"fmt"

	"github.com/reconcile-dev/reconcile/adapters/memory"
	"github.com/reconcile-dev/reconcile/merkle"
	"github.com/reconcile-dev/reconcile/reconcile"
)

// A replica missed one write and kept a row the primary deleted; one mirror session
// repairs both, and the roots then match.
func ExampleRun() {
	ctx := context.Background()
	primary, replica := memory.New(merkle.VersionOrder), memory.New(merkle.VersionOrder)
	for i, name := range []string{"ada", "bob", "cy"} {
		r := reconcile.Row{Key: []byte(fmt.Sprintf("user/%d", i)), Version: uint64(100 + i), Value: []byte(name)}
		primary.Put(r)
		replica.Put(r)
	}
	primary.Put(reconcile.Row{Key: []byte("user/3"), Version: 104, Value: []byte("dee")}) // lost on the way
	primary.Delete([]byte("user/1"))                                                      // delete never applied

	rep, err := reconcile.Run(ctx, primary, replica, reconcile.Options{Mode: reconcile.Mirror, MaxDelete: mustLimit("1")})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("only on primary %d, only on replica %d, changed %d\n", rep.OnlySource, rep.OnlyTarget, rep.Changed)
	fmt.Printf("upserted %d, deleted %d, roots equal: %v\n", rep.Upserted, rep.Deleted, rep.RootSource == rep.RootTargetAfter)
	// Output:
	// only on primary 1, only on replica 1, changed 0
	// upserted 1, deleted 1, roots equal: true
}

func mustLimit(s string) reconcile.DeleteLimit {
	l, err := reconcile.ParseDeleteLimit(s)
	if err != nil {
		panic(err)
	}
	return l
}
