package sql

import (
	"fmt"
	"unicode/utf8"

	"github.com/zeebo/blake3"
)

// Unreadable rows. A row whose key reads but whose version, expiry or a value column has
// no canonical form (a MySQL zero date, text that SQLite kept in an int column, a NULL
// version) does not stop a read of the table: it is read as a poison row, its Value
// poisonTag followed by the message that says what is wrong with it. Its entry, hashed
// as any row's, then differs from every readable copy of the row and is the same wherever
// the same bad value sits, so the rest of the table is compared and synced as usual.
//
// Poison never leaves this package as a row: a snapshot's Rows refuses it with a
// reconcile.RowRefusedError (a sync then quarantines the row, naming the reason, and
// leaves any copy of it alone), Scan (dump) fails at it, and a Put of it is refused by
// decodeRow (no canonical value starts with poisonTag). A poison row on a sync's target
// is written over by the source's row: Apply's condition finds the same poison entry the
// session saw.
const poisonTag = 0xff

// maxPoisonMessage bounds the message a poison row keeps: a bad value a MiB long would
// otherwise be quoted whole in every report and answer that names the row. The row's
// entry still tells every message apart, through the hash kept beside it.
const maxPoisonMessage = 2000

// poisonValue is the Value of an unreadable row whose reading failed with err:
// poisonTag, 16 bytes of the BLAKE3 hash of err's whole message, then the message, cut
// to maxPoisonMessage bytes (on a character boundary).
func poisonValue(err error) []byte {
	msg := err.Error()
	sum := blake3.Sum256([]byte(msg))
	if len(msg) > maxPoisonMessage {
		cut := maxPoisonMessage
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut] + "…"
	}
	v := append([]byte{poisonTag}, sum[:16]...)
	return append(v, msg...)
}

// isPoison reports whether v is an unreadable row's Value.
func isPoison(v []byte) bool { return len(v) > 0 && v[0] == poisonTag }

// unreadableError is the error of an unreadable row: its message says what is wrong.
func unreadableError(table string, v []byte) error {
	return fmt.Errorf("table %s cannot be read at this row: %s", table, v[min(17, len(v)):])
}
