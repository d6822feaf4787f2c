package sql

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Class is the logical type of a column: what its values mean, whatever the engine calls
// the type. Two columns of one class hold comparable values across engines. The numbers
// are the type tags of the canonical encoding (docs/canonical.md): changing them changes
// every value hash.
type Class uint8

const (
	Null      Class = 0 // the tag of a NULL value; no column has this class
	Int       Class = 1 // signed 64-bit integers
	Decimal   Class = 2 // exact decimals, as normalized strings
	Float     Class = 3 // IEEE-754 binary64 (binary32 columns widened exactly)
	Text      Class = 4 // UTF-8 text, bytes as stored, no collation
	Bytes     Class = 5 // byte strings
	Bool      Class = 6 // true / false
	Timestamp Class = 7 // an instant (or a wall clock read as UTC), unix nanoseconds
	Date      Class = 8 // a calendar date, days since 1970-01-01
	Time      Class = 9 // a time of day (or a MySQL TIME interval), nanoseconds
	JSON      Class = 10
	// Native is a PostgreSQL type no other engine has (arrays, inet, interval, ranges,
	// tsvector, money, ...), compared by PostgreSQL's own text output under fixed session
	// settings: it pairs only with a column of the same type (Column.NativeType) in
	// PostgreSQL, or with a key-value store. Tag 11 is not a class: see wideTimestampTag.
	Native Class = 12
)

// wideTimestampTag tags a Timestamp value that int64 nanoseconds cannot hold: an instant
// in years 1..1677 or 2262..9999 (MySQL's '9999-12-31 23:59:59', PostgreSQL's
// '0001-01-01') or PostgreSQL's 'infinity' and '-infinity'. Its payload is 8 bytes of
// unix seconds and 4 of nanoseconds, big-endian; the infinities are the seconds
// math.MaxInt64 and math.MinInt64. Every other timestamp keeps tag 7.
const wideTimestampTag = 11

var classNames = [...]string{"null", "int", "decimal", "float", "text", "bytes", "bool", "timestamp", "date", "time", "json"}

func (c Class) String() string {
	if c == Native {
		return "native"
	}
	if int(c) < len(classNames) {
		return classNames[c]
	}
	return fmt.Sprintf("class(%d)", c)
}

// Column is one column of a table as the catalog describes it.
type Column struct {
	Name string
	// Type is the engine's own name for the column's type, for messages and casts.
	Type  string
	Class Class
	// Float32 marks single-precision float columns, whose text renderings must be parsed
	// as float32 to get the stored value.
	Float32 bool
	// Fixed marks blank-padded character columns (char(n)): trailing spaces are not part of
	// the value (PostgreSQL pads on read, MySQL strips).
	Fixed    bool
	Nullable bool
	// Generated marks a column the engine computes (GENERATED ALWAYS AS ... columns):
	// compared like any other, never written; the target computes its own.
	Generated bool
	// Numeric marks an Int key, version or expiry column whose engine type is an exact
	// decimal of scale 0 (MySQL's bigint unsigned, numeric(p,0)): its values are
	// integers and compare as such, read as text where the engine's binary form is a
	// decimal's.
	Numeric bool
	// NativeType is a Native column's PostgreSQL type name (pg_type.typname, such as
	// "_text" for text[]): Native columns compare only with columns of the same type.
	NativeType string
	// role is "key", "version" or "expiry" for a column a table uses so, "" for a value
	// column: those roles need timestamps that int64 nanoseconds hold (errNarrowTimestamp).
	role string
	// Sequence is the sequence an integer column takes its default from (PostgreSQL's
	// serial and identity columns: pg_get_serial_sequence), "" for none. A write moves it
	// past the largest value written (Table.advanceSequences).
	Sequence string
	// Bits marks a MySQL bit(n) column (a Bool for bit(1), else an Int), whose values the
	// driver gives as big-endian bytes.
	Bits bool
	// precision and scale bound a Decimal value column's values in PostgreSQL and MySQL
	// (numeric(p,s), decimal(p,s)); precision 0 means no bound (an unconstrained
	// PostgreSQL numeric). unsigned marks a MySQL decimal unsigned. Set by
	// setDecimalBounds when a table opens; checkHoldable refuses what an engine would
	// round or reject.
	precision, scale int
	unsigned         bool
}

// integralDecimal reports whether an engine's decimal type holds integers only: bigint
// unsigned, or a precision with no scale or scale 0 (numeric(10), decimal(20,0)).
func integralDecimal(typ string) bool {
	t := strings.ToLower(typ)
	if strings.Contains(t, "unsigned") && strings.HasPrefix(t, "bigint") {
		return true
	}
	args := decimalArgs(t)
	if args == "" {
		return false // numeric without a precision holds fractions
	}
	_, scale, hasScale := strings.Cut(strings.Trim(args, "()"), ",")
	return !hasScale || scale == "0"
}

// Datum is one canonical column value.
type Datum struct {
	Class Class   // Null for NULL
	Int   int64   // Int, Bool (0 or 1), Timestamp (ns; seconds if Wide), Date (days), Time (ns)
	Float float64 // Float
	Str   string  // Decimal, Text, JSON
	Bytes []byte  // Bytes

	// Wide marks a Timestamp outside int64 nanoseconds (see wideTimestampTag): Int holds
	// its unix seconds (math.MaxInt64 for infinity, math.MinInt64 for -infinity) and Nano
	// its nanoseconds.
	Wide bool
	Nano int32
}

// canon converts a value read by a database driver into the column's canonical datum.
func (c *Column) canon(v any) (Datum, error) {
	if v == nil {
		return Datum{}, nil
	}
	if b, ok := v.([]byte); c.Bits && ok {
		var n uint64
		for _, x := range b {
			n = n<<8 | uint64(x)
		}
		v = n
	}
	d := Datum{Class: c.Class}
	var err error
	switch c.Class {
	case Int:
		d.Int, err = toInt(v)
	case Decimal:
		d.Str, err = toDecimal(v)
	case Float:
		d.Float, err = toFloat(v, c.Float32)
	case Text:
		s, ok := asString(v)
		if !ok {
			return d, fmt.Errorf("got %T, want text", v)
		}
		if c.Fixed {
			s = strings.TrimRight(s, " ")
		}
		d.Str = s
	case Bytes:
		switch x := v.(type) {
		case []byte:
			d.Bytes = append([]byte{}, x...)
		case string:
			d.Bytes = []byte(x)
		case int64, float64:
			// SQLite keeps numbers as numbers in a column of BLOB affinity (declared
			// BLOB, or with no type at all), beside text and blobs. A value column reads
			// them as their text, as database/sql scans them into []byte (5 is "5", 1.5
			// is "1.5"), so that such a column syncs whatever it holds; a key column
			// refuses them, since 5 and '5' are two keys there and would be one here.
			if c.role == "key" {
				return d, fmt.Errorf("holds the number %v, but a key of bytes must be text or a blob: SQLite keeps numbers as numbers in a column declared BLOB or without a type, and 5 and '5' would be one key; declare the column INTEGER or TEXT, or store its keys as text", x)
			}
			if n, ok := x.(int64); ok {
				d.Bytes = strconv.AppendInt(nil, n, 10)
			} else {
				d.Bytes = strconv.AppendFloat(nil, x.(float64), 'g', -1, 64)
			}
		default:
			return d, fmt.Errorf("got %T, want bytes", v)
		}
	case Bool:
		d.Int, err = toBool(v)
	case Timestamp:
		return c.narrow(toTimestamp(v))
	case Date:
		d.Int, err = toDate(v)
	case Time:
		d.Int, err = toTimeOfDay(v)
	case JSON:
		s, ok := asString(v)
		if !ok {
			return d, fmt.Errorf("got %T, want JSON text", v)
		}
		d.Str, err = CanonicalJSON([]byte(s))
	case Native:
		s, ok := asString(v)
		if !ok {
			return d, fmt.Errorf("got %T, want %s's text", v, c.Type)
		}
		d.Str = s
	default:
		return d, fmt.Errorf("unsupported class %v", c.Class)
	}
	return d, err
}

func asString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case []byte:
		return string(x), true
	}
	return "", false
}

func toInt(v any) (int64, error) {
	switch x := v.(type) {
	case int64:
		return x, nil
	case int32:
		return int64(x), nil
	case int:
		return int64(x), nil
	case uint64:
		if x > math.MaxInt64 {
			return 0, errIntRange(strconv.FormatUint(x, 10))
		}
		return int64(x), nil
	case bool:
		if x {
			return 1, nil
		}
		return 0, nil
	case float64:
		if x != math.Trunc(x) || math.Abs(x) >= 1<<63 {
			return 0, fmt.Errorf("%v is not an integer", x)
		}
		return int64(x), nil
	}
	s, ok := asString(v)
	if !ok {
		return 0, fmt.Errorf("got %T, want an integer", v)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if errors.Is(err, strconv.ErrRange) {
		return 0, errIntRange(strings.TrimSpace(s))
	}
	if err != nil {
		return 0, fmt.Errorf("%q is not a 64-bit integer", s)
	}
	return n, nil
}

// errIntRange is the error for an integer (a bigint unsigned id, a numeric(20,0) key) that
// int64 cannot hold.
func errIntRange(n string) error {
	return fmt.Errorf("%s is outside -9223372036854775808..9223372036854775807: reconcile reads integer columns, and keys and versions of type bigint unsigned or numeric(p,0), as signed 64-bit integers", n)
}

func toDecimal(v any) (string, error) {
	switch x := v.(type) {
	case int64:
		return strconv.FormatInt(x, 10), nil
	case uint64:
		return strconv.FormatUint(x, 10), nil
	case float64:
		// SQLite stores NUMERIC values that convert without loss as REAL or INTEGER;
		// the shortest rendering that round-trips is the decimal that was written.
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return NormalizeDecimal(strconv.FormatFloat(x, 'f', -1, 64))
		}
		return NormalizeDecimal(strconv.FormatFloat(x, 'f', -1, 64))
	}
	s, ok := asString(v)
	if !ok {
		return "", fmt.Errorf("got %T, want a decimal", v)
	}
	return NormalizeDecimal(s)
}

// MaxDecimalDigits bounds the digits of a decimal's canonical form. It is above what
// PostgreSQL's numeric holds (131,072 integer and 16,383 fraction digits), and it keeps a
// short input such as "1e999999999" from expanding into a gigabyte string.
const MaxDecimalDigits = 150_000

// NormalizeDecimal returns the canonical form of an exact decimal: an optional "-", the
// integer digits without leading zeros (at least one), and a fraction without trailing
// zeros ("1.50" and "1.5" are one value: "1.5"; "-0.0" is "0"). An exponent ("1.5e3") is
// expanded; only decimal digits are accepted (no hexadecimal, no fractions "a/b"), and a
// value whose canonical form would exceed MaxDecimalDigits digits is an error.
// NaN and infinities are "NaN", "Infinity" and "-Infinity".
func NormalizeDecimal(s string) (string, error) {
	if canonicalDecimal(s) {
		return s, nil // the common case, without allocating
	}
	s = strings.TrimSpace(s)
	switch strings.ToLower(s) {
	case "nan":
		return "NaN", nil
	case "infinity", "+infinity", "inf", "+inf":
		return "Infinity", nil
	case "-infinity", "-inf":
		return "-Infinity", nil
	}
	if s == "" {
		return "", errors.New("empty decimal")
	}
	bad := fmt.Errorf("%q is not a decimal", s)
	neg := false
	rest := s
	switch rest[0] {
	case '-':
		neg, rest = true, rest[1:]
	case '+':
		rest = rest[1:]
	}
	mant, expPart, hasExp := strings.Cut(rest, "e")
	if !hasExp {
		mant, expPart, hasExp = strings.Cut(rest, "E")
	}
	exp := 0
	if hasExp {
		e, err := strconv.Atoi(expPart)
		if err != nil {
			return "", bad
		}
		if e > MaxDecimalDigits || e < -MaxDecimalDigits {
			return "", fmt.Errorf("decimal %q: exponent out of range (at most %d digits)", s, MaxDecimalDigits)
		}
		exp = e
	}
	intPart, fracPart, hasDot := strings.Cut(mant, ".")
	if intPart == "" && (!hasDot || fracPart == "") {
		return "", bad
	}
	for _, part := range []string{intPart, fracPart} {
		for i := 0; i < len(part); i++ {
			if part[i] < '0' || part[i] > '9' {
				return "", bad
			}
		}
	}
	// The value is digits × 10^(exp - len(fracPart)); place the point in the digits.
	digits := strings.TrimLeft(intPart+fracPart, "0")
	point := len(intPart) + exp - (len(intPart) + len(fracPart) - len(digits)) // integer digits of digits
	digits = strings.TrimRight(digits, "0")
	if digits == "" {
		return "0", nil
	}
	var out string
	switch {
	case point <= 0:
		if len(digits)-point > MaxDecimalDigits {
			return "", fmt.Errorf("decimal %q: more than %d digits", s, MaxDecimalDigits)
		}
		out = "0." + strings.Repeat("0", -point) + digits
	case point >= len(digits):
		if point > MaxDecimalDigits {
			return "", fmt.Errorf("decimal %q: more than %d digits", s, MaxDecimalDigits)
		}
		out = digits + strings.Repeat("0", point-len(digits))
	default:
		out = digits[:point] + "." + digits[point:]
	}
	if neg {
		out = "-" + out
	}
	return out, nil
}

// canonicalDecimal reports whether s is already in NormalizeDecimal's form (and not NaN
// or an infinity).
func canonicalDecimal(s string) bool {
	if strings.HasPrefix(s, "-") {
		s = s[1:]
		if s == "0" {
			return false
		}
	}
	intPart, frac, dot := strings.Cut(s, ".")
	if intPart == "" || (len(intPart) > 1 && intPart[0] == '0') || (dot && (frac == "" || frac[len(frac)-1] == '0')) {
		return false
	}
	for i := 0; i < len(intPart); i++ {
		if intPart[i] < '0' || intPart[i] > '9' {
			return false
		}
	}
	for i := 0; i < len(frac); i++ {
		if frac[i] < '0' || frac[i] > '9' {
			return false
		}
	}
	return true
}

// canonicalNaN is the one NaN the encoding uses: engines and drivers disagree on payloads.
const canonicalNaN = 0x7ff8000000000000

func toFloat(v any, single bool) (float64, error) {
	var f float64
	switch x := v.(type) {
	case float64:
		f = x
	case float32:
		f = float64(x)
	case int64:
		f = float64(x)
	default:
		s, ok := asString(v)
		if !ok {
			return 0, fmt.Errorf("got %T, want a float", v)
		}
		bits := 64
		if single {
			bits = 32
		}
		var err error
		f, err = strconv.ParseFloat(strings.TrimSpace(s), bits)
		if err != nil {
			return 0, fmt.Errorf("%q is not a float", s)
		}
	}
	return normFloat(f), nil
}

// normFloat maps every NaN to one bit pattern and -0 to +0: engines compare -0 equal to 0
// and some (SQLite) do not keep the sign, so keeping it would make differences no write
// can repair.
func normFloat(f float64) float64 {
	if math.IsNaN(f) {
		return math.Float64frombits(canonicalNaN)
	}
	if f == 0 {
		return 0
	}
	return f
}

func toBool(v any) (int64, error) {
	switch x := v.(type) {
	case bool:
		if x {
			return 1, nil
		}
		return 0, nil
	}
	n, err := toInt(v)
	if err != nil {
		if s, ok := asString(v); ok {
			switch strings.ToLower(strings.TrimSpace(s)) {
			case "t", "true":
				return 1, nil
			case "f", "false":
				return 0, nil
			}
		}
		return 0, fmt.Errorf("%v is not a boolean", v)
	}
	if n != 0 && n != 1 {
		return 0, fmt.Errorf("%d is not a boolean (0 or 1): a MySQL tinyint(1) or SQLite BOOLEAN column is read as a boolean; if it holds other numbers, declare it an integer type (MySQL: tinyint(4)), or leave it out with columns=", n)
	}
	return n, nil
}

// timeLayouts are the text renderings of timestamps that drivers hand back (MySQL without
// parseTime, SQLite text columns).
var timeLayouts = []string{
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02T15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04",
	"2006-01-02T15:04",
	"2006-01-02",
}

func parseTimestamp(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, ok := parseTimestampFast(s); ok {
		return t, nil
	}
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t, nil
		}
	}
	if len(s) >= 10 && (s[:4] == "0000" || s[4:8] == "-00-" || s[7:10] == "-00") {
		return time.Time{}, fmt.Errorf("%q is a MySQL zero date (a zero year, month or day), which names no day: set such values to NULL, or leave the column out with columns=", s)
	}
	return time.Time{}, fmt.Errorf("%q is not a timestamp (want YYYY-MM-DD HH:MM:SS[.fffffffff][±hh:mm])", s)
}

// parseTimestampFast parses the forms engines write (YYYY-MM-DD, then [ T]HH:MM,
// [:SS[.f…]] and Z or ±hh:mm), two digits a field, without the allocations of trying
// timeLayouts one after another (a failed time.Parse allocates its error). It gives what
// time.Parse gives with the matching layout, or false, and then parseTimestamp tries
// them all, so anything it does not take (or a value outside int64 nanoseconds) gets the
// same result and message as before. BenchmarkCanonTimestampText measures it.
func parseTimestampFast[S string | []byte](s S) (time.Time, bool) {
	num := func(i, n int) (int, bool) {
		v := 0
		for _, c := range []byte(s[i : i+n]) {
			if c < '0' || c > '9' {
				return 0, false
			}
			v = v*10 + int(c-'0')
		}
		return v, true
	}
	if len(s) < 10 || s[4] != '-' || s[7] != '-' {
		return time.Time{}, false
	}
	year, ok1 := num(0, 4)
	month, ok2 := num(5, 2)
	day, ok3 := num(8, 2)
	if !ok1 || !ok2 || !ok3 || month < 1 || month > 12 || day < 1 || day > daysIn(time.Month(month), year) {
		return time.Time{}, false
	}
	var hour, min, sec, nsec, offset int
	i := 10
	if len(s) > 10 {
		if len(s) < 16 || (s[10] != ' ' && s[10] != 'T') || s[13] != ':' {
			return time.Time{}, false
		}
		var ok1, ok2 bool
		if hour, ok1 = num(11, 2); !ok1 || hour > 23 {
			return time.Time{}, false
		}
		if min, ok2 = num(14, 2); !ok2 || min > 59 {
			return time.Time{}, false
		}
		i = 16
		if len(s) >= 19 && s[16] == ':' {
			var ok bool
			if sec, ok = num(17, 2); !ok || sec > 59 {
				return time.Time{}, false
			}
			i = 19
			if i < len(s) && s[i] == '.' {
				j := i + 1
				for j < len(s) && s[j] >= '0' && s[j] <= '9' {
					j++
				}
				digits := j - i - 1
				if digits < 1 || digits > 9 {
					return time.Time{}, false
				}
				nsec, _ = num(i+1, digits)
				for k := digits; k < 9; k++ {
					nsec *= 10
				}
				i = j
			}
		}
		switch {
		case i == len(s) || i == 16: // a zone only after the seconds, as in timeLayouts
		case s[i] == 'Z' && i+1 == len(s):
			i++
		case (s[i] == '+' || s[i] == '-') && i+6 == len(s) && s[i+3] == ':':
			oh, ok1 := num(i+1, 2)
			om, ok2 := num(i+4, 2)
			if !ok1 || !ok2 || oh > 23 || om > 59 {
				return time.Time{}, false
			}
			if offset = (oh*60 + om) * 60; s[i] == '-' {
				offset = -offset
			}
			i = len(s)
		}
	}
	if i != len(s) {
		return time.Time{}, false
	}
	t := time.Date(year, time.Month(month), day, hour, min, sec, nsec, time.UTC).Add(-time.Duration(offset) * time.Second)
	if t.Before(minTime) || t.After(maxTime) {
		return time.Time{}, false // a wide timestamp: time.Parse keeps its zone, which the year check reads
	}
	return t, true
}

// daysIn is the number of days of month in year (proleptic Gregorian, as time's).
func daysIn(m time.Month, year int) int {
	return time.Date(year, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// minTime and maxTime bound what unix nanoseconds in an int64 can hold.
var (
	minTime = time.Unix(0, math.MinInt64)
	maxTime = time.Unix(0, math.MaxInt64)
)

// toTime takes a driver's time.Time, or text in one of timeLayouts; what names the class
// for the message.
func toTime(v any, what string) (time.Time, error) {
	switch x := v.(type) {
	case time.Time:
		return x, nil
	case []byte:
		if t, ok := parseTimestampFast(x); ok {
			return t, nil // without converting the bytes to a string
		}
	}
	s, ok := asString(v)
	if !ok {
		return time.Time{}, fmt.Errorf("got %T, want %s (store them as text, not numbers)", v, what)
	}
	return parseTimestamp(s)
}

func toTimestamp(v any) (Datum, error) {
	t, err := toTime(v, "a timestamp")
	if err != nil {
		// Not a time: PostgreSQL's infinities, looked for only here, off the common path.
		if s, ok := asString(v); ok && infinity(s) != 0 {
			return infiniteTimestamp(infinity(s)), nil
		}
		return Datum{}, err
	}
	return timestampDatum(t)
}

// infinity reports whether s is PostgreSQL's spelling of a timestamp's infinity (1) or
// -infinity (-1).
func infinity(s string) int {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "infinity", "+infinity":
		return 1
	case "-infinity":
		return -1
	}
	return 0
}

// infiniteTimestamp is the datum of infinity (sign 1) or -infinity (sign -1).
func infiniteTimestamp(sign int) Datum {
	d := Datum{Class: Timestamp, Wide: true, Int: math.MaxInt64}
	if sign < 0 {
		d.Int = math.MinInt64
	}
	return d
}

// timestampDatum is the datum of the instant t: nanoseconds where they hold it, else a
// wide timestamp (years 1 to 9999 only, the range every engine's text and RFC 3339 share).
func timestampDatum(t time.Time) (Datum, error) {
	if !t.Before(minTime) && !t.After(maxTime) {
		return Datum{Class: Timestamp, Int: t.UnixNano()}, nil
	}
	if y := t.Year(); y < 1 || y > 9999 {
		return Datum{}, fmt.Errorf("timestamp %v is outside the years 1 to 9999", t)
	}
	return Datum{Class: Timestamp, Wide: true, Int: t.Unix(), Nano: int32(t.Nanosecond())}, nil
}

// Infinite reports whether d is the timestamp or date infinity (1), -infinity (-1), or
// neither (0).
func (d Datum) Infinite() int {
	switch {
	case d.Class == Date && d.Int == infiniteDay(1):
		return 1
	case d.Class == Date && d.Int == infiniteDay(-1):
		return -1
	case d.Class != Timestamp || !d.Wide:
		return 0
	case d.Int == math.MaxInt64:
		return 1
	case d.Int == math.MinInt64:
		return -1
	}
	return 0
}

// Time is a finite Timestamp datum's instant, in UTC.
func (d Datum) Time() time.Time {
	if d.Wide {
		return time.Unix(d.Int, int64(d.Nano)).UTC()
	}
	return time.Unix(0, d.Int).UTC()
}

// timestampText renders a Timestamp datum for engines that take text (MySQL, SQLite) and
// for messages: "infinity" and "-infinity" as PostgreSQL spells them.
func timestampText(d Datum) string {
	if s := infinityText(d); s != "" {
		return s
	}
	return d.Time().Format("2006-01-02 15:04:05.999999999")
}

// narrow passes on a datum read for column c, refusing a wide timestamp where c's role
// (key, version, expiry) needs nanoseconds.
func (c *Column) narrow(d Datum, err error) (Datum, error) {
	if err == nil && d.Wide && c.role != "" {
		err = errNarrowTimestamp(d, c.role)
	}
	return d, err
}

// errNarrowTimestamp is the error for a wide timestamp (one that int64 nanoseconds cannot
// hold) where a key, version or expiry needs nanoseconds; role names the column's part.
func errNarrowTimestamp(d Datum, role string) error {
	msg := fmt.Sprintf("timestamp %s is outside 1677-09-21..2262-04-11, which nanoseconds in 64 bits cover: a %s column's timestamps must be in that range (value columns may hold any)", d, role)
	if role == "expiry" && d.Infinite() >= 0 {
		msg += "; for a row that never expires, set the expiry to NULL"
	}
	return errors.New(msg)
}

func toDate(v any) (int64, error) {
	t, err := toTime(v, "a date")
	if err != nil {
		if s, ok := asString(v); ok && infinity(s) != 0 { // PostgreSQL's, off the common path
			return infiniteDay(infinity(s)), nil
		}
		return 0, err
	}
	y, m, d := t.Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400, nil
}

// toTimeOfDay parses [-]HH:MM:SS[.fffffffff] (hours may exceed 23 for MySQL TIME).
func toTimeOfDay(v any) (int64, error) {
	if t, ok := v.(time.Time); ok {
		return int64(t.Hour())*int64(time.Hour) + int64(t.Minute())*int64(time.Minute) +
			int64(t.Second())*int64(time.Second) + int64(t.Nanosecond()), nil
	}
	s, ok := asString(v)
	if !ok {
		return 0, fmt.Errorf("got %T, want a time of day", v)
	}
	str := strings.TrimSpace(s)
	neg := strings.HasPrefix(str, "-")
	str = strings.TrimPrefix(str, "-")
	parts := strings.Split(str, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return 0, fmt.Errorf("%q is not a time (want HH:MM:SS[.fffffffff])", s)
	}
	h, err1 := strconv.ParseInt(parts[0], 10, 64)
	m, err2 := strconv.ParseInt(parts[1], 10, 64)
	var sec, frac int64
	var err3 error
	if len(parts) == 3 {
		whole, f, _ := strings.Cut(parts[2], ".")
		sec, err3 = strconv.ParseInt(whole, 10, 64)
		if err3 == nil && f != "" {
			if len(f) > 9 || strings.Trim(f, "0123456789") != "" {
				err3 = errors.New("bad fraction")
			} else {
				frac, _ = strconv.ParseInt(f+strings.Repeat("0", 9-len(f)), 10, 64)
			}
		}
	}
	if err1 != nil || err2 != nil || err3 != nil || h < 0 || h > 1_000_000 || m < 0 || m > 59 || sec < 0 || sec > 60 {
		return 0, fmt.Errorf("%q is not a time (want HH:MM:SS[.fffffffff])", s)
	}
	ns := h*int64(time.Hour) + m*int64(time.Minute) + sec*int64(time.Second) + frac
	if neg {
		ns = -ns
	}
	return ns, nil
}

// CanonicalJSON re-encodes a JSON document compactly with object keys sorted and each
// number as PostgreSQL's numeric writes it (jsonNumber): jsonb reorders, respaces and
// rewrites numbers, MySQL and text columns keep the input, and both must read as one
// value. Duplicate keys keep the last value, as jsonb does.
func CanonicalJSON(b []byte) (string, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return "", fmt.Errorf("not JSON: %v", err)
	}
	if dec.More() {
		return "", errors.New("not JSON: more than one value")
	}
	w := jsonWriter{grow: maxJSONGrowth}
	w.value(v)
	if w.grow < 0 {
		return "", fmt.Errorf("JSON numbers written with exponents expand to more than %d MiB more digits than the document holds: reconcile writes numbers without exponents, as PostgreSQL's jsonb does; write them so in the source", maxJSONGrowth>>20)
	}
	return w.buf.String(), nil
}

// maxJSONGrowth bounds how many bytes the numbers of one JSON document may grow by when
// their exponents are applied, so that a short hostile document ("[1e140000,1e140000,…]")
// does not expand into gigabytes.
const maxJSONGrowth = 64 << 20

// jsonWriter writes a decoded JSON document in canonical form; grow is what its numbers
// may still grow by (below 0: too much, and the output is incomplete).
type jsonWriter struct {
	buf  bytes.Buffer
	grow int
}

func (w *jsonWriter) value(v any) {
	buf := &w.buf
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		buf.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				buf.WriteByte(',')
			}
			writeJSONString(buf, k)
			buf.WriteByte(':')
			w.value(x[k])
		}
		buf.WriteByte('}')
	case []any:
		buf.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				buf.WriteByte(',')
			}
			w.value(e)
		}
		buf.WriteByte(']')
	case string:
		writeJSONString(buf, x)
	case json.Number:
		n := jsonNumber(string(x))
		if w.grow -= len(n) - len(x); w.grow >= 0 {
			buf.WriteString(n)
		}
	case bool:
		buf.WriteString(strconv.FormatBool(x))
	case nil:
		buf.WriteString("null")
	}
}

// jsonNumber returns a JSON number literal as PostgreSQL's numeric type writes it, which
// is what jsonb stores: the exponent applied, the fraction keeping as many digits as
// written less the exponent (1e2 is 100, 1.0E+2 is 100, 1.50e1 is 15.0, 1.0e-2 is 0.010),
// trailing fractional zeros kept otherwise (2.50), and no sign on zero (-0 is 0, -0.0 is
// 0.0). A number whose form would have more than MaxDecimalDigits digits is returned as
// written: no engine that rewrites numbers holds it (numeric stops at 131,072 integer and
// 16,383 fraction digits), and writing it out would take memory that a few bytes of input
// should not. s must be a valid JSON number.
func jsonNumber(s string) string {
	neg := strings.HasPrefix(s, "-")
	body := strings.TrimPrefix(s, "-")
	mant, expPart, hasExp := strings.Cut(body, "e")
	if !hasExp {
		mant, expPart, hasExp = strings.Cut(body, "E")
	}
	if !hasExp && !(neg && strings.Trim(body, "0.") == "") {
		return s // the common case: no exponent, not a negative zero
	}
	exp := 0
	if hasExp {
		e, err := strconv.Atoi(expPart)
		if err != nil || e > MaxDecimalDigits || e < -MaxDecimalDigits {
			return s
		}
		exp = e
	}
	intPart, frac, _ := strings.Cut(mant, ".")
	digits := intPart + frac
	point := len(intPart) + exp // integer digits of digits, once the exponent is applied
	var whole, fraction string
	switch {
	case point >= len(digits):
		if point > MaxDecimalDigits {
			return s
		}
		whole = digits + strings.Repeat("0", point-len(digits))
	case point > 0:
		whole, fraction = digits[:point], digits[point:]
	default:
		if len(digits)-point > MaxDecimalDigits {
			return s
		}
		whole, fraction = "0", strings.Repeat("0", -point)+digits
	}
	if whole = strings.TrimLeft(whole, "0"); whole == "" {
		whole = "0"
	}
	out := whole
	if fraction != "" {
		out += "." + fraction
	}
	if neg && strings.Trim(digits, "0") != "" {
		out = "-" + out
	}
	return out
}

func writeJSONString(buf *bytes.Buffer, s string) {
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	enc.Encode(s)
	buf.Truncate(buf.Len() - 1) // Encode's newline
}

// AppendValue appends the canonical encoding of a row's value columns: per column, its tag
// (the Class, 0 for NULL) and payload. Int, Bool, Timestamp, Date and Time payloads are 8
// bytes big-endian (Bool: 1 byte); Float is the 8-byte big-endian IEEE-754 bits; Decimal,
// Text, Bytes and JSON are a uvarint length and the bytes.
func AppendValue(dst []byte, ds []Datum) []byte {
	for _, d := range ds {
		dst = appendDatum(dst, d)
	}
	return dst
}

// appendDatum appends the canonical encoding of one value column (see AppendValue).
func appendDatum(dst []byte, d Datum) []byte {
	dst = append(dst, byte(d.Class))
	switch d.Class {
	case Null:
	case Int, Timestamp, Date, Time:
		if d.Wide {
			dst[len(dst)-1] = wideTimestampTag
			dst = binary.BigEndian.AppendUint64(dst, uint64(d.Int))
			return binary.BigEndian.AppendUint32(dst, uint32(d.Nano))
		}
		dst = binary.BigEndian.AppendUint64(dst, uint64(d.Int))
	case Bool:
		dst = append(dst, byte(d.Int))
	case Float:
		dst = binary.BigEndian.AppendUint64(dst, math.Float64bits(d.Float))
	case Decimal, Text, JSON, Native:
		dst = binary.AppendUvarint(dst, uint64(len(d.Str)))
		dst = append(dst, d.Str...)
	case Bytes:
		dst = binary.AppendUvarint(dst, uint64(len(d.Bytes)))
		dst = append(dst, d.Bytes...)
	}
	return dst
}

// DecodeValue decodes a canonical value for cols, checking that each datum fits its
// column: the class matches (or is NULL where the column allows it) and the payload is
// canonical. Bytes that come from another endpoint are checked here before any write.
func DecodeValue(b []byte, cols []Column) ([]Datum, error) {
	out := make([]Datum, len(cols))
	for i := range cols {
		c := &cols[i]
		if len(b) == 0 {
			return nil, fmt.Errorf("value ends before column %s", c.Name)
		}
		tag := Class(b[0])
		b = b[1:]
		if tag == Null {
			if !c.Nullable {
				return nil, fmt.Errorf("column %s is NOT NULL but the value holds NULL", c.Name)
			}
			continue
		}
		if tag == wideTimestampTag && c.Class == Timestamp {
			d, err := decodeWideTimestamp(b)
			if err != nil {
				return nil, fmt.Errorf("column %s: %v", c.Name, err)
			}
			out[i], b = d, b[12:]
			continue
		}
		if tag > JSON && tag != Native {
			return nil, fmt.Errorf("the value is not a row in the canonical encoding (byte %#02x where column %s's type tag should be): "+
				"a key-value store's rows go into a table only as they came from one, such as a Badger store synced from a table (docs/canonical.md)", byte(tag), c.Name)
		}
		if tag != c.Class {
			return nil, fmt.Errorf("column %s is %s (%s) but the value holds a %s", c.Name, c.Class, c.Type, tag)
		}
		d := Datum{Class: tag}
		switch tag {
		case Int, Timestamp, Date, Time, Float:
			if len(b) < 8 {
				return nil, fmt.Errorf("column %s: truncated value", c.Name)
			}
			u := binary.BigEndian.Uint64(b)
			b = b[8:]
			if tag == Float {
				d.Float = math.Float64frombits(u)
				if math.Float64bits(normFloat(d.Float)) != u { // -0, or a NaN of other bits (NaN != NaN: compare bits)
					return nil, fmt.Errorf("column %s: float not in canonical form", c.Name)
				}
			} else {
				d.Int = int64(u)
			}
		case Bool:
			if len(b) < 1 || b[0] > 1 {
				return nil, fmt.Errorf("column %s: bad boolean", c.Name)
			}
			d.Int = int64(b[0])
			b = b[1:]
		case Decimal, Text, Bytes, JSON, Native:
			n, k := binary.Uvarint(b)
			if k <= 0 || n > uint64(len(b)-k) {
				return nil, fmt.Errorf("column %s: bad length", c.Name)
			}
			// One encoding per value: a length in more bytes than it needs (0x80 0x00 for
			// 0) would decode to the same row under another hash.
			var minimal [binary.MaxVarintLen64]byte
			if binary.PutUvarint(minimal[:], n) != k {
				return nil, fmt.Errorf("column %s: length not in canonical form", c.Name)
			}
			p := b[k : k+int(n)]
			b = b[k+int(n):]
			switch tag {
			case Bytes:
				d.Bytes = p
			case Text, Native:
				if !utf8.Valid(p) {
					return nil, fmt.Errorf("column %s: text is not UTF-8", c.Name)
				}
				d.Str = string(p)
			case Decimal:
				d.Str = string(p)
				if n, err := NormalizeDecimal(d.Str); err != nil || n != d.Str {
					return nil, fmt.Errorf("column %s: decimal %q not in canonical form", c.Name, d.Str)
				}
			case JSON:
				d.Str = string(p)
				if n, err := CanonicalJSON(p); err != nil || n != d.Str {
					return nil, fmt.Errorf("column %s: JSON not in canonical form", c.Name)
				}
			}
		default:
			return nil, fmt.Errorf("column %s: unknown type tag %d", c.Name, tag)
		}
		out[i] = d
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("value has %d bytes after its last column", len(b))
	}
	return out, nil
}

// decodeWideTimestamp decodes a wide timestamp's payload (see wideTimestampTag), refusing
// one that has another encoding: an instant nanoseconds hold, or outside years 1..9999.
func decodeWideTimestamp(b []byte) (Datum, error) {
	if len(b) < 12 {
		return Datum{}, errors.New("truncated value")
	}
	d := Datum{Class: Timestamp, Wide: true, Int: int64(binary.BigEndian.Uint64(b)), Nano: int32(binary.BigEndian.Uint32(b[8:]))}
	if d.Infinite() != 0 {
		if d.Nano != 0 {
			return Datum{}, errors.New("infinite timestamp not in canonical form")
		}
		return d, nil
	}
	if d.Nano < 0 || d.Nano >= 1e9 {
		return Datum{}, errors.New("timestamp nanoseconds out of range")
	}
	if n, err := timestampDatum(d.Time()); err != nil || !n.Wide || n.Int != d.Int || n.Nano != d.Nano {
		return Datum{}, errors.New("wide timestamp not in canonical form")
	}
	return d, nil
}

// keyClassOK reports whether a column of class c can be part of a key.
func keyClassOK(c Class) bool {
	switch c {
	case Int, Text, Bytes, Bool, Timestamp, Date, Time:
		return true
	}
	return false
}

// AppendKey appends the order-preserving key encoding. A single Text or Bytes column is
// its bytes as they are, so a table keyed by name and a key-value store agree on keys.
// Integers, timestamps, dates and times are 8 bytes big-endian with the sign bit flipped;
// booleans one byte. In a composite key, Text and Bytes parts escape 0x00 as 00 FF and end
// with 00 01, so that byte order is tuple order.
func AppendKey(dst []byte, ds []Datum) []byte {
	single := len(ds) == 1
	for _, d := range ds {
		switch d.Class {
		case Int, Timestamp, Date, Time:
			dst = binary.BigEndian.AppendUint64(dst, uint64(d.Int)^(1<<63))
		case Bool:
			dst = append(dst, byte(d.Int))
		case Text, Bytes:
			p := d.Bytes
			if d.Class == Text {
				p = []byte(d.Str)
			}
			if single {
				return append(dst, p...)
			}
			for _, c := range p {
				if c == 0 {
					dst = append(dst, 0, 0xff)
				} else {
					dst = append(dst, c)
				}
			}
			dst = append(dst, 0, 1)
		}
	}
	return dst
}

// DecodeKey is the inverse of AppendKey for the key columns cols.
func DecodeKey(b []byte, cols []Column) ([]Datum, error) {
	out := make([]Datum, len(cols))
	single := len(cols) == 1
	for i := range cols {
		c := &cols[i]
		d := Datum{Class: c.Class}
		switch c.Class {
		case Int, Timestamp, Date, Time:
			if len(b) < 8 {
				return nil, fmt.Errorf("key too short for column %s", c.Name)
			}
			d.Int = int64(binary.BigEndian.Uint64(b) ^ (1 << 63))
			b = b[8:]
		case Bool:
			if len(b) < 1 || b[0] > 1 {
				return nil, fmt.Errorf("key column %s: bad boolean", c.Name)
			}
			d.Int = int64(b[0])
			b = b[1:]
		case Text, Bytes:
			var p []byte
			if single {
				p, b = b, nil
			} else {
				for {
					j := bytes.IndexByte(b, 0)
					if j < 0 || j+1 >= len(b) {
						return nil, fmt.Errorf("key column %s: unterminated", c.Name)
					}
					p = append(p, b[:j]...)
					esc := b[j+1]
					b = b[j+2:]
					if esc == 1 {
						break
					}
					if esc != 0xff {
						return nil, fmt.Errorf("key column %s: bad escape", c.Name)
					}
					p = append(p, 0)
				}
			}
			if c.Class == Text {
				if !utf8.Valid(p) {
					return nil, fmt.Errorf("key column %s: text is not UTF-8", c.Name)
				}
				d.Str = string(p)
			} else {
				d.Bytes = append([]byte{}, p...)
			}
		default:
			return nil, fmt.Errorf("key column %s: %s cannot be part of a key", c.Name, c.Class)
		}
		out[i] = d
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("key has %d bytes after its last column", len(b))
	}
	return out, nil
}

// String renders a datum for messages and JSON dumps.
func (d Datum) String() string {
	switch d.Class {
	case Null:
		return "NULL"
	case Int:
		return strconv.FormatInt(d.Int, 10)
	case Bool:
		return strconv.FormatBool(d.Int == 1)
	case Float:
		return strconv.FormatFloat(d.Float, 'g', -1, 64)
	case Decimal, Text, JSON, Native:
		return d.Str
	case Bytes:
		return fmt.Sprintf("%x", d.Bytes)
	case Timestamp:
		if d.Infinite() != 0 {
			return timestampText(d)
		}
		return d.Time().Format(time.RFC3339Nano)
	case Date:
		return dateText(d)
	case Time:
		return formatTimeOfDay(d.Int)
	}
	return "?"
}

// infiniteDay is the day number of PostgreSQL's date infinity (sign 1) or -infinity
// (sign -1): the int64 extremes, which no engine's dates reach.
func infiniteDay(sign int) int64 {
	if sign < 0 {
		return math.MinInt64
	}
	return math.MaxInt64
}

// dateText is a Date datum as YYYY-MM-DD, or PostgreSQL's infinity or -infinity (the
// day numbers math.MaxInt64 and math.MinInt64, which no engine's dates reach).
func dateText(d Datum) string {
	if s := infinityText(d); s != "" {
		return s
	}
	return time.Unix(d.Int*86400, 0).UTC().Format(time.DateOnly)
}

// infinityText is PostgreSQL's spelling of an infinite timestamp or date (Infinite),
// "" for a finite one.
func infinityText(d Datum) string {
	switch d.Infinite() {
	case 1:
		return "infinity"
	case -1:
		return "-infinity"
	}
	return ""
}

func formatTimeOfDay(ns int64) string {
	sign := ""
	if ns < 0 {
		sign, ns = "-", -ns
	}
	h := ns / int64(time.Hour)
	ns -= h * int64(time.Hour)
	m := ns / int64(time.Minute)
	ns -= m * int64(time.Minute)
	s := ns / int64(time.Second)
	ns -= s * int64(time.Second)
	out := fmt.Sprintf("%s%02d:%02d:%02d", sign, h, m, s)
	if ns != 0 {
		out += strings.TrimRight(fmt.Sprintf(".%09d", ns), "0")
	}
	return out
}
