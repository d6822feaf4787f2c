package sql

import (
	"context"
	dbsql "database/sql"
	"errors"
	"fmt"
	"os"
	"strings"
)

// ErrNoTable is what Open's error wraps when the table does not exist (for SQLite, also
// when the database file does not): CreateTable can make it.
var ErrNoTable = errors.New("no such table")

// noTable is an Open error that errors.Is ErrNoTable and keeps its own message.
type noTable struct{ msg string }

func (e *noTable) Error() string        { return e.msg }
func (e *noTable) Is(target error) bool { return target == ErrNoTable }

// CreateTable creates cfg's table to receive the rows of like: like's key columns (the
// primary key), version, expiry and value columns. Where both are one engine each column
// keeps like's own type; across engines it takes the type of cfg's engine that holds its
// class (docs/sql.md lists them), so that the rows read back as they were written. A
// SQLite database file is created if missing. A column that cfg's engine has no type for
// (a PostgreSQL array into MySQL) is an error that names it, and nothing is created.
func CreateTable(ctx context.Context, cfg Config, like *Table) error {
	d, err := dialectFor(cfg.Dialect)
	if err != nil {
		return err
	}
	if err := CheckCreate(cfg, like); err != nil {
		return err
	}
	if _, _, err := splitTable(cfg.Table); err != nil {
		return err
	}
	same := cfg.Dialect == like.cfg.Dialect
	var textKeys int
	for _, c := range like.keyCols {
		if c.Class == Text || c.Class == Bytes {
			textKeys++
		}
	}
	var defs, keys []string
	var bad []*Column // columns cfg's engine has no type for: every one is named at once
	var firstErr error
	for i, c := range like.allCols() {
		key := i < len(like.keyCols)
		typ := c.Type
		if !same || typ == "" && key {
			var err error
			if typ, err = columnType(cfg.Dialect, c, key, textKeys); err != nil {
				bad = append(bad, c)
				if firstErr == nil {
					firstErr = err
				}
				continue
			}
		}
		def := d.quote(c.Name) + " " + typ
		if key || !c.Nullable {
			def += " NOT NULL"
		}
		defs = append(defs, def)
		if key {
			keys = append(keys, d.quote(c.Name))
		}
	}
	switch {
	case len(bad) == 1:
		return fmt.Errorf("create %s like %s: %v", cfg.Table, like.cfg.Table, firstErr)
	case len(bad) > 1:
		var names []string
		for _, c := range bad {
			names = append(names, c.Name+" ("+c.Type+")")
		}
		return fmt.Errorf("create %s like %s: columns %s are PostgreSQL types %s has no type for: leave them out with columns= on both sides",
			cfg.Table, like.cfg.Table, strings.Join(names, ", "), engineNames[cfg.Dialect])
	}
	ddl := "CREATE TABLE " + quoteTable(d, cfg.Table) + " (" + strings.Join(defs, ", ") + ", PRIMARY KEY (" + strings.Join(keys, ", ") + "))"
	newFile := false
	if cfg.Dialect == "sqlite" {
		if _, err := os.Stat(cfg.DSN); errors.Is(err, os.ErrNotExist) {
			f, err := os.OpenFile(cfg.DSN, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
			if err != nil {
				return fmt.Errorf("create sqlite database %s: %v", cfg.DSN, err)
			}
			f.Close()
			newFile = true
		}
	}
	db, err := d.connect(cfg.DSN)
	if err == nil && cfg.Dialect == "mysql" {
		// A byte-ordered collation that also tells 'abc' from 'abc ' (utf8mb4_bin pads
		// with spaces when it compares, so a key with trailing spaces would collide with
		// the one without): MariaDB's utf8mb4_nopad_bin, MySQL 8's utf8mb4_0900_bin.
		var nopad string
		if db.QueryRowContext(ctx, "SELECT COLLATION_NAME FROM information_schema.COLLATIONS WHERE COLLATION_NAME IN ('utf8mb4_nopad_bin', 'utf8mb4_0900_bin') ORDER BY COLLATION_NAME DESC LIMIT 1").Scan(&nopad) == nil {
			ddl = strings.ReplaceAll(ddl, "COLLATE "+myBinCollation, "COLLATE "+nopad)
		}
	}
	if err == nil {
		_, err = db.ExecContext(ctx, ddl)
		if err != nil {
			err = fmt.Errorf("create %s: %v", cfg.Table, d.dbErr(err))
		} else {
			dropOrphanIndex(ctx, db, d, cfg)
		}
		db.Close()
	}
	if err != nil && newFile {
		os.Remove(cfg.DSN) // leave no empty database behind
	}
	return err
}

// CheckCreate says, before anything is made, why a table CreateTable(cfg, like) made
// could not then be synced from like: it takes like's columns, so cfg must name like's
// version column as its own (and none where like has none), or the two would be in
// different orderings and every session between them refused.
func CheckCreate(cfg Config, like *Table) error {
	src := like.cfg.Version
	switch {
	case cfg.Version == src:
		return nil
	case cfg.Version == "":
		return fmt.Errorf("table %s would be made with the source's columns, and the source is in version order (&version=%s): add &version=%s to this URL too, so that the copy keeps the source's versions (without it the copy would be in key order, and both sides must use the same ordering)", cfg.Table, src, src)
	case src == "":
		return fmt.Errorf("table %s would be made with the source's columns, and the source is in key order (its URL names no version=): leave &version=%s out of this URL, or name the source's version column in its URL", cfg.Table, cfg.Version)
	}
	return fmt.Errorf("table %s would be made with the source's columns, whose version column is %s: write &version=%s in this URL, not &version=%s", cfg.Table, src, src, cfg.Version)
}

// dropOrphanIndex drops what a maintained index of an earlier table of cfg's name left
// (its tables and, in PostgreSQL, functions; the triggers went with that table): the new
// table would otherwise open as one whose index is stale. Best effort: a failure shows as
// that stale index, with its own message.
func dropOrphanIndex(ctx context.Context, db *dbsql.DB, d dialect, cfg Config) {
	old := &Table{cfg: cfg, d: d, name: quoteTable(d, cfg.Table)}
	for _, s := range old.dropIndexDDL(old.indexNames()) {
		if !strings.HasPrefix(s, "DROP TRIGGER") {
			db.ExecContext(ctx, s)
		}
	}
}

// DropTable drops cfg's table. It is for a table CreateTable made for a sync that then
// failed: removed again, it does not stand as a copy, nor refuse a corrected retry with
// the columns it was made with.
func DropTable(ctx context.Context, cfg Config) error {
	d, err := dialectFor(cfg.Dialect)
	if err != nil {
		return err
	}
	db, err := d.connect(cfg.DSN)
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "DROP TABLE "+quoteTable(d, cfg.Table)); err != nil {
		return fmt.Errorf("drop %s: %v", cfg.Table, d.dbErr(err))
	}
	return nil
}

// columnType is the type of engine dialect that holds column c's class (c being another
// engine's): the widest exact one, with a byte-ordered collation for MySQL text, and
// key-sized text and bytes for MySQL keys, whose index holds at most 3072 bytes.
func columnType(dialect string, c *Column, key bool, textKeys int) (string, error) {
	pick := func(pg, my, lite string) string {
		switch dialect {
		case "postgres":
			return pg
		case "mysql":
			return my
		}
		return lite
	}
	switch c.Class {
	case Int:
		return "bigint", nil
	case Decimal:
		if ps := decimalArgs(c.Type); ps != "" {
			return pick("numeric"+ps, "decimal"+ps, sqliteDecimal+ps), nil
		}
		return pick("numeric", "decimal(65,30)", sqliteDecimal), nil
	case Float:
		if c.Float32 {
			return pick("real", "float", "REAL"), nil
		}
		return pick("double precision", "double", "REAL"), nil
	case Text:
		if key {
			return pick("text", fmt.Sprintf("varchar(%d) CHARACTER SET utf8mb4 COLLATE %s", 740/textKeys, myBinCollation), "TEXT"), nil
		}
		return pick("text", "longtext CHARACTER SET utf8mb4 COLLATE "+myBinCollation, "TEXT"), nil
	case Bytes:
		if key {
			return pick("bytea", fmt.Sprintf("varbinary(%d)", 2960/textKeys), "BLOB"), nil
		}
		return pick("bytea", "longblob", "BLOB"), nil
	case Bool:
		return pick("boolean", "boolean", "BOOLEAN"), nil
	case Timestamp:
		return pick("timestamptz", "datetime(6)", "TIMESTAMP"), nil
	case Date:
		return "date", nil
	case Time:
		return pick("time", "time(6)", "TIME"), nil
	case JSON:
		return pick("jsonb", "json", sqliteJSON), nil
	}
	return "", fmt.Errorf("column %s is PostgreSQL's %s, which %s has no type for: leave it out with columns= on both sides", c.Name, c.Type, engineNames[dialect])
}

// sqliteDecimal and sqliteJSON are the SQLite types a created table's decimal and JSON
// columns get: reconcile reads them as decimal and JSON (sqliteClass), and the "TEXT" in
// the name gives them text affinity, so SQLite keeps what is written, digit for digit.
// Under DECIMAL's or JSON's numeric affinity it turns text that looks like a number into
// a 64-bit float or integer (1.10 into 1.1, 12345678901234567890123 into 1.2e22, the JSON
// text 1e2 into 100.0).
const (
	// myBinCollation is MySQL's byte-ordered collation, which CreateTable replaces with
	// its no-pad variant where the server has one.
	myBinCollation = "utf8mb4_bin"
	sqliteDecimal  = "DECIMAL_TEXT"
	sqliteJSON     = "JSON_TEXT"
)

var engineNames = map[string]string{"postgres": "PostgreSQL", "mysql": "MySQL", "sqlite": "SQLite"}

// decimalArgs returns the "(p,s)" of a decimal type such as numeric(12,2), or "".
func decimalArgs(typ string) string {
	_, rest, ok := strings.Cut(typ, "(")
	args, _, closed := strings.Cut(rest, ")")
	if !ok || !closed {
		return ""
	}
	return "(" + strings.ReplaceAll(args, " ", "") + ")"
}
