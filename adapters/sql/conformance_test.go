package sql

import (
	"context"
	"math"
	"testing"

	"github.com/reconcile-dev/reconcile/reconcile"
	"github.com/reconcile-dev/reconcile/reconcile/endpointtest"
)

// bytesValue is the canonical value of a table whose one value column is bytes.
func bytesValue(p []byte) []byte {
	return AppendValue(nil, []Datum{{Class: Bytes, Bytes: p}})
}

// TestConformance runs the shared endpoint suite against a table (bytes key, bigint
// version, bigint expiry in unix ns, one bytes value column capped at 2 MiB by a CHECK) in
// every engine, in version order and in key order.
func TestConformance(t *testing.T) {
	for _, e := range engines(t) {
		for _, mode := range []string{"scan", "maintained"} {
			for _, versioned := range []bool{true, false} {
				name := e.name + "/" + mode + "/key-order"
				if versioned {
					name = e.name + "/" + mode + "/version-order"
				}
				t.Run(name, func(t *testing.T) {
					endpointtest.Run(t, func(t *testing.T) endpointtest.Harness {
						return conformanceHarness(t, e, versioned, mode)
					})
				})
			}
		}
	}
}

func conformanceHarness(t *testing.T, e *engine, versioned bool, mode string) endpointtest.Harness {
	name := e.table(t)
	key := ddl(e, "bytea", "varbinary(255)", "blob")
	val := ddl(e, "bytea", "longblob", "blob")
	check := ddl(e, "octet_length(v) <= 2097152", "length(v) <= 2097152", "length(v) <= 2097152")
	e.exec(t, "CREATE TABLE "+name+" (k "+key+" PRIMARY KEY, ver bigint, exp bigint, v "+val+" NOT NULL, CHECK ("+check+"))")
	params := "expires=exp&columns=v&mode=" + mode
	if versioned {
		params += "&version=ver"
	}
	tb := openTable(t, e.url(name, params))
	if mode == "maintained" {
		if _, err := tb.InstallIndex(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			st, err := tb.VerifyIndex(context.Background())
			if err != nil || !st.OK() {
				t.Errorf("index verify after the test: %+v, %v", st, err)
			}
			tb.UninstallIndex(context.Background())
		})
	}
	put := func(rows []reconcile.Row) error {
		return tb.Write(context.Background(), func(w *Writer) error {
			for _, r := range rows {
				if err := w.Put(r.Key, r.Value, r.Version, r.ExpiresAt); err != nil {
					return err
				}
			}
			return nil
		})
	}
	granularity := 0
	if mode == "maintained" {
		granularity = ChunkTarget
	}
	return endpointtest.Harness{
		SplitGranularity: granularity,
		Endpoint:         tb,
		Put:              func(r reconcile.Row) error { return put([]reconcile.Row{r}) },
		PutMany:          put,
		Delete: func(k []byte) error {
			return tb.Write(context.Background(), func(w *Writer) error { return w.Delete(k) })
		},
		RejectValueBytes: 2<<20 + 1,
		Value:            bytesValue,
		MaxVersion:       math.MaxInt64,
	}
}
