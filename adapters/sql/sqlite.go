package sql

import (
	"context"
	dbsql "database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	sqlitedrv "modernc.org/sqlite" // also registers the "sqlite" driver
)

// sqlite is SQLite through modernc.org/sqlite (no cgo). The DSN is a file path; the file
// must exist (reconcile does not create databases).
type sqlite struct{}

func (sqlite) connect(path string) (*dbsql.DB, error) {
	if _, err := os.Stat(path); err != nil {
		msg := fmt.Sprintf("sqlite database %s: %v (create the database and its table first)", path, err)
		if errors.Is(err, os.ErrNotExist) {
			return nil, &noTable{msg}
		}
		return nil, errors.New(msg)
	}
	// Write transactions take the write lock at BEGIN, so that the conditional checks in
	// Apply read what the writes will replace.
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_txlock", "immediate")
	return dbsql.Open("sqlite", "file:"+path+"?"+q.Encode())
}

func (sqlite) quote(name string) string {
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

func (sqlite) param(int, *Column) string { return "?" }

func (s sqlite) columns(ctx context.Context, db *dbsql.DB, table string) ([]Column, error) {
	// table_xinfo, unlike table_info, lists generated columns (hidden 2: virtual, 3:
	// stored); hidden 1 is a virtual table's hidden column.
	rows, err := db.QueryContext(ctx, `SELECT name, type, "notnull" = 0, hidden IN (2, 3) FROM pragma_table_xinfo(?) WHERE hidden <> 1 ORDER BY cid`, table)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var cols []Column
	for rows.Next() {
		var c Column
		if err := rows.Scan(&c.Name, &c.Type, &c.Nullable, &c.Generated); err != nil {
			return nil, err
		}
		c.Class = sqliteClass(c.Type)
		base, _, _ := strings.Cut(strings.ToUpper(c.Type), "(")
		switch strings.TrimSpace(base) {
		case "CHAR", "CHARACTER", "NCHAR":
			c.Fixed = true // as PostgreSQL and MySQL read char(n): no trailing spaces
		}
		cols = append(cols, c)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(cols) == 0 {
		return nil, &noTable{fmt.Sprintf("table %s not found in the SQLite database", table)}
	}
	return cols, nil
}

// sqliteClass maps a declared type by name first (the names that mean a class beyond
// SQLite's affinities), then by SQLite's affinity rules.
func sqliteClass(declared string) Class {
	t := strings.ToUpper(strings.TrimSpace(declared))
	base, _, _ := strings.Cut(t, "(")
	switch strings.TrimSpace(base) {
	case "BOOLEAN", "BOOL":
		return Bool
	case "DATE":
		return Date
	case "DATETIME", "TIMESTAMP":
		return Timestamp
	case "TIME":
		return Time
	case "JSON", "JSONB", sqliteJSON:
		return JSON
	case "DECIMAL", "NUMERIC", sqliteDecimal:
		return Decimal
	case "FLOAT", "DOUBLE", "REAL", "DOUBLE PRECISION":
		return Float
	case "ANY":
		// A STRICT table's ANY column keeps whatever it is given, as an untyped one does
		// (elsewhere ANY has NUMERIC affinity, which leaves blobs and other text alone
		// and reads back the same).
		return Bytes
	}
	switch {
	case strings.Contains(t, "INT"):
		return Int
	case strings.Contains(t, "CHAR"), strings.Contains(t, "CLOB"), strings.Contains(t, "TEXT"):
		return Text
	case strings.Contains(t, "BLOB"), t == "":
		return Bytes
	case strings.Contains(t, "REAL"), strings.Contains(t, "FLOA"), strings.Contains(t, "DOUB"):
		return Float
	}
	return 0 // NUMERIC affinity with no clearer name: unsupported
}

func (sqlite) uniqueKeys(ctx context.Context, db *dbsql.DB, table string) ([][]string, error) {
	var out [][]string
	// The primary key (an INTEGER PRIMARY KEY is the rowid and has no index of its own).
	rows, err := db.QueryContext(ctx, `SELECT name FROM pragma_table_info(?) WHERE pk > 0 ORDER BY pk`, table)
	if err != nil {
		return nil, err
	}
	var pk []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return nil, err
		}
		pk = append(pk, n)
	}
	rows.Close()
	if len(pk) > 0 {
		out = append(out, pk)
	}
	rows, err = db.QueryContext(ctx, `
		SELECT il.name, ii.name FROM pragma_index_list(?) il, pragma_index_info(il.name) ii
		WHERE il."unique" AND NOT il.partial ORDER BY il.name, ii.seqno`, table)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	more, err := collectKeys(rows)
	return append(out, more...), err
}

// beginRead starts a read transaction. SQLite in WAL mode keeps a snapshot while writers
// go on, so the transaction stays open for the session. In rollback-journal mode an open
// read transaction would block every writer, including this session's own Apply, so the
// snapshot reads the table and ends the transaction (keep is false); see Table.Open.
func (sqlite) beginRead(ctx context.Context, db *dbsql.DB) (*dbsql.Tx, bool, error) {
	_, wal, err := sqliteJournal(ctx, db)
	if err != nil {
		return nil, false, err
	}
	// _txlock=immediate applies to every BeginTx; a read-only transaction is deferred.
	tx, err := db.BeginTx(ctx, &dbsql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, false, err
	}
	return tx, wal, nil
}

// sqliteJournal is a SQLite database's journal mode, and whether it is WAL (the only one
// in which a read transaction keeps its snapshot beside writers).
func sqliteJournal(ctx context.Context, db *dbsql.DB) (mode string, wal bool, err error) {
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return "", false, err
	}
	return mode, strings.EqualFold(mode, "wal"), nil
}

func (sqlite) beginWrite(ctx context.Context, db *dbsql.DB) (*dbsql.Tx, error) {
	return db.BeginTx(ctx, nil)
}

func (sqlite) forUpdate() string { return "" }

func (sqlite) insertNew(table string, cols, params []string) string {
	return "INSERT INTO " + table + " (" + strings.Join(cols, ", ") + ") VALUES (" + strings.Join(params, ", ") + ") ON CONFLICT DO NOTHING"
}

func (sqlite) insertMany(table string, cols, rows []string) string {
	return "INSERT INTO " + table + " (" + strings.Join(cols, ", ") + ") VALUES " + strings.Join(rows, ", ") + " ON CONFLICT DO NOTHING"
}

func (sqlite) updateFromValues() bool { return true }

func (sqlite) arg(d Datum, c *Column) any {
	switch d.Class {
	case Bool:
		return d.Int
	case Timestamp:
		return timestampText(d)
	case Date:
		return dateText(d)
	}
	return genericArg(d)
}

func (sqlite) dbErr(err error) error { return err }

// denied: SQLITE_READONLY and its extended codes (a read-only file or open).
func (sqlite) denied(err error) bool {
	var se *sqlitedrv.Error
	return errors.As(err, &se) && se.Code()&0xff == 8
}
