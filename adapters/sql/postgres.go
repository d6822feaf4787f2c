package sql

import (
	"context"
	dbsql "database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// postgres is PostgreSQL through pgx.
type postgres struct{}

// pgSession fixes the session settings PostgreSQL's text output depends on, so that a
// Native column's text (an array of timestamps, an interval, a float array) is the same
// whatever the server's defaults or the URL's parameters. Timestamps, floats and bytes
// of the other classes are read in binary and are unaffected.
var pgSession = map[string]string{
	"DateStyle": "ISO, MDY", "IntervalStyle": "postgres", "TimeZone": "UTC", "extra_float_digits": "3", "bytea_output": "hex", "lc_monetary": "C",
}

func (postgres) connect(dsn string) (*dbsql.DB, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: %v", err) // pgx leaves any password out
	}
	for k := range cfg.RuntimeParams {
		for name := range pgSession {
			if strings.EqualFold(k, name) {
				delete(cfg.RuntimeParams, k)
			}
		}
	}
	for k, v := range pgSession {
		cfg.RuntimeParams[k] = v
	}
	return stdlib.OpenDB(*cfg), nil
}

func (postgres) quote(name string) string {
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

// param casts every argument to the column's own type, so that text renderings (numeric,
// time, enums, json) are parsed by the server.
func (postgres) param(i int, c *Column) string {
	return "$" + strconv.Itoa(i) + "::" + c.Type
}

func (p postgres) columns(ctx context.Context, db *dbsql.DB, table string) ([]Column, error) {
	rows, err := db.QueryContext(ctx, `
		SELECT a.attname, format_type(a.atttypid, a.atttypmod), t.typname, t.typtype, NOT a.attnotnull, a.attgenerated <> '',
			CASE WHEN t.typname IN ('int2', 'int4', 'int8') THEN pg_get_serial_sequence(to_regclass($1)::text, a.attname) END
		FROM pg_attribute a JOIN pg_type d ON d.oid = a.atttypid
		JOIN pg_type t ON t.oid = CASE WHEN d.typtype = 'd' THEN d.typbasetype ELSE d.oid END -- a domain is its base type
		WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
		ORDER BY a.attnum`, p.regclass(table))
	if err != nil {
		return nil, p.dbErr(err)
	}
	defer rows.Close()
	var cols []Column
	for rows.Next() {
		var c Column
		var typname, typtype string
		var seq dbsql.NullString
		if err := rows.Scan(&c.Name, &c.Type, &typname, &typtype, &c.Nullable, &c.Generated, &seq); err != nil {
			return nil, err
		}
		c.Sequence = seq.String
		switch typname {
		case "int2", "int4", "int8", "oid":
			c.Class = Int
		case "numeric":
			c.Class = Decimal
		case "float4":
			c.Class, c.Float32 = Float, true
		case "float8":
			c.Class = Float
		case "text", "varchar", "name", "citext", "uuid":
			c.Class = Text
		case "bpchar":
			c.Class, c.Fixed = Text, true
		case "bytea":
			c.Class = Bytes
		case "bool":
			c.Class = Bool
		case "timestamp", "timestamptz":
			c.Class = Timestamp
		case "date":
			c.Class = Date
		case "time":
			c.Class = Time
		case "json", "jsonb":
			c.Class = JSON
		default:
			switch typtype {
			case "e": // enum
				c.Class = Text
			case "b", "r", "m", "c": // base (arrays too), range, multirange, composite
				c.Class, c.NativeType = Native, typname
			}
		}
		cols = append(cols, c)
	}
	if err := rows.Err(); err != nil {
		return nil, p.dbErr(err)
	}
	if len(cols) == 0 {
		return nil, &noTable{fmt.Sprintf("table %s not found (or it has no columns): check the name, the schema and search_path", table)}
	}
	return cols, nil
}

// regclass spells a table for to_regclass: each part quoted, so that case is kept.
func (p postgres) regclass(table string) string {
	return quoteTable(p, table)
}

func (p postgres) uniqueKeys(ctx context.Context, db *dbsql.DB, table string) ([][]string, error) {
	rows, err := db.QueryContext(ctx, `
		SELECT i.indexrelid, a.attname
		FROM pg_index i
		JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) ON true
		JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
		WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL
		ORDER BY i.indexrelid, k.n`, p.regclass(table))
	if err != nil {
		return nil, p.dbErr(err)
	}
	defer rows.Close()
	return collectKeys(rows)
}

// collectKeys groups (index id, column) rows into column sets.
func collectKeys(rows *dbsql.Rows) ([][]string, error) {
	var out [][]string
	var last string
	for rows.Next() {
		var id, col string
		if err := rows.Scan(&id, &col); err != nil {
			return nil, err
		}
		if len(out) == 0 || id != last {
			out = append(out, nil)
			last = id
		}
		out[len(out)-1] = append(out[len(out)-1], col)
	}
	return out, rows.Err()
}

func (p postgres) beginRead(ctx context.Context, db *dbsql.DB) (*dbsql.Tx, bool, error) {
	tx, err := db.BeginTx(ctx, &dbsql.TxOptions{Isolation: dbsql.LevelRepeatableRead, ReadOnly: true})
	return tx, true, p.dbErr(err)
}

func (p postgres) beginWrite(ctx context.Context, db *dbsql.DB) (*dbsql.Tx, error) {
	tx, err := db.BeginTx(ctx, nil)
	return tx, p.dbErr(err)
}

func (postgres) forUpdate() string { return " FOR UPDATE" }

// insertNew writes identity columns too (OVERRIDING SYSTEM VALUE: an id GENERATED ALWAYS
// AS IDENTITY takes the source's id, as a replica must; Table.advanceSequences then moves
// the column's sequence past it).
func (p postgres) insertNew(table string, cols, params []string) string {
	return "INSERT INTO " + table + " (" + strings.Join(cols, ", ") + ") OVERRIDING SYSTEM VALUE VALUES (" + strings.Join(params, ", ") + ") ON CONFLICT DO NOTHING"
}

func (p postgres) insertMany(table string, cols, rows []string) string {
	return "INSERT INTO " + table + " (" + strings.Join(cols, ", ") + ") OVERRIDING SYSTEM VALUE VALUES " + strings.Join(rows, ", ") + " ON CONFLICT DO NOTHING"
}

func (postgres) updateFromValues() bool { return true }

// pgAdvanceSequence moves sequence $1 so that its next value follows $2, when $2 is
// beyond what it would give next; never backwards, never past its bounds, and only where
// the user may read and update it (else the sequence is left as it is: a sync does not
// fail over it). CASE keeps the privilege checks before pg_sequence_last_value, which
// would raise an error without them.
const pgAdvanceSequence = `
	SELECT CASE WHEN has_sequence_privilege(q.seqrelid, 'UPDATE') AND has_sequence_privilege(q.seqrelid, 'SELECT, USAGE') THEN
		CASE WHEN $2::bigint > COALESCE(pg_sequence_last_value(q.seqrelid), q.seqstart - 1) THEN setval(q.seqrelid, $2::bigint) END END
	FROM pg_sequence q
	WHERE q.seqrelid = to_regclass($1) AND q.seqincrement > 0 AND $2::bigint <= q.seqmax`

func (postgres) arg(d Datum, c *Column) any {
	switch d.Class {
	case Decimal:
		return d.Str
	case Float:
		// Text keeps NaN and infinities, which the float8 binary path also takes; the
		// cast in param parses it.
		return strconv.FormatFloat(d.Float, 'g', -1, 64)
	}
	return genericArg(d)
}

// denied: insufficient_privilege, read_only_sql_transaction (a hot standby, say).
func (postgres) denied(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "42501" || pe.Code == "25006")
}

func (postgres) dbErr(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "28000", "28P01":
			return fmt.Errorf("postgres refused the login (%s): check the user and password in the URL", pe.Message)
		case "3D000":
			return fmt.Errorf("postgres: %s: check the database name in the URL", pe.Message)
		}
	}
	return err
}
