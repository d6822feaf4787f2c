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
	"errors"
	"fmt"
	"math"
	"strings"
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

// pgBinary reports whether a column of class c is read in binary.
func pgBinary(c Class) bool {
	switch c {
	case Int, Float, Bool, Timestamp, Date, Time, Bytes:
		return true
	}
	return false
}

func (p postgres) readRaw(ctx context.Context, conn *dbsql.Conn, query string, cols []*Column, send func(rowBatch) bool) error {
	formats := make(pgx.QueryResultFormats, len(cols))
	for i, c := range cols {
		if pgBinary(c.Class) {
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
			return b.decs[i](raw)
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

// pgDecoder turns one non-NULL wire value into a datum. A Text, Decimal or JSON datum may
// point into raw: it is valid only until the batch is reused, as scanner.assemble needs.
type pgDecoder func(raw []byte) (Datum, error)

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
			fixed := c.Fixed
			return func(raw []byte) (Datum, error) {
				s := borrowString(raw)
				if fixed {
					s = strings.TrimRight(s, " ")
				}
				return Datum{Class: Text, Str: s}, nil
			}, nil
		case Decimal:
			return func(raw []byte) (Datum, error) {
				s, err := NormalizeDecimal(borrowString(raw))
				return Datum{Class: Decimal, Str: s}, err
			}, nil
		case JSON:
			return func(raw []byte) (Datum, error) {
				s, err := CanonicalJSON(raw)
				return Datum{Class: JSON, Str: s}, err
			}, nil
		}
		return nil, fmt.Errorf("internal: no text decoder for class %s", class)
	}
	fixed := func(n int, f func(raw []byte) (Datum, error)) pgDecoder {
		return func(raw []byte) (Datum, error) {
			if len(raw) != n {
				return Datum{}, fmt.Errorf("a binary value of %d bytes, want %d", len(raw), n)
			}
			return f(raw)
		}
	}
	be := binary.BigEndian
	switch {
	case class == Int && oid == oidInt2:
		return fixed(2, func(raw []byte) (Datum, error) { return Datum{Class: Int, Int: int64(int16(be.Uint16(raw)))}, nil }), nil
	case class == Int && oid == oidInt4:
		return fixed(4, func(raw []byte) (Datum, error) { return Datum{Class: Int, Int: int64(int32(be.Uint32(raw)))}, nil }), nil
	case class == Int && oid == oidOID:
		return fixed(4, func(raw []byte) (Datum, error) { return Datum{Class: Int, Int: int64(be.Uint32(raw))}, nil }), nil
	case class == Int && oid == oidInt8:
		return fixed(8, func(raw []byte) (Datum, error) { return Datum{Class: Int, Int: int64(be.Uint64(raw))}, nil }), nil
	case class == Float && oid == oidFloat4:
		return fixed(4, func(raw []byte) (Datum, error) {
			return Datum{Class: Float, Float: normFloat(float64(math.Float32frombits(be.Uint32(raw))))}, nil
		}), nil
	case class == Float && oid == oidFloat8:
		return fixed(8, func(raw []byte) (Datum, error) {
			return Datum{Class: Float, Float: normFloat(math.Float64frombits(be.Uint64(raw)))}, nil
		}), nil
	case class == Bool && oid == oidBool:
		return fixed(1, func(raw []byte) (Datum, error) {
			if raw[0] > 1 {
				return Datum{}, fmt.Errorf("boolean byte %d", raw[0])
			}
			return Datum{Class: Bool, Int: int64(raw[0])}, nil
		}), nil
	case class == Bytes && oid == oidBytea:
		return func(raw []byte) (Datum, error) { return Datum{Class: Bytes, Bytes: raw}, nil }, nil
	case class == Timestamp && (oid == oidTimestamp || oid == oidTimestamptz):
		return fixed(8, func(raw []byte) (Datum, error) {
			us := int64(be.Uint64(raw))
			if us == math.MaxInt64 || us == math.MinInt64 {
				return Datum{}, errors.New("timestamp is infinity, which nanoseconds in 64 bits cannot hold")
			}
			// Nanoseconds since 1970 must fit 64 bits: 1677-09-21..2262-04-11.
			const lo, hi = math.MinInt64/1000 - pgEpoch*1_000_000, math.MaxInt64/1000 - pgEpoch*1_000_000
			if us < lo || us > hi {
				t := time.Unix(pgEpoch, 0).UTC().Add(time.Duration(us/1_000_000) * time.Second)
				return Datum{}, fmt.Errorf("timestamp %v is outside 1677-09-21..2262-04-11, which nanoseconds in 64 bits cover", t)
			}
			return Datum{Class: Timestamp, Int: (us + pgEpoch*1_000_000) * 1000}, nil
		}), nil
	case class == Date && oid == oidDate:
		return fixed(4, func(raw []byte) (Datum, error) {
			d := int32(be.Uint32(raw))
			if d == math.MaxInt32 || d == math.MinInt32 {
				return Datum{}, errors.New("date is infinity, which has no day number")
			}
			return Datum{Class: Date, Int: int64(d) + pgEpoch/86400}, nil
		}), nil
	case class == Time && oid == oidTime:
		return fixed(8, func(raw []byte) (Datum, error) { return Datum{Class: Time, Int: int64(be.Uint64(raw)) * 1000}, nil }), nil
	}
	return nil, fmt.Errorf("internal: no binary decoder for class %s and type OID %d", class, oid)
}
