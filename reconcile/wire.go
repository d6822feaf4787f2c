package reconcile

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/reconcile-dev/reconcile/merkle"
)

// ProtocolVersion is the version of the session messages below, of the bytes they hash
// and of what their bounds mean; any change to one of them is a new version.
// docs/protocol.md describes the encoding. Version 2: a bound stands for the first cut
// entry at or after it (version 1: for the first entry). Version 3: cut levels. Version 4:
// each round says its fingerprint length, and a version-ordered round's points are sent
// as version deltas (vpos). Version 6: an apply may be refused for one row of its batch
// (RowRefusedError; over HTTP, a 422 naming the row, and a relay answer flag).
const ProtocolVersion = 6

// Limits every decoder checks before it allocates.
const (
	// MaxKey is the longest key a session can exchange.
	MaxKey = 1 << 20
	// MaxPosition is the longest position accepted: a MaxKey key plus its version.
	MaxPosition = MaxKey + 8
	// MaxValue is the largest row value a frame may carry. A session quarantines a source
	// row whose value is longer (it is never sent): such a row cannot be synced.
	MaxValue = 256 << 20
	// MaxSchema bounds the schema fingerprint string.
	MaxSchema = 4096
)

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("malformed frame")

// OpenRequest starts a session on the responder.
type OpenRequest struct {
	Protocol uint32
	Ordering merkle.Ordering
	Schema   string
	Nonce    [16]byte
	Now      int64
	// Root is the initiator's root digest. When it differs from the responder's, the
	// responder answers First, the session's first round, in the same round trip.
	Root  merkle.Digest
	First *RoundRequest
}

// OpenResponse answers OpenRequest with the responder's view.
type OpenResponse struct {
	Protocol uint32
	Ordering merkle.Ordering
	Schema   string
	Root     merkle.Digest
	// CutLevels is the highest cut level (see Levels) the responder reads; 1 when it
	// only reads bounds as its first level-1 cut entry at or after them.
	CutLevels uint8
	// First answers OpenRequest.First; nil when the roots are equal or none was asked.
	First *RoundResponse
}

// OpKind names the operations of one round.
type OpKind byte

const (
	// OpCompare: the initiator cut [Lo,Hi) at Bounds and sends its short fingerprint of
	// each part; the responder answers which parts mismatch, its count for each, and its
	// entry prefixes for mismatching parts holding at most ListMax entries.
	OpCompare OpKind = 1
	// OpList: the responder lists its full entries in [Lo,Hi), at most Limit of them.
	OpList OpKind = 3 // (2 is retired)
	// OpFetch: the responder lists its full entries in [Lo,Hi) whose prefix is one of
	// Prefixes.
	OpFetch OpKind = 4
)

// MaxCutLevel is the highest cut level a point on the wire may have.
const MaxCutLevel = 4

// Levels are the cut levels of an op's points: a point of level l stands for the first
// cut entry of level l at or after it, an entry whose EntryHash starts with l zero
// nibbles (level 1: merkle.IsCut). 0 means 1. A splitter that cuts at level-l entries
// sends each bound as the shortest separator above the level-l entry before it.
type Levels struct{ Lo, Hi, Bounds uint8 }

func cutLevel(l uint8) uint8 { return max(l, 1) }

// high reports whether any point is above level 1.
func (l Levels) high() bool { return l.Lo > 1 || l.Hi > 1 || l.Bounds > 1 }

// Op is one operation of a round.
type Op struct {
	Kind     OpKind
	Lo, Hi   []byte
	Levels   Levels   // of Lo, Hi and Bounds
	Bounds   [][]byte // OpCompare
	FPs      []byte   // OpCompare: len(Bounds)+1 fingerprints of RoundRequest.FPBits (short.go)
	ListMax  uint32   // OpCompare
	Limit    uint32   // OpList
	Prefixes []byte   // OpFetch: prefixes of RoundRequest.FetchBits (short.go)
}

// Answer is the responder's answer to one Op.
type Answer struct {
	// OpCompare: Mismatch per part; Counts and Listed per mismatching part, in order.
	// Listed[i] is nil when that part held more than ListMax entries.
	Mismatch []bool
	Counts   []uint64
	Listed   [][]byte
	// OpList, OpFetch: full entries in position order; More when OpList stopped at Limit.
	Entries []merkle.Entry
	More    bool
}

// RoundRequest is every operation of one round: one round trip. The initiator chooses
// the lengths in bits (8..255) per round from the differences it expects (see
// docs/protocol.md): FPBits of each short fingerprint of its Compare ops, PrefixBits of
// each entry prefix the answers list, and FetchBits of each prefix its Fetch ops carry
// (the previous round's PrefixBits, since a Fetch asks for entries that round listed).
type RoundRequest struct {
	FPBits, PrefixBits, FetchBits uint8
	Ops                           []Op
}

// RoundResponse answers each Op in order.
type RoundResponse struct{ Answers []Answer }

// ApplyRequest carries one batch of conditional writes.
type ApplyRequest struct {
	Now     int64
	Changes []Change
}

// ApplyResponse answers an ApplyRequest: an outcome per change.
type ApplyResponse struct{ Outcomes []Outcome }

// RowsRequest asks the responder for its snapshot's rows of Keys: a session whose
// initiator is the target (RunFromPeer) reads the source's rows this way.
type RowsRequest struct {
	Keys [][]byte
	// MaxBytes, when positive, bounds the row values of the answer: the responder sends
	// the rows of the first keys whose values fit (always at least one), and no more.
	MaxBytes int64
}

// RowsResponse answers a RowsRequest: one row for each of the first len(Rows) keys, in
// order (fewer than asked when MaxBytes cut the answer short); a key with no live row in
// the responder's snapshot yields a Row with a nil Key.
//
// A row whose value is longer than MaxValue crosses without it: its Row has a nil Value
// and TooLarge maps its index in Rows to the value's length. The initiator quarantines it.
type RowsResponse struct {
	Rows     []Row
	TooLarge map[int]int64
}

// MaxRowsKeys bounds the keys of one RowsRequest.
const MaxRowsKeys = 1 << 16

// LimitRows returns the first rows whose values fit in maxBytes (at least one; all when
// maxBytes is not positive): what a responder sends for a RowsRequest.
func LimitRows(rows []Row, maxBytes int64) []Row {
	if maxBytes <= 0 {
		return rows
	}
	var n int64
	for i, r := range rows {
		if len(r.Value) > MaxValue {
			continue // sent without its value
		}
		if n += int64(len(r.Value)); n > maxBytes && i > 0 {
			return rows[:i]
		}
	}
	return rows
}

// ---- encoding ----

type encoder struct {
	buf  []byte
	o    merkle.Ordering // of the frame's points (0 where it has none)
	prev []byte          // last position written, for prefix compression
	// prevKey is the key of the last keyed vpos point, for the next one's shared prefix.
	prevKey []byte
}

func (e *encoder) uvarint(v uint64) { e.buf = binary.AppendUvarint(e.buf, v) }
func (e *encoder) varint(v int64)   { e.buf = binary.AppendVarint(e.buf, v) }
func (e *encoder) byte1(b byte)     { e.buf = append(e.buf, b) }
func (e *encoder) raw(b []byte)     { e.buf = append(e.buf, b...) }
func (e *encoder) bytes(b []byte)   { e.uvarint(uint64(len(b))); e.raw(b) }

// pos writes a position as (shared prefix with the previous position + 1, suffix);
// 0 stands for nil (an open bound).
func (e *encoder) pos(p []byte) {
	if p == nil {
		e.uvarint(0)
		return
	}
	n := 0
	for n < len(p) && n < len(e.prev) && p[n] == e.prev[n] {
		n++
	}
	e.uvarint(uint64(n) + 1)
	e.bytes(p[n:])
	e.prev = p
}

// point writes a position of a round or of its answer's entries: vpos in version order,
// pos in key order. up says it is at or above the point before (a Compare's bounds after
// its first).
func (e *encoder) point(p []byte, up bool) {
	if e.o == merkle.VersionOrder {
		e.vpos(p, up)
	} else {
		e.pos(p)
	}
}

// vpos writes a point of a version-ordered frame: be64(version) ‖ key, the version as a
// difference d from the previous point's (zig-zag encoded unless ascending: a Compare's
// bounds after its first, which only increase), the key (when not empty) as a suffix of
// the last keyed point's key, less drop bytes. A first uvarint x says how:
//
//	0: an open bound (nil)
//	1, 2: an absolute be64 version follows (then, for 2, the key's kc): differences
//	   too large for the forms below
//	x-3 = d<<1: no key
//	x-3 = kc<<2 | 1: the previous point's version, a key
//	x-3 = d<<2 | 3: another version, a key; uvarint(kc) follows
//
// where kc = drop<<3 | n and n suffix bytes follow, or n = 7 and uvarint(len) and len
// bytes follow. A bound of a split inside one version (a bulk load) so costs a byte and
// its key's last byte. A point shorter than 8 bytes is sent padded with zero bytes to 8:
// as a bound it stands for the same entries, since every position is at least 8 bytes.
func (e *encoder) vpos(p []byte, ascending bool) {
	if p == nil {
		e.uvarint(0)
		return
	}
	if len(p) < 8 {
		p = append(append(make([]byte, 0, 8), p...), make([]byte, 8-len(p))...)
	}
	v, key := binary.BigEndian.Uint64(p), p[8:]
	var pv uint64
	hadPrev := e.prev != nil
	if hadPrev {
		pv = binary.BigEndian.Uint64(e.prev)
	}
	d := v - pv
	if !ascending {
		d = zigzag(int64(d))
	}
	e.prev = p
	if len(key) == 0 {
		if d < 1<<62 {
			e.uvarint(3 + d<<1)
		} else {
			e.uvarint(1)
			e.buf = binary.BigEndian.AppendUint64(e.buf, v)
		}
		return
	}
	shared := 0
	for shared < len(key) && shared < len(e.prevKey) && key[shared] == e.prevKey[shared] {
		shared++
	}
	suffix := key[shared:]
	kc := uint64(len(e.prevKey)-shared)<<3 | uint64(min(len(suffix), 7))
	switch {
	case v == pv && hadPrev && kc < 1<<61:
		e.uvarint(3 + (kc<<2 | 1))
	case d < 1<<61:
		e.uvarint(3 + (d<<2 | 3))
		e.uvarint(kc)
	default:
		e.uvarint(2)
		e.buf = binary.BigEndian.AppendUint64(e.buf, v)
		e.uvarint(kc)
	}
	if len(suffix) < 7 {
		e.raw(suffix)
	} else {
		e.bytes(suffix)
	}
	e.prevKey = key
}

func zigzag(x int64) uint64   { return uint64(x<<1) ^ uint64(x>>63) }
func unzigzag(u uint64) int64 { return int64(u>>1) ^ -int64(u&1) }

func (e *encoder) digest(d merkle.Digest) { e.raw(d.MarshalBinary()) }

// entry writes a listed entry, its position a point.
func (e *encoder) entry(en merkle.Entry) {
	e.point(en.Position(e.o), false)
	e.varint(en.ExpiresAt)
	e.byte1(en.Flags)
	e.raw(en.ValueHash[:])
}

type decoder struct {
	buf     []byte
	o       merkle.Ordering // of the frame's points (0 where it has none)
	prev    []byte
	prevKey []byte
	err     error
	// expand is how many more bytes the frame's positions may decode to. A position may
	// repeat most of the one before it in a few bytes, so without a bound a small frame
	// could make the decoder allocate without limit.
	expand int
	frame  int // the frame's length, for messages
}

// maxExpansion bounds the bytes a frame's positions decode to: this many times the frame,
// plus room for two positions of the longest key.
const maxExpansion = 8

func newDecoder(b []byte) *decoder {
	return &decoder{buf: b, expand: maxExpansion*len(b) + 2*MaxPosition, frame: len(b)}
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
	}
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.buf)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.buf)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

func (d *decoder) byte1() byte {
	b := d.raw(1)
	if b == nil {
		return 0
	}
	return b[0]
}

// raw returns the next n bytes (aliasing the frame), or nil after an error.
func (d *decoder) raw(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.buf) {
		d.fail("length %d past the end of the frame", n)
		return nil
	}
	b := d.buf[:n:n]
	d.buf = d.buf[n:]
	return b
}

// count reads a count of items each at least min bytes long, checked against what is left
// of the frame so that a hostile count cannot make us allocate.
func (d *decoder) count(min int) int {
	n := d.uvarint()
	if d.err != nil {
		return 0
	}
	if min < 1 {
		min = 1
	}
	if n > uint64(len(d.buf)/min) {
		d.fail("count %d larger than the frame allows", n)
		return 0
	}
	return int(n)
}

// short reads n values of bits bits (at least 8) packed by packShort, as shortBytes(bits)
// bytes each.
func (d *decoder) short(n, bits int) []byte {
	b := d.raw(packedLen(n, bits))
	if d.err != nil {
		return nil
	}
	items, ok := unpackShort(b, n, bits)
	if !ok {
		d.fail("padding bits set after %d values of %d bits", n, bits)
	}
	return items
}

// ordering reads an ordering byte: version or key order, nothing else.
func (d *decoder) ordering() merkle.Ordering {
	o := merkle.Ordering(d.byte1())
	if d.err == nil && o != merkle.VersionOrder && o != merkle.KeyOrder {
		d.fail("unknown ordering %d (1 is version order, 2 key order)", o)
	}
	return o
}

func (d *decoder) bytes(max int) []byte {
	n := d.uvarint()
	if d.err == nil && n > uint64(max) {
		d.fail("length %d over the limit %d", n, max)
	}
	return d.raw(int(n))
}

func (d *decoder) pos() []byte {
	s := d.uvarint()
	if d.err != nil || s == 0 {
		return nil
	}
	shared := s - 1
	if shared > uint64(len(d.prev)) {
		d.fail("position shares %d bytes with a %d-byte predecessor", shared, len(d.prev))
		return nil
	}
	suffix := d.bytes(MaxPosition)
	if d.err != nil {
		return nil
	}
	if int(shared)+len(suffix) > MaxPosition {
		d.fail("position longer than %d bytes (keys are limited to %d bytes)", MaxPosition, MaxKey)
		return nil
	}
	if d.expand -= int(shared) + len(suffix); d.expand < 0 {
		d.fail("positions decode to more than %d times the frame's %d bytes (keys that share long prefixes: use shorter keys)", maxExpansion, d.frame)
		return nil
	}
	p := make([]byte, 0, int(shared)+len(suffix))
	p = append(append(p, d.prev[:shared]...), suffix...)
	d.prev = p
	return p
}

// point reads a position written by encoder.point.
func (d *decoder) point(up bool) []byte {
	if d.o == merkle.VersionOrder {
		return d.vpos(up)
	}
	return d.pos()
}

// vpos reads a point written by encoder.vpos: nil or at least 8 bytes.
func (d *decoder) vpos(ascending bool) []byte {
	x := d.uvarint()
	if d.err != nil || x == 0 {
		return nil
	}
	var pv uint64
	if d.prev != nil {
		pv = binary.BigEndian.Uint64(d.prev)
	}
	diff := func(code uint64) uint64 {
		if ascending {
			return pv + code
		}
		return pv + uint64(unzigzag(code))
	}
	var v, kc uint64
	keyed := true
	switch y := x - 3; {
	case x == 1 || x == 2:
		b := d.raw(8)
		if b == nil {
			return nil
		}
		v, keyed = binary.BigEndian.Uint64(b), x == 2
		if keyed {
			kc = d.uvarint()
		}
	case y&1 == 0:
		v, keyed = diff(y>>1), false
	case y&3 == 1:
		if d.prev == nil {
			d.fail("point at the previous point's version, with none before it")
			return nil
		}
		v, kc = pv, y>>2
	default:
		v = diff(y >> 2)
		kc = d.uvarint()
	}
	var shared uint64
	var suffix []byte
	if keyed && d.err == nil {
		drop := kc >> 3
		if drop > uint64(len(d.prevKey)) {
			d.fail("point drops %d key bytes of a %d-byte predecessor", drop, len(d.prevKey))
			return nil
		}
		shared = uint64(len(d.prevKey)) - drop
		if kc&7 < 7 {
			suffix = d.raw(int(kc & 7))
		} else {
			suffix = d.bytes(MaxPosition)
		}
		if d.err == nil && shared+uint64(len(suffix)) == 0 {
			d.fail("point with an empty key marked as keyed")
			return nil
		}
	}
	if d.err != nil {
		return nil
	}
	n := 8 + int(shared) + len(suffix)
	if n > MaxPosition {
		d.fail("position longer than %d bytes (keys are limited to %d bytes)", MaxPosition, MaxKey)
		return nil
	}
	if d.expand -= n; d.expand < 0 {
		d.fail("positions decode to more than %d times the frame's %d bytes (keys that share long prefixes: use shorter keys)", maxExpansion, d.frame)
		return nil
	}
	p := binary.BigEndian.AppendUint64(make([]byte, 0, n), v)
	p = append(append(p, d.prevKey[:shared]...), suffix...)
	if keyed {
		d.prevKey = p[8:]
	}
	d.prev = p
	return p
}

func (d *decoder) digest() merkle.Digest {
	b := d.raw(40)
	if b == nil {
		return merkle.Digest{}
	}
	dg, _ := merkle.UnmarshalDigest(b)
	return dg
}

func (d *decoder) entry() merkle.Entry {
	p := d.point(false)
	var en merkle.Entry
	en.ExpiresAt = d.varint()
	en.Flags = d.byte1()
	copy(en.ValueHash[:], d.raw(32))
	if d.err != nil {
		return en
	}
	if p == nil {
		d.fail("entry without a position")
		return en
	}
	k, v, err := d.o.Split(p)
	if err != nil {
		d.fail("%v", err)
		return en
	}
	en.Key, en.Version = k, v
	return en
}

func (d *decoder) done(what string) error {
	if d.err == nil && len(d.buf) != 0 {
		d.fail("%d bytes after the end of the %s", len(d.buf), what)
	}
	if d.err != nil {
		return fmt.Errorf("decode %s: %w", what, d.err)
	}
	return nil
}

const (
	tagOpen         = 'O'
	tagOpenResponse = 'o'
	tagRound        = 'R'
	tagRoundAnswer  = 'r'
	tagApply        = 'A'
	tagApplyAnswer  = 'a'
	tagRows         = 'W'
	tagRowsAnswer   = 'w'
)

// EncodeOpenRequest returns the frame for m.
func EncodeOpenRequest(m *OpenRequest) []byte {
	e := &encoder{}
	e.byte1(tagOpen)
	e.uvarint(uint64(m.Protocol))
	e.byte1(byte(m.Ordering))
	e.bytes([]byte(m.Schema))
	e.raw(m.Nonce[:])
	e.varint(m.Now)
	e.digest(m.Root)
	if m.First == nil {
		e.uvarint(0)
	} else {
		e.bytes(encodeRound(m.params(), m.First))
	}
	return e.buf
}

func (m *OpenRequest) params() frameParams { return frameParams{ordering: m.Ordering} }

// DecodeOpenRequest parses a frame written by EncodeOpenRequest.
func DecodeOpenRequest(b []byte) (*OpenRequest, error) {
	d := newDecoder(b)
	if d.byte1() != tagOpen {
		d.fail("not an open request")
	}
	m := &OpenRequest{}
	m.Protocol = uint32(d.uvarint())
	m.Ordering = d.ordering()
	m.Schema = string(d.bytes(MaxSchema))
	copy(m.Nonce[:], d.raw(16))
	m.Now = d.varint()
	m.Root = d.digest()
	if first := d.bytes(len(d.buf)); d.err == nil && len(first) > 0 {
		r, err := decodeRound(m.params(), first)
		if err != nil {
			return m, fmt.Errorf("decode open request: %w", err)
		}
		m.First = r
	}
	return m, d.done("open request")
}

// EncodeOpenResponse returns the frame for m, which answers req.
func EncodeOpenResponse(req *OpenRequest, m *OpenResponse) []byte {
	e := &encoder{}
	e.byte1(tagOpenResponse)
	e.uvarint(uint64(m.Protocol))
	e.byte1(byte(m.Ordering))
	e.bytes([]byte(m.Schema))
	e.digest(m.Root)
	e.byte1(cutLevel(m.CutLevels))
	if m.First == nil || req.First == nil {
		e.uvarint(0)
	} else {
		e.bytes(encodeRoundResponse(req.params(), req.First, m.First))
	}
	return e.buf
}

// DecodeOpenResponse parses a frame written by EncodeOpenResponse for req.
func DecodeOpenResponse(req *OpenRequest, b []byte) (*OpenResponse, error) {
	d := newDecoder(b)
	if d.byte1() != tagOpenResponse {
		d.fail("not an open response")
	}
	m := &OpenResponse{}
	m.Protocol = uint32(d.uvarint())
	m.Ordering = d.ordering()
	m.Schema = string(d.bytes(MaxSchema))
	m.Root = d.digest()
	m.CutLevels = d.byte1()
	if d.err == nil && (m.CutLevels < 1 || m.CutLevels > MaxCutLevel) {
		d.fail("cut levels %d outside 1..%d", m.CutLevels, MaxCutLevel)
	}
	if first := d.bytes(len(d.buf)); d.err == nil && len(first) > 0 {
		if req.First == nil {
			return m, fmt.Errorf("decode open response: %w: an answer to a first round that was not asked", ErrMalformed)
		}
		r, err := decodeRoundResponse(req.params(), req.First, first)
		if err != nil {
			return m, fmt.Errorf("decode open response: %w", err)
		}
		m.First = r
	}
	return m, d.done("open response")
}

// Frame parameters both sides fixed at Open; decoders need them to size fields.
type frameParams struct {
	ordering merkle.Ordering
}

func encodeRound(p frameParams, m *RoundRequest) []byte {
	e := &encoder{o: p.ordering}
	e.byte1(tagRound)
	e.byte1(m.FPBits)
	e.byte1(m.PrefixBits)
	e.byte1(m.FetchBits)
	e.uvarint(uint64(len(m.Ops)))
	for i := range m.Ops {
		op := &m.Ops[i]
		lv := cutLevel(op.Levels.Lo) - 1 | (cutLevel(op.Levels.Hi)-1)<<2 | (cutLevel(op.Levels.Bounds)-1)<<4
		e.byte1(opCode(op.Kind) | lv<<2)
		e.point(op.Lo, false)
		e.point(op.Hi, false)
		switch op.Kind {
		case OpCompare:
			e.uvarint(uint64(op.ListMax))
			e.uvarint(uint64(len(op.Bounds)))
			for j, b := range op.Bounds {
				e.point(b, j > 0)
			}
			e.buf = packShort(e.buf, op.FPs, int(m.FPBits))
		case OpList:
			e.uvarint(uint64(op.Limit))
		case OpFetch:
			e.uvarint(uint64(len(op.Prefixes) / shortBytes(int(m.FetchBits))))
			e.buf = packShort(e.buf, op.Prefixes, int(m.FetchBits))
		}
	}
	return e.buf
}

func decodeRound(p frameParams, b []byte) (*RoundRequest, error) {
	d := newDecoder(b)
	if d.byte1() != tagRound {
		d.fail("not a round request")
	}
	m := &RoundRequest{FPBits: d.byte1(), PrefixBits: d.byte1(), FetchBits: d.byte1()}
	for _, l := range []struct {
		what string
		n    uint8
	}{{"fingerprint", m.FPBits}, {"prefix", m.PrefixBits}, {"fetch prefix", m.FetchBits}} {
		if d.err == nil && l.n < 8 {
			d.fail("%s of %d bits: at least 8", l.what, l.n)
		}
	}
	d.o = p.ordering
	n := d.count(3)
	m.Ops = make([]Op, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		b := d.byte1()
		op := Op{Kind: opKinds[b&3]}
		if lv := b >> 2; lv != 0 {
			op.Levels = Levels{Lo: lv&3 + 1, Hi: lv>>2&3 + 1, Bounds: lv>>4&3 + 1}
		}
		op.Lo = d.point(false)
		op.Hi = d.point(false)
		switch op.Kind {
		case OpCompare:
			op.ListMax = uint32(d.uvarint())
			nb := d.count(1)
			op.Bounds = make([][]byte, 0, nb)
			for j := 0; j < nb && d.err == nil; j++ {
				bd := d.point(j > 0)
				if bd == nil {
					d.fail("open bound inside a range")
				}
				op.Bounds = append(op.Bounds, bd)
			}
			op.FPs = d.short(nb+1, int(m.FPBits))
		case OpList:
			op.Limit = uint32(d.uvarint())
		case OpFetch:
			np := d.count(1)
			op.Prefixes = d.short(np, int(m.FetchBits))
		default:
			d.fail("unknown op %d", op.Kind)
		}
		if d.err == nil {
			if err := checkRange(op); err != nil {
				d.fail("%v", err)
			}
		}
		m.Ops = append(m.Ops, op)
	}
	return m, d.done("round request")
}

// An op's first byte holds its kind in bits 0-1 (0 Compare, 1 List, 2 Fetch; 3 is
// refused) and the cut levels of Lo, Hi and Bounds, less one, in bits 2-3, 4-5 and 6-7.
// An op decodes with every level 1 as the zero Levels.
var opKinds = [4]OpKind{OpCompare, OpList, OpFetch, 0}

func opCode(k OpKind) byte {
	switch k {
	case OpList:
		return 1
	case OpFetch:
		return 2
	}
	return 0
}

// checkRange rejects ranges and bounds that are not strictly increasing. Points of
// different cut levels are not compared: a short point of a higher level may sort below a
// lower-level point it stands after (the responder orders them once it has read them).
func checkRange(op Op) error {
	lv := op.Levels
	prev, prevL := op.Lo, cutLevel(lv.Lo)
	for _, b := range op.Bounds {
		if prev != nil && prevL == cutLevel(lv.Bounds) && bytes.Compare(b, prev) <= 0 {
			return errors.New("bounds not strictly increasing")
		}
		prev, prevL = b, cutLevel(lv.Bounds)
	}
	if op.Hi != nil && prev != nil && prevL == cutLevel(lv.Hi) && bytes.Compare(op.Hi, prev) <= 0 {
		return errors.New("range end not after its start")
	}
	return nil
}

func encodeRoundResponse(p frameParams, req *RoundRequest, m *RoundResponse) []byte {
	e := &encoder{o: p.ordering}
	e.byte1(tagRoundAnswer)
	for i := range m.Answers {
		a := &m.Answers[i]
		switch req.Ops[i].Kind {
		case OpCompare:
			e.raw(packBits(a.Mismatch))
			for j, c := range a.Counts {
				e.uvarint(c)
				if a.Listed[j] != nil {
					e.buf = packShort(e.buf, a.Listed[j], int(req.PrefixBits))
				}
			}
		case OpList, OpFetch:
			e.uvarint(uint64(len(a.Entries)))
			for _, en := range a.Entries {
				e.entry(en)
			}
			if a.More {
				e.byte1(1)
			} else {
				e.byte1(0)
			}
		}
	}
	return e.buf
}

func decodeRoundResponse(p frameParams, req *RoundRequest, b []byte) (*RoundResponse, error) {
	d := newDecoder(b)
	d.o = p.ordering
	if d.byte1() != tagRoundAnswer {
		d.fail("not a round answer")
	}
	m := &RoundResponse{Answers: make([]Answer, len(req.Ops))}
	for i := range req.Ops {
		if d.err != nil {
			break
		}
		op := &req.Ops[i]
		a := &m.Answers[i]
		switch op.Kind {
		case OpCompare:
			parts := len(op.Bounds) + 1
			a.Mismatch = unpackBits(d.raw((parts+7)/8), parts)
			for _, mm := range a.Mismatch {
				if !mm {
					continue
				}
				c := d.uvarint()
				a.Counts = append(a.Counts, c)
				var listed []byte
				if c <= uint64(op.ListMax) {
					bits := int(req.PrefixBits)
					if bits < 8 || c > uint64(len(d.buf)) {
						d.fail("listing of %d entries of %d bits larger than the frame", c, bits)
						break
					}
					listed = d.short(int(c), bits)
					if listed == nil {
						listed = []byte{}
					}
				}
				a.Listed = append(a.Listed, listed)
			}
		case OpList, OpFetch:
			n := d.count(35)
			a.Entries = make([]merkle.Entry, 0, n)
			for j := 0; j < n && d.err == nil; j++ {
				a.Entries = append(a.Entries, d.entry())
			}
			a.More = d.byte1() == 1
		}
	}
	return m, d.done("round answer")
}

func encodeApply(p frameParams, m *ApplyRequest) (frame []byte, valueBytes int64) {
	e := &encoder{}
	e.byte1(tagApply)
	e.varint(m.Now)
	e.uvarint(uint64(len(m.Changes)))
	for _, c := range m.Changes {
		e.pos(c.Key)
		var flags byte
		if c.Expect != nil {
			flags |= 1
		}
		if c.Put != nil {
			flags |= 2
		}
		e.byte1(flags)
		if c.Expect != nil {
			e.uvarint(c.Expect.Version)
			e.varint(c.Expect.ExpiresAt)
			e.byte1(c.Expect.Flags)
			e.raw(c.Expect.ValueHash[:])
		}
		if c.Put != nil {
			e.uvarint(c.Put.Version)
			e.varint(c.Put.ExpiresAt)
			if c.Put.Tombstone {
				e.byte1(1)
			} else {
				e.byte1(0)
			}
			e.bytes(c.Put.Value)
			valueBytes += int64(len(c.Put.Value))
		}
	}
	return e.buf, valueBytes
}

func decodeApply(b []byte) (*ApplyRequest, error) {
	d := newDecoder(b)
	if d.byte1() != tagApply {
		d.fail("not an apply request")
	}
	m := &ApplyRequest{Now: d.varint()}
	n := d.count(3)
	m.Changes = make([]Change, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		var c Change
		c.Key = d.pos()
		if c.Key == nil && d.err == nil {
			d.fail("change without a key")
		}
		flags := d.byte1()
		if flags&^3 != 0 {
			d.fail("unknown change flags %#x", flags)
		}
		if flags&1 != 0 {
			en := merkle.Entry{Key: c.Key}
			en.Version = d.uvarint()
			en.ExpiresAt = d.varint()
			en.Flags = d.byte1()
			copy(en.ValueHash[:], d.raw(32))
			c.Expect = &en
		}
		if flags&2 != 0 {
			r := Row{Key: c.Key}
			r.Version = d.uvarint()
			r.ExpiresAt = d.varint()
			r.Tombstone = d.byte1() == 1
			r.Value = d.bytes(MaxValue)
			if r.Value == nil {
				r.Value = []byte{}
			}
			c.Put = &r
		}
		m.Changes = append(m.Changes, c)
	}
	return m, d.done("apply request")
}

func encodeApplyResponse(m *ApplyResponse) []byte {
	e := &encoder{}
	e.byte1(tagApplyAnswer)
	e.uvarint(uint64(len(m.Outcomes)))
	raced := make([]bool, len(m.Outcomes))
	for i, o := range m.Outcomes {
		raced[i] = o == Raced
	}
	e.raw(packBits(raced))
	return e.buf
}

func decodeApplyResponse(b []byte, want int) (*ApplyResponse, error) {
	d := newDecoder(b)
	if d.byte1() != tagApplyAnswer {
		d.fail("not an apply answer")
	}
	n := d.uvarint()
	if d.err == nil && n != uint64(want) {
		d.fail("%d outcomes for %d changes", n, want)
	}
	bits := unpackBits(d.raw((want+7)/8), want)
	m := &ApplyResponse{Outcomes: make([]Outcome, want)}
	for i, r := range bits {
		if r {
			m.Outcomes[i] = Raced
		}
	}
	return m, d.done("apply answer")
}

func packBits(v []bool) []byte {
	out := make([]byte, (len(v)+7)/8)
	for i, b := range v {
		if b {
			out[i/8] |= 1 << (i % 8)
		}
	}
	return out
}

func unpackBits(b []byte, n int) []bool {
	if len(b)*8 < n {
		return nil
	}
	out := make([]bool, n)
	for i := range out {
		out[i] = b[i/8]&(1<<(i%8)) != 0
	}
	return out
}

// EncodeRowsRequest returns the frame for m.
func EncodeRowsRequest(m *RowsRequest) []byte {
	e := &encoder{}
	e.byte1(tagRows)
	e.varint(m.MaxBytes)
	e.uvarint(uint64(len(m.Keys)))
	for _, k := range m.Keys {
		e.pos(k)
	}
	return e.buf
}

// DecodeRowsRequest parses a frame written by EncodeRowsRequest.
func DecodeRowsRequest(b []byte) (*RowsRequest, error) {
	d := newDecoder(b)
	if d.byte1() != tagRows {
		d.fail("not a rows request")
	}
	m := &RowsRequest{MaxBytes: d.varint()}
	n := d.count(1)
	if n > MaxRowsKeys {
		d.fail("%d keys in one rows request, more than %d", n, MaxRowsKeys)
	}
	if d.err == nil {
		m.Keys = make([][]byte, 0, n)
	}
	for i := 0; i < n && d.err == nil; i++ {
		k := d.pos()
		if k == nil && d.err == nil {
			d.fail("rows request without a key")
		}
		m.Keys = append(m.Keys, k)
	}
	return m, d.done("rows request")
}

// rowTooLarge is a rows answer's flags for a row sent without its value, longer than
// MaxValue: its length follows in place of the value.
const rowTooLarge = 3

// EncodeRowsResponse returns the frame for m, which answers req, and how many of its bytes
// are row values. A row's key is not repeated: it is the request's.
func EncodeRowsResponse(req *RowsRequest, m *RowsResponse) (frame []byte, valueBytes int64) {
	e := &encoder{}
	e.byte1(tagRowsAnswer)
	e.uvarint(uint64(len(m.Rows)))
	for i, r := range m.Rows {
		size, tooLarge := m.TooLarge[i]
		if len(r.Value) > MaxValue {
			size, tooLarge = int64(len(r.Value)), true
		}
		switch {
		case r.Key == nil:
			e.byte1(0)
			continue
		case tooLarge:
			e.byte1(rowTooLarge)
			e.uvarint(r.Version)
			e.varint(r.ExpiresAt)
			e.uvarint(uint64(size))
			continue
		case r.Tombstone:
			e.byte1(2)
		default:
			e.byte1(1)
		}
		e.uvarint(r.Version)
		e.varint(r.ExpiresAt)
		e.bytes(r.Value)
		valueBytes += int64(len(r.Value))
	}
	return e.buf, valueBytes
}

// DecodeRowsResponse parses a frame written by EncodeRowsResponse for req: at most one
// row per key, and at least one when req names any.
func DecodeRowsResponse(req *RowsRequest, b []byte) (*RowsResponse, error) {
	d := newDecoder(b)
	if d.byte1() != tagRowsAnswer {
		d.fail("not a rows answer")
	}
	n := d.uvarint()
	if d.err == nil && (n > uint64(len(req.Keys)) || n == 0 && len(req.Keys) > 0) {
		d.fail("%d rows for %d keys", n, len(req.Keys))
	}
	m := &RowsResponse{}
	if d.err == nil {
		m.Rows = make([]Row, n)
	}
	for i := 0; d.err == nil && i < len(m.Rows); i++ {
		flags := d.byte1()
		if flags == 0 {
			continue
		}
		if flags > rowTooLarge {
			d.fail("unknown row flags %#x", flags)
			break
		}
		r := Row{Key: req.Keys[i], Tombstone: flags == 2}
		r.Version = d.uvarint()
		r.ExpiresAt = d.varint()
		if flags == rowTooLarge {
			n := d.uvarint()
			if d.err == nil && n <= MaxValue {
				d.fail("a row sent without its value of %d bytes, which would fit", n)
			}
			if m.TooLarge == nil {
				m.TooLarge = map[int]int64{}
			}
			m.TooLarge[i] = int64(min(n, 1<<62))
			m.Rows[i] = r
			continue
		}
		r.Value = d.bytes(MaxValue)
		if r.Value == nil {
			r.Value = []byte{}
		}
		m.Rows[i] = r
	}
	return m, d.done("rows answer")
}
