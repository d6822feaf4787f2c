package sql

import (
	"context"
	dbsql "database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"

	driver "github.com/go-sql-driver/mysql"
)

// mysql is MySQL and MariaDB through go-sql-driver/mysql. Connections run with
// time_zone '+00:00' and strict mode (see ParseURL).
type mysql struct{}

func (mysql) connect(dsn string) (*dbsql.DB, error) { return dbsql.Open("mysql", dsn) }

func (mysql) quote(name string) string {
	return "`" + strings.ReplaceAll(name, "`", "``") + "`"
}

func (mysql) param(int, *Column) string { return "?" }

// schemaOf returns the schema part for information_schema queries: the given one or the
// connection's database.
func schemaOf(table string) (schema, name string) {
	schema, name, _ = splitTable(table)
	return schema, name
}

func (m mysql) columns(ctx context.Context, db *dbsql.DB, table string) ([]Column, error) {
	schema, name := schemaOf(table)
	rows, err := db.QueryContext(ctx, `
		SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE = 'YES',
			EXTRA LIKE '%VIRTUAL GENERATED%' OR EXTRA LIKE '%STORED GENERATED%' OR EXTRA LIKE '%PERSISTENT GENERATED%'
		FROM information_schema.COLUMNS
		WHERE TABLE_SCHEMA = COALESCE(NULLIF(?, ''), DATABASE()) AND TABLE_NAME = ?
		ORDER BY ORDINAL_POSITION`, schema, name)
	if err != nil {
		return nil, m.dbErr(err)
	}
	defer rows.Close()
	var cols []Column
	for rows.Next() {
		var c Column
		var dataType string
		if err := rows.Scan(&c.Name, &dataType, &c.Type, &c.Nullable, &c.Generated); err != nil {
			return nil, err
		}
		ct := strings.ToLower(c.Type)
		unsigned := strings.Contains(ct, "unsigned")
		switch strings.ToLower(dataType) {
		case "tinyint":
			if strings.HasPrefix(ct, "tinyint(1)") && !unsigned {
				c.Class = Bool
			} else {
				c.Class = Int
			}
		case "smallint", "mediumint", "int", "integer", "year":
			c.Class = Int
		case "bigint":
			c.Class = Int
			if unsigned {
				c.Class = Decimal // above 2^63 it is no int64
			}
		case "decimal", "numeric":
			c.Class = Decimal
		case "float":
			c.Class, c.Float32 = Float, true
		case "double", "real":
			c.Class = Float
		case "char":
			c.Class, c.Fixed = Text, true
		case "varchar", "tinytext", "text", "mediumtext", "longtext", "enum", "set", "uuid":
			c.Class = Text
		case "binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob":
			c.Class = Bytes
		case "datetime", "timestamp":
			c.Class = Timestamp
		case "date":
			c.Class = Date
		case "time":
			c.Class = Time
		case "json":
			c.Class = JSON
		case "bit": // bit(1) is how Hibernate and others store booleans
			if n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(ct, "bit("), ")")); err == nil && n < 64 {
				c.Class, c.Bits = Int, true
				if n == 1 {
					c.Class = Bool
				}
			}
		}
		cols = append(cols, c)
	}
	if err := rows.Err(); err != nil {
		return nil, m.dbErr(err)
	}
	if len(cols) == 0 {
		return nil, &noTable{fmt.Sprintf("table %s not found: check the name and the database in the URL", table)}
	}
	// MariaDB's JSON is LONGTEXT with a json_valid check: treat those columns as JSON.
	checks, err := db.QueryContext(ctx, `
		SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS
		WHERE CONSTRAINT_SCHEMA = COALESCE(NULLIF(?, ''), DATABASE()) AND TABLE_NAME = ?`, schema, name)
	if err == nil {
		defer checks.Close()
		for checks.Next() {
			var clause string
			if checks.Scan(&clause) != nil {
				continue
			}
			for i := range cols {
				if cols[i].Class == Text && strings.EqualFold(strings.ReplaceAll(clause, " ", ""), "json_valid(`"+cols[i].Name+"`)") {
					cols[i].Class = JSON
				}
			}
		}
	}
	return cols, nil
}

func (m mysql) uniqueKeys(ctx context.Context, db *dbsql.DB, table string) ([][]string, error) {
	schema, name := schemaOf(table)
	rows, err := db.QueryContext(ctx, `
		SELECT INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS
		WHERE TABLE_SCHEMA = COALESCE(NULLIF(?, ''), DATABASE()) AND TABLE_NAME = ? AND NON_UNIQUE = 0
		ORDER BY INDEX_NAME, SEQ_IN_INDEX`, schema, name)
	if err != nil {
		return nil, m.dbErr(err)
	}
	defer rows.Close()
	return collectKeys(rows)
}

func (m mysql) beginRead(ctx context.Context, db *dbsql.DB) (*dbsql.Tx, bool, error) {
	tx, err := db.BeginTx(ctx, &dbsql.TxOptions{Isolation: dbsql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		return nil, false, m.dbErr(err)
	}
	return tx, true, nil
}

func (m mysql) beginWrite(ctx context.Context, db *dbsql.DB) (*dbsql.Tx, error) {
	tx, err := db.BeginTx(ctx, nil)
	return tx, m.dbErr(err)
}

func (mysql) forUpdate() string { return " FOR UPDATE" }

// insertNew uses a no-op ON DUPLICATE KEY UPDATE rather than INSERT IGNORE, which would
// also turn data errors into warnings.
func (m mysql) insertNew(table string, cols, params []string) string {
	return "INSERT INTO " + table + " (" + strings.Join(cols, ", ") + ") VALUES (" + strings.Join(params, ", ") +
		") ON DUPLICATE KEY UPDATE " + cols[0] + " = " + cols[0]
}

func (m mysql) insertMany(table string, cols, rows []string) string {
	return "INSERT INTO " + table + " (" + strings.Join(cols, ", ") + ") VALUES " + strings.Join(rows, ", ")
}

func (mysql) updateFromValues() bool { return false }

func (mysql) arg(d Datum, c *Column) any {
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

// denied: a privilege missing (isAccessDenied), --read-only (1290), a read-only
// transaction (1792).
func (mysql) denied(err error) bool {
	var me *driver.MySQLError
	return isAccessDenied(err) || errors.As(err, &me) && (me.Number == 1290 || me.Number == 1792)
}

// isAccessDenied reports a MySQL/MariaDB "access denied; you need the ... privilege" for
// an operation (1227) or a table (1142).
func isAccessDenied(err error) bool {
	var me *driver.MySQLError
	return errors.As(err, &me) && (me.Number == 1227 || me.Number == 1142)
}

func (mysql) dbErr(err error) error {
	var me *driver.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case 1045:
			return fmt.Errorf("mysql refused the login (%s): check the user and password in the URL", me.Message)
		case 1049:
			return fmt.Errorf("mysql: %s: check the database name in the URL", me.Message)
		}
		if strings.Contains(me.Message, "max_allowed_packet") {
			return fmt.Errorf("%w: %s", err, maxPacketHint)
		}
		if me.Number == 1292 && strings.Contains(me.Message, "infinity'") {
			return fmt.Errorf("%w: MySQL and MariaDB have no infinite timestamps or dates; change the source row (to NULL or a date such as '9999-12-31'), or leave the column out of the sync with columns=", err)
		}
	}
	if errors.Is(err, driver.ErrPktTooLarge) {
		return fmt.Errorf("%w: %s", err, maxPacketHint)
	}
	return err
}

// maxPacketHint follows an error about a row over the server's max_allowed_packet.
const maxPacketHint = "the row is larger than the server's max_allowed_packet; raise it on the server (SET GLOBAL max_allowed_packet = 1073741824, and in its config file) and run the sync again"
