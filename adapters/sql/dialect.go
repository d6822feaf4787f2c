package sql

import (
	"context"
	dbsql "database/sql"
	"fmt"
	"strings"
	"time"
)

// dialect is what differs between engines: connecting, the catalog, quoting, transactions
// and the spelling of a few statements.
type dialect interface {
	// connect opens the database handle.
	connect(dsn string) (*dbsql.DB, error)
	// quote quotes one identifier.
	quote(name string) string
	// param is the placeholder of the i-th (1-based) argument, bound to column c.
	param(i int, c *Column) string
	// columns reads the table's columns in catalog order; a missing table is an error
	// that says so.
	columns(ctx context.Context, db *dbsql.DB, table string) ([]Column, error)
	// uniqueKeys returns the column sets of the table's primary key and unique
	// constraints (NULL-free ones only where the engine says so).
	uniqueKeys(ctx context.Context, db *dbsql.DB, table string) ([][]string, error)
	// beginRead starts a consistent read-only snapshot; keep reports whether the
	// transaction may stay open for the session (see sqlite).
	beginRead(ctx context.Context, db *dbsql.DB) (tx *dbsql.Tx, keep bool, err error)
	// beginWrite starts a write transaction.
	beginWrite(ctx context.Context, db *dbsql.DB) (*dbsql.Tx, error)
	// forUpdate is the suffix that locks the rows a SELECT reads ("" where the write
	// transaction already locks the database).
	forUpdate() string
	// insertNew is an INSERT that does nothing (affecting no row) when the key exists.
	insertNew(table string, cols, params []string) string
	// insertMany is an INSERT of several rows (each "(params)") that inserts none of a
	// row whose key exists: it affects fewer rows than it has (PostgreSQL, SQLite), or
	// fails (MySQL, where a no-op ON DUPLICATE KEY UPDATE would not say which).
	insertMany(table string, cols, rows []string) string
	// updateFromValues reports whether the engine runs UPDATE … FROM (VALUES …) AS v,
	// naming the list's columns column1, column2, … (PostgreSQL, SQLite; not MySQL).
	updateFromValues() bool
	// arg converts a datum into a driver argument for column c.
	arg(d Datum, c *Column) any
	// dbErr rewrites driver errors into messages that say what to do.
	dbErr(err error) error
	// denied reports whether err says this user or connection may not write (a
	// privilege missing, a read-only transaction, server or database).
	denied(err error) bool
}

func dialectFor(name string) (dialect, error) {
	switch name {
	case "postgres":
		return postgres{}, nil
	case "mysql":
		return mysql{}, nil
	case "sqlite":
		return sqlite{}, nil
	}
	return nil, fmt.Errorf("unknown SQL dialect %q", name)
}

// splitTable splits "schema.table" (no quoting supported; names with dots are refused).
func splitTable(t string) (schema, name string, err error) {
	parts := strings.Split(t, ".")
	switch len(parts) {
	case 1:
		return "", parts[0], nil
	case 2:
		if parts[0] != "" && parts[1] != "" {
			return parts[0], parts[1], nil
		}
	}
	return "", "", fmt.Errorf("table %q: want NAME or SCHEMA.NAME", t)
}

// quoteTable quotes a possibly schema-qualified table name.
func quoteTable(d dialect, t string) string {
	schema, name, _ := splitTable(t)
	if schema == "" {
		return d.quote(name)
	}
	return d.quote(schema) + "." + d.quote(name)
}

// genericArg converts a datum into the Go value most drivers take.
func genericArg(d Datum) any {
	switch d.Class {
	case Null:
		return nil
	case Int:
		return d.Int
	case Bool:
		return d.Int == 1
	case Float:
		return d.Float
	case Decimal, Text, JSON, Native:
		return d.Str
	case Bytes:
		if d.Bytes == nil {
			return []byte{}
		}
		return d.Bytes
	case Timestamp:
		if d.Infinite() != 0 {
			return timestampText(d)
		}
		return d.Time()
	case Date:
		if d.Infinite() != 0 {
			return dateText(d)
		}
		return time.Unix(d.Int*86400, 0).UTC()
	case Time:
		return formatTimeOfDay(d.Int)
	}
	return nil
}

// rawReader is a dialect that reads a whole table faster through its own driver than
// through database/sql (postgres: wire bytes decoded straight into datums, no driver
// values). A scan snapshot's transaction then runs on a connection of its own.
type rawReader interface {
	// beginReadConn is beginRead (keep is true) on a connection the caller closes after
	// the transaction ends.
	beginReadConn(ctx context.Context, db *dbsql.DB) (*dbsql.Conn, *dbsql.Tx, error)
	// readRaw runs query, whose columns are cols, on conn (inside its transaction) and
	// sends its rows in batches until send returns false.
	readRaw(ctx context.Context, conn *dbsql.Conn, query string, cols []*Column, send func(rowBatch) bool) error
}
