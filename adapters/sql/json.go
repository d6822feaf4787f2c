package sql

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/reconcile-dev/reconcile/reconcile"
)

// JSON lines of load and dump carry a SQL row as a "columns" object, one member per key
// and value column:
//
//	int        a number (or a string of digits)
//	decimal    a string ("12.50"), or a number
//	float      a number, or "NaN", "Infinity", "-Infinity"
//	text       a string
//	bytes      a string in standard base64
//	bool       true or false
//	timestamp  an RFC 3339 string ("2024-03-10T07:00:00.5Z"); dumps write UTC
//	date       "YYYY-MM-DD"
//	time       "HH:MM:SS[.fffffffff]"
//	json       any JSON value
//	NULL       null

// RowColumns renders r's key and value columns as a JSON object, key columns first, then
// value columns in name order.
func (t *Table) RowColumns(r reconcile.Row) (json.RawMessage, error) {
	kd, err := DecodeKey(r.Key, t.keyCols)
	if err != nil {
		return nil, err
	}
	vd, err := DecodeValue(r.Value, t.valCols)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	buf.WriteByte('{')
	write := func(c *Column, d Datum) {
		if buf.Len() > 1 {
			buf.WriteByte(',')
		}
		writeJSONString(&buf, c.Name)
		buf.WriteByte(':')
		buf.Write(datumJSON(d))
	}
	for i := range t.keyCols {
		write(&t.keyCols[i], kd[i])
	}
	for i := range t.valCols {
		write(&t.valCols[i], vd[i])
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

func datumJSON(d Datum) []byte {
	var v any
	switch d.Class {
	case Null:
		return []byte("null")
	case Int:
		return strconv.AppendInt(nil, d.Int, 10)
	case Float:
		if math.IsNaN(d.Float) || math.IsInf(d.Float, 0) {
			v = d.String()
			if math.IsInf(d.Float, 1) {
				v = "Infinity"
			} else if math.IsInf(d.Float, -1) {
				v = "-Infinity"
			}
		} else {
			return strconv.AppendFloat(nil, d.Float, 'g', -1, 64)
		}
	case Bool:
		return strconv.AppendBool(nil, d.Int == 1)
	case JSON:
		return []byte(d.Str)
	case Bytes:
		v = base64.StdEncoding.EncodeToString(d.Bytes)
	default: // decimal, text, timestamp, date, time
		v = d.String()
	}
	var buf bytes.Buffer
	writeJSONString(&buf, v.(string))
	return buf.Bytes()
}

// ColumnsRow builds the key, and for a put the value, of a row given as a "columns"
// object. A put names every key and value column; a delete only the key columns.
func (t *Table) ColumnsRow(cols map[string]json.RawMessage, del bool) (key, value []byte, err error) {
	known := map[string]bool{}
	kd := make([]Datum, len(t.keyCols))
	for i := range t.keyCols {
		c := &t.keyCols[i]
		known[c.Name] = true
		raw, ok := cols[c.Name]
		if !ok {
			return nil, nil, t.missing(cols, fmt.Errorf("columns: key column %q missing", c.Name))
		}
		if kd[i], err = jsonDatum(c, raw); err != nil {
			return nil, nil, err
		}
		if kd[i].Class == Null {
			return nil, nil, fmt.Errorf("columns: key column %q is null", c.Name)
		}
	}
	key = AppendKey([]byte{}, kd)
	if del {
		if len(cols) != len(t.keyCols) {
			return nil, nil, fmt.Errorf("columns: a delete names only the key columns (%s)", t.keyList())
		}
		return key, nil, nil
	}
	vd := make([]Datum, len(t.valCols))
	for i := range t.valCols {
		c := &t.valCols[i]
		known[c.Name] = true
		raw, ok := cols[c.Name]
		if !ok && c.Generated {
			continue // the engine computes it; a load does not write it
		}
		if !ok {
			return nil, nil, t.missing(cols, fmt.Errorf("columns: column %q missing (give null for NULL)", c.Name))
		}
		if vd[i], err = jsonDatum(c, raw); err != nil {
			return nil, nil, err
		}
		if vd[i].Class == Null && !c.Nullable {
			return nil, nil, fmt.Errorf("columns: column %q is NOT NULL", c.Name)
		}
	}
	for name := range cols {
		if !known[name] {
			return nil, nil, t.noColumn(name)
		}
	}
	return key, AppendValue(nil, vd), nil
}

// missing is err, a column missing from cols, unless cols names a column the table does
// not have: that (a misspelling, most likely) is the error then.
func (t *Table) missing(cols map[string]json.RawMessage, err error) error {
	names := t.keyValueNames()
	for name := range cols {
		if !slices.Contains(names, name) {
			return t.noColumn(name)
		}
	}
	return err
}

// noColumn is the error for a row naming a column that is neither a key nor a value
// column of the table: it lists those.
func (t *Table) noColumn(name string) error {
	return fmt.Errorf("columns: table %s has no column %q among its key and value columns (%s)", t.cfg.Table, name, strings.Join(t.keyValueNames(), ", "))
}

// keyValueNames is the names of the table's key columns, then of its value columns.
func (t *Table) keyValueNames() []string {
	var names []string
	for _, cs := range [][]Column{t.keyCols, t.valCols} {
		for _, c := range cs {
			names = append(names, c.Name)
		}
	}
	return names
}

func jsonDatum(c *Column, raw json.RawMessage) (Datum, error) {
	raw = bytes.TrimSpace(raw)
	fail := func(want string) (Datum, error) {
		return Datum{}, fmt.Errorf("columns: %s (%s) wants %s, got %s", c.Name, c.Type, want, raw)
	}
	if string(raw) == "null" {
		return Datum{}, nil
	}
	if c.Class == Native && (len(raw) == 0 || raw[0] != '"') {
		return fail(`PostgreSQL's text for it as a string, as dump writes it (for an array "{a,\"b c\"}")`)
	}
	if c.Class == JSON {
		s, err := CanonicalJSON(raw)
		if err != nil {
			return fail("a JSON value")
		}
		return Datum{Class: JSON, Str: s}, nil
	}
	v, err := jsonScalar(raw)
	if err != nil {
		return fail("a JSON value")
	}
	var in any
	switch x := v.(type) {
	case json.Number:
		in = string(x)
		if c.Class == Float {
			f, err := strconv.ParseFloat(string(x), 64)
			if err != nil {
				return fail("a float")
			}
			in = f
		}
	case string:
		in = x
		switch c.Class {
		case Bytes:
			b, err := base64.StdEncoding.DecodeString(x)
			if err != nil {
				return fail("a base64 string")
			}
			in = b
		case Timestamp:
			if infinity(x) != 0 {
				break // PostgreSQL's infinities, as dumps write them
			}
			t, err := time.Parse(time.RFC3339Nano, x)
			if err != nil {
				return fail(`an RFC 3339 timestamp ("2024-03-10T07:00:00Z"), "infinity" or "-infinity"`)
			}
			in = t
		case Int:
			if strings.TrimSpace(x) != x {
				return fail("an integer")
			}
		}
	case bool:
		in = x
		if c.Class != Bool {
			return fail(c.Class.String())
		}
	default:
		return fail(c.Class.String())
	}
	if c.Class == Bool {
		if _, ok := in.(bool); !ok {
			return fail("true or false")
		}
	}
	d, err := c.canon(in)
	if err != nil {
		return Datum{}, fmt.Errorf("columns: %s (%s): %v", c.Name, c.Type, err)
	}
	return d, nil
}

// jsonScalar decodes one JSON value as json.Decoder with UseNumber does (a string, a
// json.Number, a bool, nil; an object or array as a map or slice), without a decoder's
// allocations for the strings and numbers most columns hold: a load decodes every column
// of every line.
func jsonScalar(raw []byte) (any, error) {
	n := len(raw)
	switch {
	case n >= 2 && raw[0] == '"' && raw[n-1] == '"' && plainString(raw[1:n-1]):
		return string(raw[1 : n-1]), nil
	case n > 0 && (raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9') && json.Valid(raw):
		return json.Number(raw), nil
	case string(raw) == "true":
		return true, nil
	case string(raw) == "false":
		return false, nil
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// plainString reports whether b, between a JSON string's quotes, is its value as it is:
// valid UTF-8 with no escape, quote or control character.
func plainString(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c == '"' || c == '\\' {
			return false
		}
	}
	return utf8.Valid(b)
}
