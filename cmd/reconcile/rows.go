package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"unicode/utf8"

	"github.com/reconcile-dev/reconcile/reconcile"
)

// rowLine is one JSON line of load and dump:
//
//	{"key": "...", "version": 123, "value": "...", "expires_at": 0}
//	{"key_b64": "...", "version": 123, "value_b64": "..."}
//	{"key": "...", "deleted": true}
//
// key and value are UTF-8 strings; key_b64 and value_b64 (standard base64) carry any
// bytes. expires_at is unix nanoseconds, omitted or 0 for never. A missing value is the
// empty value. A delete line carries only the key and "deleted": true.
type rowLine struct {
	Key       *string `json:"key,omitempty"`
	KeyB64    *string `json:"key_b64,omitempty"`
	Version   *uint64 `json:"version,omitempty"`
	Value     *string `json:"value,omitempty"`
	ValueB64  *string `json:"value_b64,omitempty"`
	ExpiresAt int64   `json:"expires_at,omitempty"`
	Deleted   bool    `json:"deleted,omitempty"`
	// Columns carries a SQL table's row instead of key and value: one member per key
	// and value column (see adapters/sql's JSON mapping).
	Columns json.RawMessage `json:"columns,omitempty"`
}

// maxLine is the longest line load accepts: the longest value a row may have
// (reconcile.MaxValue) and a long key, both in base64, with room to spare.
const maxLine = (reconcile.MaxValue+2*reconcile.MaxKey)/3*4 + 64<<10

// rowOp is one parsed line: a put of row, or a delete of row.Key. A line with a columns
// object leaves row.Key and row.Value to be built by the table (resolveColumns).
type rowOp struct {
	row     reconcile.Row
	delete  bool
	line    int
	columns map[string]json.RawMessage
	// noVersion marks a put without "version": allowed only into a key-ordered store,
	// which keeps no versions (checked once the store is open, in resolveRows).
	noVersion bool
}

// parseRowLine decodes and validates one line.
func parseRowLine(line []byte) (rowOp, error) {
	var op rowOp
	l, cols, ok := scanRowLine(line)
	if !ok {
		var err error
		if l, err = decodeRowLine(line); err != nil {
			return rowOp{}, err
		}
	}
	var err error
	if l.Columns != nil {
		if l.Key != nil || l.KeyB64 != nil || l.Value != nil || l.ValueB64 != nil {
			return rowOp{}, errors.New("has both columns and key/value: a SQL row is given by columns alone")
		}
		op.columns = cols
		if cols == nil {
			if err := json.Unmarshal(l.Columns, &op.columns); err != nil || op.columns == nil {
				return rowOp{}, errors.New("columns must be a JSON object of column names to values")
			}
		}
	} else {
		if op.row.Key, err = field("key", l.Key, l.KeyB64); err != nil {
			return rowOp{}, err
		}
		if op.row.Key == nil {
			return rowOp{}, errors.New("needs key or key_b64 (or columns, for a SQL table)")
		}
	}
	if l.Deleted {
		if l.Version != nil || l.Value != nil || l.ValueB64 != nil || l.ExpiresAt != 0 {
			return rowOp{}, errors.New(`a delete line carries only key (or key_b64, or the key columns) and "deleted": true`)
		}
		op.delete = true
		return op, nil
	}
	if l.ExpiresAt < 0 {
		return rowOp{}, errors.New("expires_at must be unix nanoseconds, 0 or more")
	}
	if l.Version == nil {
		op.noVersion = true
	} else {
		op.row.Version = *l.Version
	}
	op.row.ExpiresAt = l.ExpiresAt
	if op.columns != nil {
		return op, nil
	}
	if op.row.Value, err = field("value", l.Value, l.ValueB64); err != nil {
		return rowOp{}, err
	}
	if op.row.Value == nil {
		op.row.Value = []byte{}
	}
	return op, nil
}

// decodeRowLine decodes a line with encoding/json, with the messages a malformed line
// gets.
func decodeRowLine(line []byte) (rowLine, error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	var l rowLine
	if err := dec.Decode(&l); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			// Not "Go struct field rowLine.version of type uint64": the field and what it takes.
			return l, fmt.Errorf("field %q: got a JSON %s, want %s", te.Field, te.Value, jsonWants(te.Type.Kind()))
		}
		return l, fmt.Errorf("not a JSON row object: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return l, errors.New("more than one JSON value on the line")
	}
	return l, nil
}

// scanRowLine decodes the lines most inputs hold (key and value lines whose strings need
// no escapes, as dump writes them for text; columns objects whose names need none) about
// five times faster than encoding/json, into what decodeRowLine would decode, and a
// columns object's members as json.Unmarshal would; it reports false for any other line
// (an escape in a name or a key or value, a null, a name spelt otherwise, a duplicate, a
// number that is not a plain integer of the field's range), which decodeRowLine then
// decodes or refuses.
func scanRowLine(line []byte) (rowLine, map[string]json.RawMessage, bool) {
	var l rowLine
	var cols map[string]json.RawMessage
	fail := func() (rowLine, map[string]json.RawMessage, bool) { return rowLine{}, nil, false }
	i := skipSpace(line, 0)
	if i == len(line) || line[i] != '{' {
		return fail()
	}
	i = skipSpace(line, i+1)
	if i < len(line) && line[i] == '}' {
		if skipSpace(line, i+1) != len(line) {
			return fail()
		}
		return l, nil, true
	}
	seen := 0
	for {
		name, j, ok := scanPlainString(line, i)
		if !ok {
			return fail()
		}
		i = skipSpace(line, j)
		if i == len(line) || line[i] != ':' {
			return fail()
		}
		i = skipSpace(line, i+1)
		field := 0
		switch string(name) {
		case "columns":
			if i == len(line) || line[i] != '{' {
				return fail()
			}
			j := skipValue(line, i)
			if j < 0 || !json.Valid(line[i:j]) {
				return fail()
			}
			if cols, ok = scanColumns(line[i:j]); !ok {
				return fail()
			}
			l.Columns, field, i = bytes.Clone(line[i:j]), 8, j
		case "key", "key_b64", "value", "value_b64":
			v, j, ok := scanPlainString(line, i)
			if !ok {
				return fail()
			}
			str := string(v)
			switch string(name) {
			case "key":
				l.Key, field = &str, 1
			case "key_b64":
				l.KeyB64, field = &str, 2
			case "value":
				l.Value, field = &str, 3
			default:
				l.ValueB64, field = &str, 4
			}
			i = j
		case "version":
			j := scanDigits(line, i)
			n, err := strconv.ParseUint(string(line[i:j]), 10, 64)
			if err != nil || !plainInteger(line[i:j]) {
				return fail()
			}
			l.Version, field, i = &n, 5, j
		case "expires_at":
			j := i
			if j < len(line) && line[j] == '-' {
				j++
			}
			j = scanDigits(line, j)
			n, err := strconv.ParseInt(string(line[i:j]), 10, 64)
			if err != nil || !plainInteger(bytes.TrimPrefix(line[i:j], []byte("-"))) {
				return fail()
			}
			l.ExpiresAt, field, i = n, 6, j
		case "deleted":
			switch {
			case bytes.HasPrefix(line[i:], []byte("true")):
				l.Deleted, i = true, i+4
			case bytes.HasPrefix(line[i:], []byte("false")):
				l.Deleted, i = false, i+5
			default:
				return fail()
			}
			field = 7
		default:
			return fail()
		}
		if seen&(1<<field) != 0 {
			return fail() // encoding/json keeps the last; let it
		}
		seen |= 1 << field
		i = skipSpace(line, i)
		switch {
		case i < len(line) && line[i] == ',':
			i = skipSpace(line, i+1)
		case i < len(line) && line[i] == '}' && skipSpace(line, i+1) == len(line):
			return l, cols, true
		default:
			return fail()
		}
	}
}

// scanColumns returns the members of obj, a valid JSON object, as json.Unmarshal into a
// map of json.RawMessage would, or false when a name needs unescaping or comes twice.
func scanColumns(obj []byte) (map[string]json.RawMessage, bool) {
	cols := map[string]json.RawMessage{}
	i := skipSpace(obj, 1)
	if obj[i] == '}' {
		return cols, true
	}
	for {
		name, j, ok := scanPlainString(obj, i)
		if !ok {
			return nil, false
		}
		if _, dup := cols[string(name)]; dup {
			return nil, false
		}
		i = skipSpace(obj, j)
		i = skipSpace(obj, i+1) // the ':'
		j = skipValue(obj, i)
		if j < 0 {
			return nil, false
		}
		cols[string(name)] = bytes.Clone(obj[i:j])
		i = skipSpace(obj, j)
		if obj[i] == '}' {
			return cols, true
		}
		i = skipSpace(obj, i+1) // the ','
	}
}

// skipValue returns the index after the JSON value that starts at b[i], found by its
// brackets and quotes (b is checked to be valid JSON apart), or -1 when it does not end.
func skipValue(b []byte, i int) int {
	depth := 0
	for j := i; j < len(b); j++ {
		switch b[j] {
		case '"':
			for j++; j < len(b) && b[j] != '"'; j++ {
				if b[j] == '\\' {
					j++
				}
			}
			if j >= len(b) {
				return -1
			}
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return j // the end of a number or literal before its container's end
			}
			depth--
		case ',', ' ', '\t', '\n', '\r', ':':
			if depth == 0 {
				return j
			}
			continue
		default:
			continue
		}
		if depth == 0 {
			return j + 1
		}
	}
	if depth == 0 && i < len(b) {
		return len(b) // a number or literal that ends b
	}
	return -1
}

// skipSpace returns the index of the first byte of b at or after i that is not JSON
// white space.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// scanPlainString returns the contents of the JSON string at b[i] and the index after it,
// if it holds no escape and no control character and is valid UTF-8.
func scanPlainString(b []byte, i int) ([]byte, int, bool) {
	if i == len(b) || b[i] != '"' {
		return nil, i, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return b[i+1 : j], j + 1, utf8.Valid(b[i+1 : j])
		case c == '\\' || c < 0x20:
			return nil, i, false
		}
	}
	return nil, i, false
}

// scanDigits returns the index of the first byte of b at or after i that is not a digit.
func scanDigits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

// plainInteger reports whether digits is a JSON integer: no leading zero but "0" itself.
func plainInteger(digits []byte) bool {
	return len(digits) > 0 && (digits[0] != '0' || len(digits) == 1)
}

// field decodes a name / name_b64 pair: nil when both are absent.
func field(name string, s, b64 *string) ([]byte, error) {
	switch {
	case s != nil && b64 != nil:
		return nil, fmt.Errorf("has both %s and %s_b64", name, name)
	case s != nil:
		return []byte(*s), nil
	case b64 != nil:
		b, err := base64.StdEncoding.DecodeString(*b64)
		if err != nil {
			return nil, fmt.Errorf("%s_b64: %v", name, err)
		}
		return b, nil
	}
	return nil, nil
}

// formatRowLine encodes a live row as dump writes it: strings where the bytes are valid
// UTF-8, base64 otherwise.
func formatRowLine(r reconcile.Row) rowLine {
	v := r.Version
	l := rowLine{Version: &v, ExpiresAt: r.ExpiresAt}
	l.Key, l.KeyB64 = text(r.Key)
	l.Value, l.ValueB64 = text(r.Value)
	return l
}

func text(b []byte) (s, b64 *string) {
	if utf8.Valid(b) {
		str := string(b)
		return &str, nil
	}
	str := base64.StdEncoding.EncodeToString(b)
	return nil, &str
}

// jsonWants names what a row line's field of kind k takes.
func jsonWants(k reflect.Kind) string {
	switch k {
	case reflect.Uint64, reflect.Uint32, reflect.Uint:
		return "a whole number from 0 to 18446744073709551615"
	case reflect.Int64, reflect.Int:
		return "a whole number"
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return "a string"
	case reflect.Map:
		return "an object"
	}
	return "another type (see the README's load format)"
}
