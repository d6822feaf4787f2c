package sql

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestNormalizeDecimal(t *testing.T) {
	for in, want := range map[string]string{
		"1.50": "1.5", "1.5": "1.5", "001.500": "1.5", "-0.000": "0", "0": "0", "+7": "7", ".5": "0.5",
		"5.": "5", "-12345678901234567890.1230": "-12345678901234567890.123", "1e3": "1000", "1.5E-3": "0.0015",
		"NaN": "NaN", "infinity": "Infinity", "-Infinity": "-Infinity", " 2.0 ": "2",
		"-0e5": "0", "00.0100e1": "0.1", ".5e1": "5", "5.e1": "50", "12.5e-1": "1.25", "-1.25e+2": "-125",
		"0.000e-7": "0", "1e-5": "0.00001", "120e-3": "0.12",
	} {
		got, err := NormalizeDecimal(in)
		if err != nil || got != want {
			t.Errorf("NormalizeDecimal(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "-", ".", "1.2.3", "abc", "1,5", "--1", "1e", "e5", "1e5.0", "1e+-2",
		// Not decimal notation: big.Rat would take these (and spend seconds on the last ones).
		"0x1e", "0x1ep5", "1/3e0", "0b1e1", "0xep9999999",
		// Exponents past MaxDecimalDigits.
		"1e999999999", "1e-999999999", "1e150001", "1e-150001"} {
		if got, err := NormalizeDecimal(bad); err == nil {
			t.Errorf("NormalizeDecimal(%q) = %q, want an error", bad, got)
		}
	}
}

func TestCanonFloat(t *testing.T) {
	c := Column{Name: "f", Class: Float}
	for _, v := range []any{math.Copysign(0, -1), "-0", float32(math.Copysign(0, -1))} {
		d, err := c.canon(v)
		if err != nil || math.Float64bits(d.Float) != 0 {
			t.Errorf("canon(%v) = %v, %v; want +0", v, d.Float, err)
		}
	}
	nan1, nan2 := math.Float64frombits(0x7ff8000000000001), math.Float64frombits(0xfff8000000000000)
	a, _ := c.canon(nan1)
	b, _ := c.canon(nan2)
	if math.Float64bits(a.Float) != canonicalNaN || math.Float64bits(b.Float) != canonicalNaN {
		t.Errorf("NaNs not canonical: %x %x", math.Float64bits(a.Float), math.Float64bits(b.Float))
	}
	sub := math.SmallestNonzeroFloat64
	if d, _ := c.canon(sub); d.Float != sub {
		t.Errorf("subnormal changed: %v", d.Float)
	}
	c32 := Column{Name: "r", Class: Float, Float32: true}
	d1, _ := c32.canon("0.1")
	d2, _ := c32.canon(float32(0.1))
	if d1.Float != d2.Float || d1.Float != float64(float32(0.1)) {
		t.Errorf("float4 text %v and binary %v differ", d1.Float, d2.Float)
	}
}

func TestCanonTimes(t *testing.T) {
	ts := Column{Name: "ts", Class: Timestamp}
	want := time.Date(2024, 3, 10, 7, 0, 0, 123456789, time.UTC).UnixNano()
	for _, v := range []any{
		time.Date(2024, 3, 10, 12, 0, 0, 123456789, time.FixedZone("+05", 5*3600)),
		"2024-03-10 07:00:00.123456789", []byte("2024-03-10T07:00:00.123456789Z"), "2024-03-10 02:00:00.123456789-05:00",
	} {
		d, err := ts.canon(v)
		if err != nil || d.Int != want {
			t.Errorf("canon(%v) = %d, %v; want %d", v, d.Int, err, want)
		}
	}
	if _, err := ts.canon(int64(5)); err == nil {
		t.Error("an integer timestamp was accepted")
	}
	tm := Column{Name: "tm", Class: Time}
	for in, want := range map[string]time.Duration{"13:14:15.5": 13*time.Hour + 14*time.Minute + 15500*time.Millisecond, "-838:59:59": -(838*time.Hour + 59*time.Minute + 59*time.Second), "00:00": 0} {
		d, err := tm.canon(in)
		if err != nil || d.Int != int64(want) {
			t.Errorf("time %q = %d, %v; want %d", in, d.Int, err, want)
		}
		if got := formatTimeOfDay(d.Int); !strings.HasPrefix(in, strings.TrimSuffix(got, ":00")) && in != "00:00" {
			t.Errorf("formatTimeOfDay(%d) = %q (from %q)", d.Int, got, in)
		}
	}
}

// TestWideTimestamps: instants that int64 nanoseconds cannot hold (MySQL's 9999-12-31
// sentinel, year 1, PostgreSQL's infinities) have one canonical datum each, which round
// trips through the value encoding and its text; a wide encoding of an instant that
// nanoseconds hold, or out-of-range nanoseconds, is refused.
func TestWideTimestamps(t *testing.T) {
	ts := Column{Name: "ts", Class: Timestamp, Nullable: true}
	cases := map[string]string{
		"9999-12-31 23:59:59.999999":    "9999-12-31T23:59:59.999999Z",
		"0001-01-01 00:00:00":           "0001-01-01T00:00:00Z",
		"1600-02-29T12:00:00+01:00":     "1600-02-29T11:00:00Z",
		"infinity":                      "infinity",
		"-Infinity":                     "-infinity",
		"2262-04-11 23:47:16.854775807": "2262-04-11T23:47:16.854775807Z", // the last nanosecond int64 holds
		"2262-04-11 23:47:16.854775808": "2262-04-11T23:47:16.854775808Z", // the first it does not
	}
	for in, want := range cases {
		d, err := ts.canon(in)
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		if d.String() != want {
			t.Errorf("%q reads as %s, want %s", in, d, want)
		}
		if nsRange := !strings.HasPrefix(in, "2262-04-11 23:47:16.854775807"); d.Wide != nsRange {
			t.Errorf("%q: wide %v", in, d.Wide)
		}
		enc := AppendValue(nil, []Datum{d})
		got, err := DecodeValue(enc, []Column{ts})
		if err != nil || !sameTimestamp(got[0], d) {
			t.Errorf("%q: decoded %+v, %v; want %+v", in, got, err, d)
		}
		if back, err := ts.canon(timestampText(d)); err != nil || !sameTimestamp(back, d) {
			t.Errorf("%q: its text %q reads back as %+v, %v", in, timestampText(d), back, err)
		}
	}
	for _, zero := range []string{"0000-00-00 00:00:00", "0000-00-00", "2024-00-10", "2024-03-00 10:00:00"} {
		if _, err := ts.canon(zero); err == nil || !strings.Contains(err.Error(), "zero date") {
			t.Errorf("%q: %v", zero, err)
		}
	}
	// A key, version or expiry column needs nanoseconds.
	for _, role := range []string{"key", "version", "expiry"} {
		c := Column{Name: "k", Class: Timestamp, role: role}
		if _, err := c.canon("9999-12-31 23:59:59"); err == nil || !strings.Contains(err.Error(), "a "+role+" column's timestamps must be in that range") {
			t.Errorf("a wide %s: %v", role, err)
		}
		if _, err := c.canon("2024-01-01 00:00:00"); err != nil {
			t.Errorf("a %s in range: %v", role, err)
		}
	}
	if _, err := ts.canon("10000-01-01 00:00:00"); err == nil {
		t.Error("year 10000 accepted")
	}
	for _, bad := range []Datum{
		{Class: Timestamp, Wide: true, Int: 0},                       // 1970: nanoseconds hold it
		{Class: Timestamp, Wide: true, Int: -62135596800 - 1},        // year 0
		{Class: Timestamp, Wide: true, Int: 253402300800, Nano: 0},   // year 10000
		{Class: Timestamp, Wide: true, Int: -62135596800, Nano: 1e9}, // nanoseconds out of range
		{Class: Timestamp, Wide: true, Int: -62135596800, Nano: -1},  // likewise
		{Class: Timestamp, Wide: true, Int: math.MaxInt64, Nano: 1},  // infinity with a fraction
	} {
		if _, err := DecodeValue(AppendValue(nil, []Datum{bad}), []Column{ts}); err == nil {
			t.Errorf("%+v decoded", bad)
		}
	}
	// Tag 11 belongs to timestamps only.
	wide := AppendValue(nil, []Datum{{Class: Timestamp, Wide: true, Int: -62135596800}})
	if _, err := DecodeValue(wide, []Column{{Name: "d", Class: Date}}); err == nil {
		t.Error("a wide timestamp decoded as a date")
	}
}

func sameTimestamp(a, b Datum) bool {
	return a.Class == b.Class && a.Int == b.Int && a.Wide == b.Wide && a.Nano == b.Nano
}

func TestCanonicalJSON(t *testing.T) {
	a, err1 := CanonicalJSON([]byte(`{"b": 1, "a": [1, 2.50, {"y": null, "x": "<&>"}]}`))
	b, err2 := CanonicalJSON([]byte(`{"a":[1,2.50,{"x":"<&>","y":null}],"b":1}`))
	if err1 != nil || err2 != nil || a != b || a != `{"a":[1,2.50,{"x":"<&>","y":null}],"b":1}` {
		t.Fatalf("canonical JSON %q %q (%v %v)", a, b, err1, err2)
	}
	if _, err := CanonicalJSON([]byte(`{"a":1} {}`)); err == nil {
		t.Fatal("two documents accepted")
	}
}

// TestCanonicalJSONNumbers: numbers are what PostgreSQL's jsonb makes of them (its
// numeric's text, the outputs below are PostgreSQL 15's), so that a MariaDB JSON column,
// which keeps the text as written, reads as the jsonb column it was synced into; large
// exponents stay as written, and a document whose exponents would expand it by gigabytes
// is refused.
func TestCanonicalJSONNumbers(t *testing.T) {
	in := `[1e2, 1.0E+2, 1.50e1, 1e-2, 1.0e-2, -0, -0.0, 0e5, 0.00e1, -0e-3, 1.5e-1, 12.345e1, 1E+0, 123456789012345678901234567890e-40, 0.5e0, 100e-2, -1.20e+1, 2.50, -7, 1e999999]`
	want := `[100,100,15.0,0.01,0.010,0,0.0,0,0.0,0.000,0.15,123.45,1,0.0000000000123456789012345678901234567890,0.5,1.00,-12.0,2.50,-7,1e999999]`
	got, err := CanonicalJSON([]byte(in))
	if err != nil || got != want {
		t.Fatalf("canonical JSON of %s:\n got %s (%v)\nwant %s", in, got, err, want)
	}
	if again, err := CanonicalJSON([]byte(got)); err != nil || again != got {
		t.Fatalf("canonical JSON is not its own canonical form: %s gives %s (%v)", got, again, err)
	}
	bomb := "[" + strings.Repeat("1e140000,", 500) + "1]"
	if _, err := CanonicalJSON([]byte(bomb)); err == nil || !strings.Contains(err.Error(), "expand") {
		t.Fatalf("a document of 500 numbers 1e140000: %v, want refused", err)
	}
}

// allClasses is a column set with one nullable column of every class.
var allClasses = []Column{
	{Name: "i", Class: Int, Nullable: true}, {Name: "d", Class: Decimal, Nullable: true}, {Name: "f", Class: Float, Nullable: true},
	{Name: "t", Class: Text, Nullable: true}, {Name: "b", Class: Bytes, Nullable: true}, {Name: "o", Class: Bool, Nullable: true},
	{Name: "ts", Class: Timestamp, Nullable: true}, {Name: "dt", Class: Date, Nullable: true}, {Name: "tm", Class: Time, Nullable: true},
	{Name: "j", Class: JSON, Nullable: true}, {Name: "n", Class: Native, NativeType: "_text", Nullable: true},
}

func TestValueRoundTrip(t *testing.T) {
	ds := []Datum{{Class: Int, Int: -5}, {Class: Decimal, Str: "-1.25"}, {Class: Float, Float: 1.5}, {Class: Text, Str: "é"},
		{Class: Bytes, Bytes: []byte{0}}, {Class: Bool, Int: 1}, {Class: Timestamp, Int: -1}, {Class: Date, Int: 19000},
		{Class: Time, Int: 5}, {Class: JSON, Str: `{"a":1}`}, {Class: Native, Str: `{a,"b c"}`}}
	enc := AppendValue(nil, ds)
	got, err := DecodeValue(enc, allClasses)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(AppendValue(nil, got), enc) {
		t.Fatal("round trip changed the value")
	}
	nulls := AppendValue(nil, make([]Datum, len(allClasses)))
	if _, err := DecodeValue(nulls, allClasses); err != nil {
		t.Fatal(err)
	}
	notNull := append([]Column{}, allClasses...)
	notNull[0].Nullable = false
	if _, err := DecodeValue(nulls, notNull); err == nil || !strings.Contains(err.Error(), "NOT NULL") {
		t.Fatalf("NULL into a NOT NULL column: %v", err)
	}
	if _, err := DecodeValue(enc[:len(enc)-1], allClasses); err == nil {
		t.Fatal("truncated value accepted")
	}
	if _, err := DecodeValue(append(enc, 0), allClasses); err == nil {
		t.Fatal("trailing bytes accepted")
	}
	if _, err := DecodeValue(AppendValue(nil, []Datum{{Class: Decimal, Str: "1.50"}}), []Column{{Name: "d", Class: Decimal}}); err == nil {
		t.Fatal("non-canonical decimal accepted")
	}
	// A plain key-value store's value ("x"), as a Badger store loaded by hand holds.
	if _, err := DecodeValue([]byte("x"), allClasses); err == nil || !strings.Contains(err.Error(), "not a row in the canonical encoding") {
		t.Fatalf("a raw value: %v", err)
	}
}

// FuzzDecodeValue: any bytes either fail to decode or decode to datums whose encoding is
// exactly the input (one encoding per value).
func FuzzDecodeValue(f *testing.F) {
	f.Add(AppendValue(nil, make([]Datum, len(allClasses))))
	f.Add(AppendValue(nil, []Datum{{Class: Int, Int: -5}, {Class: Decimal, Str: "-1.25"}, {Class: Float, Float: 1.5}, {Class: Text, Str: "é"},
		{Class: Bytes, Bytes: []byte{0}}, {Class: Bool, Int: 1}, {Class: Timestamp, Int: -1}, {Class: Date, Int: 19000},
		{Class: Time, Int: 5}, {Class: JSON, Str: `{"a":1}`}, {Class: Native, Str: `{a,"b c"}`}}))
	f.Add(AppendValue(nil, []Datum{{}, {}, {}, {}, {}, {}, {Class: Timestamp, Wide: true, Int: 253402300799, Nano: 999999000}, {}, {}, {}, {}}))
	f.Add(AppendValue(nil, []Datum{{}, {}, {}, {}, {}, {}, infiniteTimestamp(-1), {}, {}, {}, {}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		ds, err := DecodeValue(b, allClasses)
		if err != nil {
			return
		}
		if enc := AppendValue(nil, ds); !bytes.Equal(enc, b) {
			t.Fatalf("decoded %x re-encodes as %x", b, enc)
		}
	})
}

var compositeKey = []Column{{Name: "a", Class: Int}, {Name: "b", Class: Text}, {Name: "c", Class: Bytes}, {Name: "d", Class: Bool}}

func compareTuples(x, y []Datum) int {
	for i := range x {
		var c int
		switch x[i].Class {
		case Int, Bool:
			c = cmp.Compare(x[i].Int, y[i].Int)
		case Text:
			c = strings.Compare(x[i].Str, y[i].Str)
		case Bytes:
			c = bytes.Compare(x[i].Bytes, y[i].Bytes)
		}
		if c != 0 {
			return c
		}
	}
	return 0
}

// FuzzKey: composite keys round-trip, keep tuple order as byte order, and arbitrary bytes
// either fail to decode or re-encode to themselves.
func FuzzKey(f *testing.F) {
	f.Add(int64(-1), "a\x00b", []byte{0, 1, 0xff}, true, int64(3), "a", []byte{}, false, []byte("raw"))
	f.Fuzz(func(t *testing.T, a1 int64, b1 string, c1 []byte, d1 bool, a2 int64, b2 string, c2 []byte, d2 bool, raw []byte) {
		if !utf8Valid(b1) || !utf8Valid(b2) {
			return
		}
		mk := func(a int64, b string, c []byte, d bool) []Datum {
			o := int64(0)
			if d {
				o = 1
			}
			return []Datum{{Class: Int, Int: a}, {Class: Text, Str: b}, {Class: Bytes, Bytes: append([]byte{}, c...)}, {Class: Bool, Int: o}}
		}
		x, y := mk(a1, b1, c1, d1), mk(a2, b2, c2, d2)
		kx, ky := AppendKey(nil, x), AppendKey(nil, y)
		if got, want := bytes.Compare(kx, ky), compareTuples(x, y); got != want {
			t.Fatalf("order: bytes %d, tuples %d", got, want)
		}
		back, err := DecodeKey(kx, compositeKey)
		if err != nil || compareTuples(back, x) != 0 {
			t.Fatalf("round trip: %v", err)
		}
		if ds, err := DecodeKey(raw, compositeKey); err == nil {
			if enc := AppendKey(nil, ds); !bytes.Equal(enc, raw) {
				t.Fatalf("decoded %x re-encodes as %x", raw, enc)
			}
		}
		single := []Column{{Name: "k", Class: Text}}
		if ds, err := DecodeKey(raw, single); err == nil && !bytes.Equal(AppendKey(nil, ds), raw) {
			t.Fatalf("single text key %x changed", raw)
		}
	})
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }

// FuzzNormalizeDecimal: whatever is accepted normalises to a fixed point that is either
// canonical decimal notation or one of the special values, quickly (no exponent blow-up).
func FuzzNormalizeDecimal(f *testing.F) {
	for _, s := range []string{"1.50", "-0.0e3", "1e-5", "NaN", "0x1ep5", "12.5e-1", " 7 "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out, err := NormalizeDecimal(s)
		if err != nil {
			return
		}
		if again, err := NormalizeDecimal(out); err != nil || again != out {
			t.Fatalf("%q normalises to %q, which normalises to %q, %v", s, out, again, err)
		}
		if !canonicalDecimal(out) && out != "NaN" && out != "Infinity" && out != "-Infinity" {
			t.Fatalf("%q normalises to %q, not canonical", s, out)
		}
		if len(out) > MaxDecimalDigits+3 {
			t.Fatalf("%q normalises to %d bytes", s, len(out))
		}
	})
}

func TestIntegralDecimal(t *testing.T) {
	for typ, want := range map[string]bool{
		"bigint(20) unsigned": true, "bigint unsigned": true, "decimal(20,0)": true, "numeric(12,0)": true, "NUMERIC(10)": true,
		"DECIMAL(12, 0)": true, "numeric": false, "numeric(12,2)": false, "decimal(10,1)": false, "DECIMAL": false, "numeric(12": false,
	} {
		if got := integralDecimal(typ); got != want {
			t.Errorf("integralDecimal(%q) = %v, want %v", typ, got, want)
		}
	}
}

// TestColumnType: the types CreateTable gives another engine's columns hold each class
// exactly, with the source's precision and scale for decimals and key-sized MySQL text.
func TestColumnType(t *testing.T) {
	for _, c := range []struct {
		dialect string
		col     Column
		key     bool
		keys    int
		want    string
	}{
		{"mysql", Column{Class: Decimal, Type: "numeric(12, 2)"}, false, 0, "decimal(12,2)"},
		{"postgres", Column{Class: Decimal, Type: "decimal(65,30)"}, false, 0, "numeric(65,30)"},
		{"mysql", Column{Class: Decimal, Type: "numeric"}, false, 0, "decimal(65,30)"},
		{"sqlite", Column{Class: Decimal, Type: "numeric"}, false, 0, "DECIMAL_TEXT"},
		{"sqlite", Column{Class: Decimal, Type: "numeric(30,2)"}, false, 0, "DECIMAL_TEXT(30,2)"},
		{"sqlite", Column{Class: JSON, Type: "jsonb"}, false, 0, "JSON_TEXT"},
		{"mysql", Column{Class: Text, Type: "text"}, true, 2, "varchar(370) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"},
		{"mysql", Column{Class: Text, Type: "text"}, false, 0, "longtext CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"},
		{"mysql", Column{Class: Bytes, Type: "bytea"}, true, 1, "varbinary(2960)"},
		{"postgres", Column{Class: Float, Float32: true, Type: "float"}, false, 0, "real"},
		{"postgres", Column{Class: Timestamp, Type: "datetime(6)"}, false, 0, "timestamptz"},
		{"mysql", Column{Class: Timestamp, Type: "timestamptz"}, false, 0, "datetime(6)"},
	} {
		got, err := columnType(c.dialect, &c.col, c.key, c.keys)
		if err != nil || got != c.want {
			t.Errorf("%s %s: %q, %v; want %q", c.dialect, c.col.Type, got, err, c.want)
		}
	}
	if _, err := columnType("mysql", &Column{Name: "tags", Class: Native, Type: "text[]"}, false, 0); err == nil || !strings.Contains(err.Error(), "MySQL has no type for") {
		t.Errorf("text[] into MySQL: %v", err)
	}
}

// TestNativeJSON: a native column's JSON form is PostgreSQL's text as a string; a JSON
// array for an array column says so rather than guessing a literal.
func TestNativeJSON(t *testing.T) {
	c := Column{Name: "tags", Type: "text[]", Class: Native, NativeType: "_text", Nullable: true}
	d, err := jsonDatum(&c, []byte(`"{a,\"b c\"}"`))
	if err != nil || d.Class != Native || d.Str != `{a,"b c"}` {
		t.Fatalf("%+v, %v", d, err)
	}
	if _, err := jsonDatum(&c, []byte(`["a", "b c"]`)); err == nil || !strings.Contains(err.Error(), "PostgreSQL's text for it as a string") {
		t.Fatalf("a JSON array: %v", err)
	}
}

// BenchmarkCanonTimestampText: a timestamp as MySQL (without parseTime) and SQLite hand it
// over, text, into its datum: the forms each engine writes.
func BenchmarkCanonTimestampText(b *testing.B) {
	c := &Column{Name: "at", Class: Timestamp}
	for _, s := range []string{"2024-03-05 17:04:05.123456", "2024-03-05 17:04:05", "2024-03-05T17:04:05.123456789Z", "2024-03-05 17:04:05+02:00", "2024-03-05"} {
		b.Run(s, func(b *testing.B) {
			raw := []byte(s)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, err := c.canon(raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// parseTimestampSlow is parseTimestamp without its fast path: every layout in turn.
func parseTimestampSlow(s string) (time.Time, bool) {
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, strings.TrimSpace(s)); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// TestParseTimestampFast: the fast path takes the forms engines write and gives the
// instant time.Parse gives; what it leaves goes the slow way with the same result.
func TestParseTimestampFast(t *testing.T) {
	for _, s := range []string{
		"2024-03-05", "2024-03-05 17:04", "2024-03-05T17:04", "2024-03-05 17:04:05", "2024-03-05T17:04:05.5",
		"2024-03-05 17:04:05.123456", "2024-03-05 17:04:05.123456789", "2024-03-05T17:04:05Z",
		"2024-03-05 17:04:05.25+02:00", "2024-03-05 17:04:05-07:30", "2024-02-29 00:00:00", "1677-09-21 00:12:44",
		"2262-04-11 23:47:16.854775807", "1970-01-01 00:00:00+00:00",
	} {
		fast, ok := parseTimestampFast(s)
		if !ok {
			t.Errorf("%q: not taken by the fast path", s)
			continue
		}
		if slow, ok := parseTimestampSlow(s); !ok || !slow.Equal(fast) {
			t.Errorf("%q: fast %v, time.Parse %v (%v)", s, fast, slow, ok)
		}
		if b, ok := parseTimestampFast([]byte(s)); !ok || !b.Equal(fast) {
			t.Errorf("%q as bytes: %v %v", s, b, ok)
		}
	}
	for _, s := range []string{
		"2023-02-29", "2024-13-01", "2024-00-10", "0000-00-00 00:00:00", "2024-03-05 24:00:00", "2024-03-05 17:60",
		"2024-03-05 17:04:60", "2024-03-05 7:04:05", "2024-03-05 17:04:05.", "2024-03-05 17:04:05.1234567891",
		"2024-03-05 17:04:05+2:00", "2000-01-01 00:00Z", "2024-03-05 17:04:05 UTC", "9999-12-31 23:59:59", "0001-01-01 00:00:00",
		"2024-03-05x", "infinity", "",
	} {
		if got, ok := parseTimestampFast(s); ok {
			t.Errorf("%q: taken by the fast path as %v; want it left to the layouts", s, got)
		}
	}
}

// FuzzParseTimestampFast: whatever the fast path takes, time.Parse takes as the same
// instant.
func FuzzParseTimestampFast(f *testing.F) {
	for _, s := range []string{"2024-03-05 17:04:05.123456", "2024-03-05T17:04:05Z", "2024-03-05", "2024-03-05 17:04:05+02:00", "2262-04-11 23:47:16.854775807"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fast, ok := parseTimestampFast(s)
		if !ok {
			return
		}
		if slow, ok := parseTimestampSlow(s); !ok || !slow.Equal(fast) {
			t.Fatalf("%q: fast %v, time.Parse %v (%v)", s, fast, slow, ok)
		}
	})
}

// FuzzJSONScalar: for every JSON value a load's columns object can hold, jsonScalar
// decodes what json.Decoder with UseNumber decodes.
func FuzzJSONScalar(f *testing.F) {
	for _, s := range []string{`"plain"`, `"esc\"aped\u00e9"`, `"café"`, `-1.5e3`, `0`, `true`, `false`, `null`, `{"a": 1}`, `[1, "b"]`, "\"\xff\"", `""`, `"tab\t"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		raw = bytes.TrimSpace(raw)
		if !json.Valid(raw) {
			return // a columns object's member is one valid JSON value
		}
		got, err := jsonScalar(raw)
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		var want any
		werr := dec.Decode(&want)
		if (err == nil) != (werr == nil) || !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: jsonScalar %#v, %v; json.Decoder %#v, %v", raw, got, err, want, werr)
		}
	})
}

// TestFloatValueRoundTrip: every float's canonical value decodes back, NaN included (a
// NaN compares unequal to itself, so the canonical-form check compares bits); -0 and a
// NaN of other bits are not canonical.
func TestFloatValueRoundTrip(t *testing.T) {
	cols := []Column{{Name: "f", Class: Float}}
	for _, f := range []float64{math.NaN(), math.Inf(1), math.Inf(-1), 0, 1.5, -2.25e-308, math.MaxFloat64} {
		d, err := cols[0].canon(f)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeValue(AppendValue(nil, []Datum{d}), cols)
		if err != nil || math.Float64bits(got[0].Float) != math.Float64bits(normFloat(f)) {
			t.Errorf("%v: decoded %v, %v", f, got, err)
		}
	}
	for _, bits := range []uint64{math.Float64bits(math.Copysign(0, -1)), canonicalNaN | 1} {
		v := AppendValue(nil, []Datum{{Class: Float, Float: math.Float64frombits(bits)}})
		if _, err := DecodeValue(v, cols); err == nil {
			t.Errorf("bits %#x: decoded, want not canonical", bits)
		}
	}
}

// TestDecimalMisfit checks decimalMisfit against its definition on random decimals near
// the bounds of random numeric(p,s) columns: a value fits when rounding it to s digits
// after the point leaves it unchanged and its magnitude is below 10^(p-s); an unsigned
// column refuses negatives too.
func TestDecimalMisfit(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	digits := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte('0' + rng.IntN(10))
		}
		return string(b)
	}
	for i := 0; i < 20000; i++ {
		p := 1 + rng.IntN(20)
		s := rng.IntN(p + 1)
		c := &Column{Name: "n", Type: fmt.Sprintf("decimal(%d,%d)", p, s)}
		if rng.IntN(4) == 0 {
			c.Type += " unsigned"
		}
		setDecimalBounds(c, "mysql")
		if c.precision != p || c.scale != s || c.unsigned != strings.Contains(c.Type, "unsigned") {
			t.Fatalf("%s: bounds %d,%d unsigned %v", c.Type, c.precision, c.scale, c.unsigned)
		}
		raw := digits(1+rng.IntN(p-s+2)) + "." + digits(rng.IntN(s+2))
		if rng.IntN(3) == 0 {
			raw = "-" + raw
		}
		v, err := NormalizeDecimal(raw)
		if err != nil {
			t.Fatal(err)
		}
		r, _ := new(big.Rat).SetString(v)
		scaled := new(big.Rat).Mul(r, new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(s)), nil)))
		limit := new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(p-s)), nil))
		fits := scaled.IsInt() && new(big.Rat).Abs(r).Cmp(limit) < 0 && !(c.unsigned && r.Sign() < 0)
		why, _ := decimalMisfit(c, "mysql", v)
		if fits != (why == "") {
			t.Fatalf("%s into %s: fits %v, decimalMisfit %q", v, c.Type, fits, why)
		}
	}
	for _, tc := range []struct {
		dialect, typ, v string
		misfit          bool
	}{
		{"postgres", "numeric", "1e-40", false},
		{"postgres", "numeric", "Infinity", false},
		{"postgres", "numeric(10,2)", "Infinity", true},
		{"postgres", "numeric(10,2)", "NaN", false},
		{"postgres", "numeric(3,-1)", "1234", false}, // negative scale: not checked
		{"mysql", "decimal", "12345678901", true},    // MySQL's decimal is decimal(10,0)
		{"mysql", "decimal", "1234567890", false},
		{"mysql", "decimal(65,30)", "NaN", true},
		{"mysql", "decimal(5,5)", "0.12345", false},
		{"mysql", "decimal(5,5)", "1", true},
		{"sqlite", "DECIMAL_TEXT(5,2)", "1.2345", false},
	} {
		c := &Column{Name: "n", Type: tc.typ}
		setDecimalBounds(c, tc.dialect)
		v, err := NormalizeDecimal(tc.v)
		if err != nil {
			t.Fatal(err)
		}
		why, _ := decimalMisfit(c, tc.dialect, v)
		if (why != "") != tc.misfit {
			t.Errorf("%s %s into %s: %q, want misfit %v", tc.dialect, tc.v, tc.typ, why, tc.misfit)
		}
	}
}

func TestJSONHasNUL(t *testing.T) {
	for s, want := range map[string]bool{
		`{"a": "x"}`: false, `"\u0000"`: true, `{"k\u0000": 1}`: true, `["\\u0000"]`: false,
		`["\\\u0000"]`: true, `"\u00001"`: true, `"\u0001"`: false, `"\\"`: false, `"\`: false,
		`"\n\t\u0000"`: true, `"\u000"`: false,
	} {
		if got := jsonHasNUL(s); got != want {
			t.Errorf("jsonHasNUL(%s) = %v", s, got)
		}
	}
}

// TestPoisonValue: an unreadable row's value keeps a bounded message and still tells
// apart messages that differ only past the bound.
func TestPoisonValue(t *testing.T) {
	long := strings.Repeat("é", 3000)
	a, b := poisonValue(errors.New(long+"a")), poisonValue(errors.New(long+"b"))
	if !isPoison(a) || bytes.Equal(a, b) || len(a) > 17+maxPoisonMessage+len("…") || !utf8.Valid(a[17:]) {
		t.Fatalf("poison values of long messages: %d bytes, equal %v", len(a), bytes.Equal(a, b))
	}
	if msg := unreadableError("t", poisonValue(errors.New("bad"))).Error(); msg != "table t cannot be read at this row: bad" {
		t.Fatalf("message %q", msg)
	}
	if _, err := DecodeValue(a, []Column{{Name: "n", Class: Int, Nullable: true}}); err == nil {
		t.Fatal("a poison value decodes as a row")
	}
}
