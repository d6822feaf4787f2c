package sql

// PostgreSQL's whole-table read (rawReader): the scan runs on pgx itself, inside the
// snapshot's transaction (database/sql's Conn.Raw hands out the connection), and each
// column's wire bytes are decoded straight into a Datum. Through database/sql every value
// became a driver value first (a boxed integer, a string, a time.Time): about half of a
// scan's time, spent allocating. Types are read in binary where that is exact and simple
// (integers, floats, booleans, timestamps, dates, times, bytea) and as text otherwise
// (numeric, JSON, and text, whose binary form is its text except for uuid); the datums are
// the ones the database/sql path makes (TestPostgresRawScanMatchesDriver).

import (
	"context"
	dbsql "database/sql"
	"encoding/binary"
	"fmt"
	"math"
	"time"
	"unsafe"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/reconcile-dev/reconcile/reconcile"
)

func (p postgres) beginReadConn(ctx context.Context, db *dbsql.DB) (*dbsql.Conn, *dbsql.Tx, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, nil, p.dbErr(err)
	}
	tx, err := conn.BeginTx(ctx, &dbsql.TxOptions{Isolation: dbsql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		conn.Close()
		return nil, nil, p.dbErr(err)
	}
	return conn, tx, nil
}

// pgBinary reports whether column c is read in binary: an integer column of type numeric
// is read as text, as decimals are.
func pgBinary(c *Column) bool {
	if c.Numeric {
		return false
	}
	switch c.Class {
	case Int, Float, Bool, Timestamp, Date, Time, Bytes:
		return true
	}
	return false
}

func (p postgres) readRaw(ctx context.Context, conn *dbsql.Conn, query string, cols []*Column, send func(rowBatch) bool) error {
	formats := make(pgx.QueryResultFormats, len(cols))
	for i, c := range cols {
		if pgBinary(c) {
			formats[i] = pgx.BinaryFormatCode
		}
	}
	return conn.Raw(func(dc any) error {
		sc, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("internal: a postgres connection is a %T, not pgx's", dc)
		}
		rows, err := sc.Conn().Query(ctx, query, formats)
		if err != nil {
			return err
		}
		defer rows.Close()
		decs, err := pgDecoders(rows.FieldDescriptions(), cols)
		if err != nil {
			return err
		}
		// Batches go back to free once converted: a scan reuses a few buffers.
		free := make(chan *pgBatch, 16)
		next := func() *pgBatch {
			select {
			case b := <-free:
				b.buf, b.ends, b.rows = b.buf[:0], b.ends[:0], 0
				return b
			default:
				return &pgBatch{decs: decs, free: free, buf: make([]byte, 0, 64*scanBatch), ends: make([]int32, 0, len(decs)*scanBatch)}
			}
		}
		b := next()
		for rows.Next() {
			b.add(rows.RawValues())
			if b.rows == scanBatch || len(b.buf) >= pgBatchBytes {
				if !send(b) {
					return nil
				}
				b = next()
			}
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if b.rows > 0 {
			send(b)
		}
		return nil
	})
}

// pgBatchBytes bounds a batch's bytes (wide rows): it is sent when it holds more.
const pgBatchBytes = 16 << 20

// pgBatch is rows of wire values copied out of pgx's read buffer.
type pgBatch struct {
	decs []pgDecoder
	buf  []byte
	ends []int32 // per value, its end in buf (its start is the previous end); -1-end: NULL
	rows int
	free chan *pgBatch // where release returns it
}

func (b *pgBatch) release() {
	if cap(b.buf) > 2*pgBatchBytes {
		return // a wide row's buffer is not kept
	}
	select {
	case b.free <- b:
	default:
	}
}

func (b *pgBatch) add(raws [][]byte) {
	for _, v := range raws {
		if v == nil {
			b.ends = append(b.ends, int32(-1-len(b.buf)))
			continue
		}
		b.buf = append(b.buf, v...)
		b.ends = append(b.ends, int32(len(b.buf)))
	}
	b.rows++
}

// value returns the k-th value of the batch (row-major), nil for NULL.
func (b *pgBatch) value(k int) []byte {
	e := b.ends[k]
	if e < 0 {
		return nil
	}
	start := int32(0)
	if k > 0 {
		if start = b.ends[k-1]; start < 0 {
			start = -1 - start
		}
	}
	return b.buf[start:e]
}

func (b *pgBatch) each(sc *scanner, fn func(reconcile.Row) error) error {
	n := len(b.decs)
	for row := 0; row < b.rows; row++ {
		r, err := sc.assemble(func(i int) (Datum, error) {
			raw := b.value(row*n + i)
			if raw == nil {
				return Datum{}, nil
			}
			return b.decs[i].datum(raw)
		}, func(dst []byte, i int) ([]byte, error) {
			raw := b.value(row*n + i)
			if raw == nil {
				return append(dst, byte(Null)), nil
			}
			return b.decs[i].appendValue(dst, raw)
		})
		if err == nil {
			err = fn(r)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// pgDecoder turns one non-NULL wire value into a datum (a Text, Decimal or JSON datum may
// point into raw: it is valid only until the batch is reused, as scanner.assemble needs),
// or appends its canonical value encoding straight from the wire bytes, which is what
// AppendValue makes of the datum (TestPostgresRawScanMatchesDriver compares the rows).
type pgDecoder struct {
	datum       func(raw []byte) (Datum, error)
	appendValue func(dst, raw []byte) ([]byte, error)
}

// viaDatum is a pgDecoder whose value encoding goes through its datum.
func viaDatum(f func(raw []byte) (Datum, error)) pgDecoder {
	return pgDecoder{datum: f, appendValue: func(dst, raw []byte) ([]byte, error) {
		d, err := f(raw)
		if err != nil {
			return dst, err
		}
		return appendDatum(dst, d), nil
	}}
}

// fixed64 is a pgDecoder of n-byte big-endian wire values whose canonical encoding is the
// class's tag and 8 big-endian bytes: toInt maps the wire value to the datum's Int (for a
// Float, to its IEEE-754 bits).
func fixed64(class Class, n int, toInt func(raw []byte) (int64, error)) pgDecoder {
	read := func(raw []byte) (int64, error) {
		if len(raw) != n {
			return 0, fmt.Errorf("a binary value of %d bytes, want %d", len(raw), n)
		}
		return toInt(raw)
	}
	return pgDecoder{
		datum: func(raw []byte) (Datum, error) {
			v, err := read(raw)
			if class == Float {
				return Datum{Class: Float, Float: math.Float64frombits(uint64(v))}, err
			}
			return Datum{Class: class, Int: v}, err
		},
		appendValue: func(dst, raw []byte) ([]byte, error) {
			v, err := read(raw)
			if err != nil {
				return dst, err
			}
			return binary.BigEndian.AppendUint64(append(dst, byte(class)), uint64(v)), nil
		},
	}
}

// pgTimestamp decodes binary timestamps and timestamptzs (int64 microseconds since
// 2000-01-01, the extremes for the infinities): those nanoseconds hold straight into the
// encoding, the others through a wide datum.
var pgTimestamp = func() pgDecoder {
	// Nanoseconds since 1970 fit 64 bits within 1677-09-21..2262-04-11.
	const lo, hi = math.MinInt64/1000 - pgEpoch*1_000_000, math.MaxInt64/1000 - pgEpoch*1_000_000
	datum := func(raw []byte) (Datum, error) {
		if len(raw) != 8 {
			return Datum{}, fmt.Errorf("a binary timestamp of %d bytes, want 8", len(raw))
		}
		us := int64(binary.BigEndian.Uint64(raw))
		switch {
		case us == math.MaxInt64:
			return infiniteTimestamp(1), nil
		case us == math.MinInt64:
			return infiniteTimestamp(-1), nil
		case us >= lo && us <= hi:
			return Datum{Class: Timestamp, Int: (us + pgEpoch*1_000_000) * 1000}, nil
		}
		sec, frac := us/1_000_000, us%1_000_000
		if frac < 0 {
			sec, frac = sec-1, frac+1_000_000
		}
		return timestampDatum(time.Unix(sec+pgEpoch, frac*1000))
	}
	wide := viaDatum(datum).appendValue
	return pgDecoder{datum: datum, appendValue: func(dst, raw []byte) ([]byte, error) {
		if len(raw) == 8 {
			if us := int64(binary.BigEndian.Uint64(raw)); us >= lo && us <= hi { // the common case, straight into the encoding
				return binary.BigEndian.AppendUint64(append(dst, byte(Timestamp)), uint64((us+pgEpoch*1_000_000)*1000)), nil
			}
		}
		return wide(dst, raw)
	}}
}()

// bytesLike is a pgDecoder of values whose canonical encoding is the class's tag, a
// uvarint length and the bytes of the wire value, trimmed of trailing spaces for
// blank-padded text.
func bytesLike(class Class, trim bool) pgDecoder {
	cut := func(raw []byte) []byte {
		if trim {
			for len(raw) > 0 && raw[len(raw)-1] == ' ' {
				raw = raw[:len(raw)-1]
			}
		}
		return raw
	}
	return pgDecoder{
		datum: func(raw []byte) (Datum, error) {
			raw = cut(raw)
			if class == Bytes {
				return Datum{Class: Bytes, Bytes: raw}, nil
			}
			return Datum{Class: class, Str: borrowString(raw)}, nil
		},
		appendValue: func(dst, raw []byte) ([]byte, error) {
			raw = cut(raw)
			dst = binary.AppendUvarint(append(dst, byte(class)), uint64(len(raw)))
			return append(dst, raw...), nil
		},
	}
}

// PostgreSQL's type OIDs for the types read in binary (pg_type.dat).
const (
	oidBool        = 16
	oidBytea       = 17
	oidInt8        = 20
	oidInt2        = 21
	oidInt4        = 23
	oidOID         = 26
	oidFloat4      = 700
	oidFloat8      = 701
	oidDate        = 1082
	oidTime        = 1083
	oidTimestamp   = 1114
	oidTimestamptz = 1184
)

// pgEpoch is PostgreSQL's epoch (2000-01-01) in unix seconds.
const pgEpoch = 946684800

// borrowString is the bytes of b as a string without a copy: b must not change while the
// string is in use.
func borrowString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// pgDecoders picks each column's decoder from the format and type of the result.
func pgDecoders(fds []pgconn.FieldDescription, cols []*Column) ([]pgDecoder, error) {
	if len(fds) != len(cols) {
		return nil, fmt.Errorf("internal: the scan returned %d columns for %d", len(fds), len(cols))
	}
	decs := make([]pgDecoder, len(cols))
	for i, c := range cols {
		fd := fds[i]
		dec, err := pgDecoderFor(c, fd.DataTypeOID, fd.Format)
		if err != nil {
			return nil, fmt.Errorf("column %s (%s): %v", c.Name, c.Type, err)
		}
		decs[i] = dec
	}
	return decs, nil
}

func pgDecoderFor(c *Column, oid uint32, format int16) (pgDecoder, error) {
	class := c.Class
	if format == pgx.TextFormatCode {
		switch class {
		case Text:
			return bytesLike(Text, c.Fixed), nil
		case Native:
			return bytesLike(Native, false), nil
		case Decimal:
			return viaDatum(func(raw []byte) (Datum, error) {
				s, err := NormalizeDecimal(borrowString(raw))
				return Datum{Class: Decimal, Str: s}, err
			}), nil
		case JSON:
			return viaDatum(func(raw []byte) (Datum, error) {
				s, err := CanonicalJSON(raw)
				return Datum{Class: JSON, Str: s}, err
			}), nil
		case Int: // a numeric(p,0) key or version
			return viaDatum(func(raw []byte) (Datum, error) {
				n, err := toInt(borrowString(raw))
				return Datum{Class: Int, Int: n}, err
			}), nil
		}
		return pgDecoder{}, fmt.Errorf("internal: no text decoder for class %s", class)
	}
	be := binary.BigEndian
	switch {
	case class == Int && oid == oidInt2:
		return fixed64(Int, 2, func(raw []byte) (int64, error) { return int64(int16(be.Uint16(raw))), nil }), nil
	case class == Int && oid == oidInt4:
		return fixed64(Int, 4, func(raw []byte) (int64, error) { return int64(int32(be.Uint32(raw))), nil }), nil
	case class == Int && oid == oidOID:
		return fixed64(Int, 4, func(raw []byte) (int64, error) { return int64(be.Uint32(raw)), nil }), nil
	case class == Int && oid == oidInt8:
		return fixed64(Int, 8, func(raw []byte) (int64, error) { return int64(be.Uint64(raw)), nil }), nil
	case class == Float && oid == oidFloat4:
		return fixed64(Float, 4, func(raw []byte) (int64, error) {
			return int64(math.Float64bits(normFloat(float64(math.Float32frombits(be.Uint32(raw)))))), nil
		}), nil
	case class == Float && oid == oidFloat8:
		return fixed64(Float, 8, func(raw []byte) (int64, error) {
			return int64(math.Float64bits(normFloat(math.Float64frombits(be.Uint64(raw))))), nil
		}), nil
	case class == Bool && oid == oidBool:
		return viaDatum(func(raw []byte) (Datum, error) {
			if len(raw) != 1 || raw[0] > 1 {
				return Datum{}, fmt.Errorf("a binary boolean of %d bytes (%x)", len(raw), raw)
			}
			return Datum{Class: Bool, Int: int64(raw[0])}, nil
		}), nil
	case class == Bytes && oid == oidBytea:
		return bytesLike(Bytes, false), nil
	case class == Timestamp && (oid == oidTimestamp || oid == oidTimestamptz):
		if c.role == "" {
			return pgTimestamp, nil
		}
		return pgDecoder{datum: func(raw []byte) (Datum, error) { return c.narrow(pgTimestamp.datum(raw)) }}, nil
	case class == Date && oid == oidDate:
		return fixed64(Date, 4, func(raw []byte) (int64, error) {
			switch d := int32(be.Uint32(raw)); d {
			case math.MaxInt32: // infinity
				return infiniteDay(1), nil
			case math.MinInt32:
				return infiniteDay(-1), nil
			default:
				return int64(d) + pgEpoch/86400, nil
			}
		}), nil
	case class == Time && oid == oidTime:
		return fixed64(Time, 8, func(raw []byte) (int64, error) { return int64(be.Uint64(raw)) * 1000, nil }), nil
	}
	return pgDecoder{}, fmt.Errorf("internal: no binary decoder for class %s and type OID %d", class, oid)
}
