package sql

import (
	"context"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/zeebo/blake3"
)

// The maintained index lives in four tables next to the indexed one, named
// rc_<10 hex digits of BLAKE3(table name)>_<role>:
//
//	_meta   one row: the schema and ordering it was built for, the table's identity, a
//	        stale flag (set by a TRUNCATE trigger), and the root digest (count, sum)
//	_log    the key of every row written since the last catch-up, filled by triggers
//	_ent    one entry per row: canonical key, position, entry hash, value hash, expiry
//	_chunk  the entries cut into content-defined chunks: first position, count, sum, and
//	        whether the chunk also starts a superchunk
//	_super  the chunks grouped into superchunks: first position, count, sum, and the
//	        start of the chunk before it
//
// and three triggers (insert, update, delete; PostgreSQL adds one for TRUNCATE).

// indexNames are the quoted names of the index's objects.
type indexNames struct {
	prefix                       string // unquoted rc_xxxxxxxxxx
	meta, log, ent, chunk, super string // quoted, schema-qualified like the table
	schema                       string // the table's schema, "" for none
}

func (t *Table) indexNames() indexNames {
	h := blake3.Sum256([]byte(t.cfg.Table))
	p := "rc_" + hex.EncodeToString(h[:5])
	schema, _, _ := splitTable(t.cfg.Table)
	q := func(role string) string {
		if schema == "" {
			return t.d.quote(p + "_" + role)
		}
		return t.d.quote(schema) + "." + t.d.quote(p+"_"+role)
	}
	return indexNames{prefix: p, meta: q("meta"), log: q("log"), ent: q("ent"), chunk: q("chunk"), super: q("super"), schema: schema}
}

// blobType is the type of byte columns; key is set for columns in a primary key or unique
// index (MySQL needs a length there: 3072 bytes is InnoDB's longest index key).
func (t *Table) blobType(key bool) string {
	switch t.cfg.Dialect {
	case "postgres":
		return "bytea"
	case "mysql":
		if key {
			return "varbinary(3072)"
		}
		return "varbinary(64)"
	}
	return "blob"
}

func (t *Table) serialType() string {
	switch t.cfg.Dialect {
	case "postgres":
		return "bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
	case "mysql":
		return "bigint AUTO_INCREMENT PRIMARY KEY"
	}
	return "integer PRIMARY KEY AUTOINCREMENT"
}

// createIndexDDL creates the index's tables and triggers.
func (t *Table) createIndexDDL(n indexNames) []string {
	blobK, blob := t.blobType(true), t.blobType(false)
	var logCols, newKey, oldKey, keyNames []string
	for _, c := range t.keyCols {
		logCols = append(logCols, t.d.quote(c.Name)+" "+c.Type)
		keyNames = append(keyNames, t.d.quote(c.Name))
		newKey = append(newKey, "NEW."+t.d.quote(c.Name))
		oldKey = append(oldKey, "OLD."+t.d.quote(c.Name))
	}
	insNew := "INSERT INTO " + n.log + " (" + strings.Join(keyNames, ", ") + ") VALUES (" + strings.Join(newKey, ", ") + ")"
	insOld := "INSERT INTO " + n.log + " (" + strings.Join(keyNames, ", ") + ") VALUES (" + strings.Join(oldKey, ", ") + ")"
	stmts := []string{
		"CREATE TABLE " + n.meta + " (id integer PRIMARY KEY, schema_fp " + textType(t.cfg.Dialect) + " NOT NULL, ident " + textType(t.cfg.Dialect) +
			" NOT NULL, stale integer NOT NULL, n bigint NOT NULL, s " + blob + " NOT NULL)",
		"CREATE TABLE " + n.log + " (seq " + t.serialType() + ", " + strings.Join(logCols, ", ") + ")",
		// Keyed by position: sessions read entries by position ranges, which InnoDB then
		// reads from its clustered index in order, not by one lookup per entry.
		"CREATE TABLE " + n.ent + " (pos " + blobK + " PRIMARY KEY, k " + blobK + " NOT NULL UNIQUE, h " + blob + " NOT NULL, vh " + blob + " NOT NULL, exp bigint NOT NULL)",
		"CREATE INDEX " + t.d.quote(n.prefix+"_ent_exp") + " ON " + n.ent + " (exp)",
		"CREATE TABLE " + n.chunk + " (lo " + blobK + " PRIMARY KEY, n bigint NOT NULL, s " + blob + " NOT NULL, sup integer NOT NULL)",
		"CREATE TABLE " + n.super + " (lo " + blobK + " PRIMARY KEY, n bigint NOT NULL, s " + blob + " NOT NULL, prev " + t.blobType(true) + ")",
	}
	trg := t.trigger
	switch t.cfg.Dialect {
	case "postgres":
		fn := n.prefix + "_fn"
		tfn := n.prefix + "_truncfn"
		if n.schema != "" {
			fn, tfn = t.d.quote(n.schema)+"."+t.d.quote(fn), t.d.quote(n.schema)+"."+t.d.quote(tfn)
		} else {
			fn, tfn = t.d.quote(fn), t.d.quote(tfn)
		}
		stmts = append(stmts,
			"CREATE FUNCTION "+fn+"() RETURNS trigger LANGUAGE plpgsql AS $rc$ BEGIN "+
				"IF TG_OP IN ('UPDATE', 'DELETE') THEN "+insOld+"; END IF; "+
				"IF TG_OP IN ('INSERT', 'UPDATE') THEN "+insNew+"; END IF; RETURN NULL; END $rc$",
			"CREATE FUNCTION "+tfn+"() RETURNS trigger LANGUAGE plpgsql AS $rc$ BEGIN "+
				"UPDATE "+n.meta+" SET stale = 1; RETURN NULL; END $rc$",
			"CREATE TRIGGER "+t.d.quote(n.prefix+"_trg")+" AFTER INSERT OR UPDATE OR DELETE ON "+t.name+" FOR EACH ROW EXECUTE FUNCTION "+fn+"()",
			"CREATE TRIGGER "+t.d.quote(n.prefix+"_trunc")+" AFTER TRUNCATE ON "+t.name+" FOR EACH STATEMENT EXECUTE FUNCTION "+tfn+"()",
			// Logical replication applies changes with triggers off unless ALWAYS.
			"ALTER TABLE "+t.name+" ENABLE ALWAYS TRIGGER "+t.d.quote(n.prefix+"_trg"),
			"ALTER TABLE "+t.name+" ENABLE ALWAYS TRIGGER "+t.d.quote(n.prefix+"_trunc"),
		)
	case "mysql":
		stmts = append(stmts,
			"CREATE TRIGGER "+trg("ins")+" AFTER INSERT ON "+t.name+" FOR EACH ROW "+insNew,
			"CREATE TRIGGER "+trg("upd")+" AFTER UPDATE ON "+t.name+" FOR EACH ROW BEGIN "+insOld+"; "+insNew+"; END",
			"CREATE TRIGGER "+trg("del")+" AFTER DELETE ON "+t.name+" FOR EACH ROW "+insOld,
		)
	case "sqlite":
		stmts = append(stmts,
			"CREATE TRIGGER "+trg("ins")+" AFTER INSERT ON "+t.name+" BEGIN "+insNew+"; END",
			"CREATE TRIGGER "+trg("upd")+" AFTER UPDATE ON "+t.name+" BEGIN "+insOld+"; "+insNew+"; END",
			"CREATE TRIGGER "+trg("del")+" AFTER DELETE ON "+t.name+" BEGIN "+insOld+"; END",
		)
	}
	return stmts
}

func textType(dialect string) string {
	if dialect == "mysql" {
		return "varchar(2000)"
	}
	return "text"
}

// dropIndexDDL removes everything createIndexDDL made (IF EXISTS: a half-made install
// is removed too).
func (t *Table) dropIndexDDL(n indexNames) []string {
	var stmts []string
	switch t.cfg.Dialect {
	case "postgres":
		stmts = append(stmts,
			"DROP TRIGGER IF EXISTS "+t.d.quote(n.prefix+"_trg")+" ON "+t.name,
			"DROP TRIGGER IF EXISTS "+t.d.quote(n.prefix+"_trunc")+" ON "+t.name)
		for _, f := range []string{"_fn", "_truncfn"} {
			name := t.d.quote(n.prefix + f)
			if n.schema != "" {
				name = t.d.quote(n.schema) + "." + name
			}
			stmts = append(stmts, "DROP FUNCTION IF EXISTS "+name+"()")
		}
	default:
		for _, role := range []string{"ins", "upd", "del"} {
			name := t.d.quote(n.prefix + "_" + role)
			if n.schema != "" {
				name = t.d.quote(n.schema) + "." + name
			}
			stmts = append(stmts, "DROP TRIGGER IF EXISTS "+name)
		}
	}
	for _, tb := range []string{n.log, n.ent, n.chunk, n.super, n.meta} {
		stmts = append(stmts, "DROP TABLE IF EXISTS "+tb)
	}
	return stmts
}

// IndexInstalled reports whether a maintained index is installed on the table (its meta
// table exists), stale or not.
func (t *Table) IndexInstalled(ctx context.Context) (bool, error) { return t.indexInstalled(ctx) }

// indexInstalled reports whether the index's meta table exists.
func (t *Table) indexInstalled(ctx context.Context) (bool, error) {
	n := t.indexNames()
	var q string
	var args []any
	switch t.cfg.Dialect {
	case "postgres":
		q, args = "SELECT to_regclass($1) IS NOT NULL", []any{n.meta}
	case "mysql":
		q = "SELECT COUNT(*) > 0 FROM information_schema.TABLES WHERE TABLE_SCHEMA = COALESCE(NULLIF(?, ''), DATABASE()) AND TABLE_NAME = ?"
		args = []any{n.schema, n.prefix + "_meta"}
	default:
		q, args = "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?", []any{n.prefix + "_meta"}
	}
	var ok bool
	if err := t.db.QueryRowContext(ctx, q, args...).Scan(&ok); err != nil {
		return false, t.d.dbErr(err)
	}
	return ok, nil
}

// trigger is the quoted name of the index's trigger for role (ins, upd, del) on MySQL and
// SQLite, qualified by the table's schema on MySQL where the table name has one.
func (t *Table) trigger(role string) string {
	n := t.indexNames()
	if n.schema == "" || t.cfg.Dialect != "mysql" {
		return t.d.quote(n.prefix + "_" + role)
	}
	return t.d.quote(n.schema) + "." + t.d.quote(n.prefix+"_"+role)
}

// triggersInstalled counts the index's triggers that are present (and, in PostgreSQL,
// enabled always) on the table: all of them must be, or writes go unlogged.
func (t *Table) triggersInstalled(ctx context.Context, q querier) (bool, error) {
	n := t.indexNames()
	var query string
	var args []any
	want := 3
	switch t.cfg.Dialect {
	case "postgres":
		query = "SELECT COUNT(*) FROM pg_trigger WHERE tgrelid = to_regclass($1) AND tgname IN ($2, $3) AND tgenabled = 'A'"
		args, want = []any{t.name, n.prefix + "_trg", n.prefix + "_trunc"}, 2
	case "mysql":
		_, name := schemaOf(t.cfg.Table)
		query = "SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE EVENT_OBJECT_SCHEMA = COALESCE(NULLIF(?, ''), DATABASE()) AND EVENT_OBJECT_TABLE = ? AND TRIGGER_NAME IN (?, ?, ?)"
		args = []any{n.schema, name, n.prefix + "_ins", n.prefix + "_upd", n.prefix + "_del"}
	default:
		query = "SELECT COUNT(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ? AND name IN (?, ?, ?)"
		args = []any{t.cfg.Table, n.prefix + "_ins", n.prefix + "_upd", n.prefix + "_del"}
	}
	var got int
	rs, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return false, t.d.dbErr(err)
	}
	if rs.Next() {
		err = rs.Scan(&got)
	} else {
		err = rs.Err()
	}
	if rs.Close(); err != nil {
		return false, err
	}
	if got != want && t.cfg.Dialect == "mysql" {
		// information_schema shows triggers only to users with the TRIGGER privilege on
		// the table: ask for one by name, which says which it is.
		rs, err := q.QueryContext(ctx, "SHOW CREATE TRIGGER "+t.trigger("ins"))
		if err == nil {
			rs.Close()
		} else if isAccessDenied(err) {
			return false, fmt.Errorf("cannot check the maintained index of %s: this user may not see its triggers (MySQL and MariaDB show them only to users with the TRIGGER privilege on the table): grant it (GRANT TRIGGER ON %s TO the user), or use mode=scan", t.cfg.Table, t.cfg.Table)
		}
	}
	return got == want, nil
}

// triggerProblem says what triggersInstalled found wrong with the index's triggers: in
// PostgreSQL, whether they are missing, disabled, or were disabled and enabled again
// (install enables them ALWAYS, ALTER TABLE … ENABLE TRIGGER only for ordinary sessions),
// any of which may have let writes go unlogged.
func (t *Table) triggerProblem(ctx context.Context, q querier) string {
	missing := "its triggers are missing (was the table recreated or restored, or were they dropped?)"
	if t.cfg.Dialect != "postgres" {
		return missing
	}
	n := t.indexNames()
	rs, err := q.QueryContext(ctx, "SELECT tgenabled::text FROM pg_trigger WHERE tgrelid = to_regclass($1) AND tgname IN ($2, $3)", t.name, n.prefix+"_trg", n.prefix+"_trunc")
	if err != nil {
		return "its triggers are missing or disabled"
	}
	defer rs.Close()
	var states string
	for rs.Next() {
		var s string
		if rs.Scan(&s) == nil {
			states += s
		}
	}
	switch {
	case len(states) < 2:
		return missing
	case strings.Contains(states, "D"):
		return "its triggers are disabled (ALTER TABLE … DISABLE TRIGGER), so writes to the table are not logged"
	default:
		return "its triggers were disabled and enabled again (they now fire for ordinary sessions only, where install made them fire always), so writes made meanwhile may be missing from it"
	}
}

// innodbName spells a database or table name as InnoDB's catalog does (MySQL's
// "filename" character set): letters, digits and _ as they are, anything else as @ and
// four hex digits of its code point (my-table is my@002dtable). Code points U+00C0 to
// U+05FF have two-character codes of their own, which this does not know: such a name is
// not found, and the error says to use a plainer name or mode=scan.
func innodbName(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_':
			b.WriteRune(r)
		default:
			fmt.Fprintf(&b, "@%04x", r)
		}
	}
	return b.String()
}

// identity is a token that changes when the table is dropped and recreated (PostgreSQL:
// its OID) or truncated (MySQL/MariaDB: InnoDB's table id). SQLite has none: a recreated
// table loses the triggers, which triggersInstalled sees.
func (t *Table) identity(ctx context.Context, q querier) (string, error) {
	var query string
	var args []any
	switch t.cfg.Dialect {
	case "postgres":
		query, args = "SELECT to_regclass($1)::oid::text", []any{t.name}
	case "mysql":
		schema, name := schemaOf(t.cfg.Table)
		var db string
		if schema == "" {
			if err := t.db.QueryRowContext(ctx, "SELECT DATABASE()").Scan(&db); err != nil {
				return "", err
			}
			schema = db
		}
		query = "SELECT CAST(TABLE_ID AS CHAR) FROM information_schema.INNODB_SYS_TABLES WHERE NAME = ?"
		args = []any{innodbName(schema) + "/" + innodbName(name)}
		var id string
		err := t.db.QueryRowContext(ctx, query, args...).Scan(&id)
		if err == nil {
			return "innodb:" + id, nil
		}
		if isAccessDenied(err) {
			return "", fmt.Errorf("read the identity of %s: %v: a session of the maintained index reads InnoDB's table id, which tells a truncated table (TRUNCATE fires no trigger), and that needs the PROCESS privilege: grant it (GRANT PROCESS ON *.* TO the user), or use mode=scan", t.cfg.Table, err)
		}
		query = "SELECT CAST(TABLE_ID AS CHAR) FROM information_schema.INNODB_TABLES WHERE NAME = ?" // MySQL 8
	default:
		return "sqlite", nil
	}
	rs, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return "", fmt.Errorf("read the identity of %s: %w", t.cfg.Table, t.d.dbErr(err))
	}
	defer rs.Close()
	var id string
	if rs.Next() {
		if err := rs.Scan(&id); err != nil {
			return "", err
		}
	}
	if err := rs.Err(); err != nil {
		return "", err
	}
	if t.cfg.Dialect == "mysql" {
		id = "innodb:" + id
	}
	return id, nil
}
