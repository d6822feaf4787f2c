package sql

import (
	"bytes"
	"context"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/reconcile-dev/reconcile/merkle"
	"github.com/reconcile-dev/reconcile/reconcile"
)

// TestCanonicalAcrossEngines writes the same logical rows into a table of each engine,
// with each engine's own types and literals, and checks that every engine reads back
// exactly the canonical value built here in Go: the hard cases of DESIGN §6 (NULL vs
// empty, NFC vs NFD, trailing spaces under a case-insensitive collation, decimal scales,
// -0 and subnormal floats, float4, time zones, timestamps beyond int64 nanoseconds, bytes,
// 64-bit extremes, booleans, JSON keys, spaces and numbers).
func TestCanonicalAcrossEngines(t *testing.T) {
	es := engines(t)
	type row struct {
		id   int64
		vals map[string]string // column -> literal per engine, "pg|my|lite" or one for all
	}
	lit := func(e *engine, s string) string {
		if parts := strings.Split(s, "|"); len(parts) == 3 {
			return ddl(e, parts[0], parts[1], parts[2])
		}
		return s
	}
	rows := []row{
		{1, map[string]string{"t": "''", "c": "'ab'", "n": "1.500", "f": "'-0'::float8|-0.0e0|-0.0", "r": "0.1|0.1|0.10000000149011612",
			"b": `'\x00ff'::bytea|x'00ff'|x'00ff'`, "bo": "true|true|1",
			"ts": "'2024-03-10 12:00:00+05'|'2024-03-10 07:00:00'|'2024-03-10T12:00:00+05:00'",
			"dt": "'2024-03-10 12:00:00.123456'", "d": "'2024-02-29'", "tm": "'13:14:15.5'",
			"j": `'{"b": 1, "a": [1, 2.50]}'`, "i": "-9223372036854775808"}},
		{2, map[string]string{"i": "9223372036854775807", "bo": "false|false|0"}},
		{3, map[string]string{"t": "'\u00e9'", "n": "-0.000", "f": "2.2250738585072014e-308|2.2250738585072014e-308|2.2250738585072014e-308", "r": "'-0'::float4|-0.0e0|-0.0"}},
		{4, map[string]string{"t": "'e\u0301'", "n": "12345678901.25", "f": "1e308"}},
		{5, map[string]string{"t": "'Abc  '", "c": "'x  '", "n": "0.001"}},
		// Instants int64 nanoseconds cannot hold: MySQL's end-of-time sentinel, year 1.
		{6, map[string]string{"dt": "'9999-12-31 23:59:59.999999'"}},
		{7, map[string]string{"dt": "'0001-01-01 00:00:00'"}},
		// Numbers as jsonb rewrites them and MariaDB and SQLite keep them.
		{8, map[string]string{"j": `'[1e2, -0, 1.50e1, 1e-2, {"b": -0.0, "a": 1E+0}]'`}},
	}
	ns := func(s string) int64 {
		tm, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm.UnixNano()
	}
	wide := func(s string) Datum {
		tm, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return Datum{Class: Timestamp, Wide: true, Int: tm.Unix(), Nano: int32(tm.Nanosecond())}
	}
	day := func(s string) int64 {
		tm, _ := time.Parse(time.DateOnly, s)
		return tm.Unix() / 86400
	}
	f32 := float64(float32(0.1))
	// want: columns in name order: b bo c d dt f i j n r t tm ts
	want := map[int64][]Datum{
		1: {{Class: Bytes, Bytes: []byte{0, 0xff}}, {Class: Bool, Int: 1}, {Class: Text, Str: "ab"}, {Class: Date, Int: day("2024-02-29")},
			{Class: Timestamp, Int: ns("2024-03-10T12:00:00.123456Z")}, {Class: Float, Float: 0}, {Class: Int, Int: math.MinInt64},
			{Class: JSON, Str: `{"a":[1,2.50],"b":1}`}, {Class: Decimal, Str: "1.5"}, {Class: Float, Float: f32}, {Class: Text, Str: ""},
			{Class: Time, Int: int64(13*time.Hour + 14*time.Minute + 15500*time.Millisecond)}, {Class: Timestamp, Int: ns("2024-03-10T07:00:00Z")}},
		2: {{}, {Class: Bool, Int: 0}, {}, {}, {}, {}, {Class: Int, Int: math.MaxInt64}, {}, {}, {}, {}, {}, {}},
		3: {{}, {}, {}, {}, {}, {Class: Float, Float: 2.2250738585072014e-308}, {}, {}, {Class: Decimal, Str: "0"}, {Class: Float, Float: 0}, {Class: Text, Str: "\u00e9"}, {}, {}},
		4: {{}, {}, {}, {}, {}, {Class: Float, Float: 1e308}, {}, {}, {Class: Decimal, Str: "12345678901.25"}, {}, {Class: Text, Str: "e\u0301"}, {}, {}},
		5: {{}, {}, {Class: Text, Str: "x"}, {}, {}, {}, {}, {}, {Class: Decimal, Str: "0.001"}, {}, {Class: Text, Str: "Abc  "}, {}, {}},
		6: {{}, {}, {}, {}, wide("9999-12-31T23:59:59.999999Z"), {}, {}, {}, {}, {}, {}, {}, {}},
		7: {{}, {}, {}, {}, wide("0001-01-01T00:00:00Z"), {}, {}, {}, {}, {}, {}, {}, {}},
		8: {{}, {}, {}, {}, {}, {}, {}, {Class: JSON, Str: `[100,0,15.0,0.01,{"a":1,"b":0.0}]`}, {}, {}, {}, {}, {}},
	}
	for _, e := range es {
		t.Run(e.name, func(t *testing.T) {
			name := e.table(t)
			e.exec(t, "CREATE TABLE "+name+" (id bigint PRIMARY KEY, "+
				"t "+ddl(e, "text", "varchar(50) COLLATE utf8mb4_general_ci", "text")+", "+
				"c char(5), n "+ddl(e, "numeric(20,3)", "decimal(20,3)", "decimal(20,3)")+", "+
				"f "+ddl(e, "float8", "double", "real")+", r "+ddl(e, "float4", "float", "float")+", "+
				"b "+ddl(e, "bytea", "varbinary(50)", "blob")+", bo boolean, "+
				"ts "+ddl(e, "timestamptz", "timestamp(6) NULL", "timestamp")+", dt "+ddl(e, "timestamp", "datetime(6)", "datetime")+", "+
				"d date, tm "+ddl(e, "time", "time(6)", "time")+", j "+ddl(e, "jsonb", "json", "json")+", i bigint)")
			for _, r := range rows {
				cols, vals := []string{"id"}, []string{strconv.FormatInt(r.id, 10)}
				for c, v := range r.vals {
					cols = append(cols, c)
					vals = append(vals, lit(e, v))
				}
				e.exec(t, "INSERT INTO "+name+" ("+strings.Join(cols, ", ")+") VALUES ("+strings.Join(vals, ", ")+")")
			}
			// A session time zone far from UTC must not change what timestamps mean.
			params := ""
			if e.name == "postgres" {
				params = "timezone=Asia/Kolkata"
			}
			tb := openTable(t, e.url(name, params))
			if got, wantSchema := tb.Schema(), "sql/1 key=int columns=b:bytes,bo:bool,c:text,d:date,dt:timestamp,f:float,i:int,j:json,n:decimal,r:float,t:text,tm:time,ts:timestamp"; got != wantSchema {
				t.Fatalf("schema %q, want %q", got, wantSchema)
			}
			seen := 0
			err := tb.Scan(context.Background(), 0, func(r reconcile.Row) bool {
				ds, err := DecodeKey(r.Key, tb.KeyColumns())
				if err != nil {
					t.Fatal(err)
				}
				id := ds[0].Int
				w := AppendValue(nil, want[id])
				if !bytes.Equal(r.Value, w) {
					got, _ := DecodeValue(r.Value, tb.ValueColumns())
					for i := range got {
						{
							if got[i].String() != want[id][i].String() || got[i].Class != want[id][i].Class {
								t.Errorf("row %d column %s: got %s %q, want %s %q", id, tb.ValueColumns()[i].Name, got[i].Class, got[i], want[id][i].Class, want[id][i])
							}
						}
					}
					t.Errorf("row %d: canonical value differs", id)
				}
				seen++
				return true
			})
			if err != nil {
				t.Fatal(err)
			}
			if seen != len(rows) {
				t.Fatalf("scanned %d rows, want %d", seen, len(rows))
			}
			// A scan snapshot (PostgreSQL: its own wire decoding) holds the same entries.
			sameScanEntries(t, tb)
		})
	}
}

// sameScanEntries checks that a scan-mode snapshot of tb (Open, which reads through the
// dialect's rawReader where it has one) holds exactly the entries of tb.Scan (database/sql).
func sameScanEntries(t *testing.T, tb *Table) {
	t.Helper()
	ctx := context.Background()
	want := map[string]merkle.Entry{}
	if err := tb.Scan(ctx, 0, func(r reconcile.Row) bool { want[string(r.Key)] = r.Entry(); return true }); err != nil {
		t.Fatal(err)
	}
	snap, err := tb.openScan(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	got, err := snap.Entries(ctx, nil, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("scan snapshot holds %d entries, the driver scan %d", len(got), len(want))
	}
	for _, e := range got {
		w, ok := want[string(e.Key)]
		if !ok || !merkle.SameEntry(&e, &w) {
			t.Fatalf("key %x: scan snapshot entry %+v, driver scan %+v", e.Key, e, w)
		}
	}
	if c := snap.Info().Root.Count; c != uint64(len(want)) {
		t.Fatalf("root count %d, want %d", c, len(want))
	}
}
