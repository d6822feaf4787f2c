package reconcile

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/reconcile-dev/reconcile/merkle"
)

// Run runs one session between source and target in this process: the source side
// initiates, the target answers through an in-process Peer whose frames are encoded as on
// the wire. See RunPeer for the contract.
func Run(ctx context.Context, source, target Endpoint, opts Options) (rep *Report, err error) {
	defer func() { opts.finished(rep, err) }()
	peer := NewLocal(target)
	defer peer.Close()
	rep, err = runSession(ctx, source, peer, opts)
	if err == nil {
		err = rootAfter(ctx, rep, target)
	}
	return rep, err
}

// rootAfter reads the (local) target's root into rep after a sync that wrote.
func rootAfter(ctx context.Context, rep *Report, target Endpoint) error {
	return rep.ReadRootAfter(func() (Info, error) { return Root(ctx, target, rep.now) })
}

// ReadRootAfter sets RootTargetAfter from root, the target's root read after a sync that
// wrote something (it is not called otherwise). The read is part of the sync: DurationMS
// then counts it too (a SQL target's maintained index catches up with the writes first).
func (r *Report) ReadRootAfter(root func() (Info, error)) error {
	if r.Mode != Mirror || r.DryRun || r.Upserted+r.Deleted == 0 {
		return nil
	}
	start := time.Now()
	after, err := root()
	r.DurationMS += time.Since(start).Milliseconds()
	if err != nil {
		return fmt.Errorf("read target root after sync: %w", err)
	}
	r.RootTargetAfter = FormatFingerprint(after.Root.Fingerprint())
	return nil
}

// finished logs a session's result and tells the Observer.
func (o *Options) finished(rep *Report, err error) {
	if rep == nil { // a panic on its way up: this must not add one of its own
		return
	}
	log := o.logger()
	if errors.Is(err, ErrStopped) {
		log.Debug("session stopped", "mode", rep.Mode, "rounds", rep.Rounds, "upserted", rep.Upserted, "deleted", rep.Deleted, "error", err)
	} else if err != nil {
		log.Warn("session failed", "mode", rep.Mode, "rounds", rep.Rounds, "upserted", rep.Upserted, "deleted", rep.Deleted, "error", err)
	} else {
		log.Debug("session done", "mode", rep.Mode, "rounds", rep.Rounds,
			"only_source", rep.OnlySource, "only_target", rep.OnlyTarget, "changed", rep.Changed,
			"upserted", rep.Upserted, "deleted", rep.Deleted, "quarantined", rep.Quarantined, "raced", rep.Raced,
			"bytes_sent", rep.BytesSent, "bytes_received", rep.BytesReceived, "duration_ms", rep.DurationMS)
	}
	if o.Observer != nil {
		o.Observer.Finished(rep, err)
	}
}

// Root opens a snapshot of ep at now and returns its Info (ordering, schema, root digest).
func Root(ctx context.Context, ep Endpoint, now int64) (Info, error) {
	return root(ctx, ep, now, nil)
}

// ErrNoVersionCut is wrapped by RootAsOf's error for a key-ordered endpoint, whose
// positions hold no versions to cut at.
var ErrNoVersionCut = errors.New("a cut by version needs a version-ordered endpoint")

// RootAsOf returns the Info of a snapshot of ep at now whose Root is the digest of the cut
// at version asOf: the live rows whose version is at most asOf. Two copies whose cuts at
// asOf are equal hold the same such rows, whatever either holds above it (a replica that
// lags, a source with newer writes); a row updated or deleted above asOf has left the cut,
// since each copy keeps only a row's last version. The endpoint must be in version order
// (ErrNoVersionCut otherwise): the cut is one range of its index, read in O(log n).
func RootAsOf(ctx context.Context, ep Endpoint, now int64, asOf uint64) (Info, error) {
	return root(ctx, ep, now, &asOf)
}

// root is Root, or RootAsOf when cut is set.
func root(ctx context.Context, ep Endpoint, now int64, cut *uint64) (Info, error) {
	if now == 0 {
		now = time.Now().UnixNano()
	}
	snap, err := ep.Open(ctx, now)
	if err != nil {
		return Info{}, fmt.Errorf("open snapshot: %w", err)
	}
	defer snap.Close()
	info := snap.Info()
	if cut == nil {
		return info, nil
	}
	asOf := *cut
	if info.Ordering != merkle.VersionOrder {
		return Info{}, fmt.Errorf("%w: this one is in %s order, whose positions are keys alone", ErrNoVersionCut, info.Ordering)
	}
	if asOf == math.MaxUint64 {
		return info, nil // every version
	}
	ds, err := snap.Digests(ctx, nil, merkle.VersionOrder.Position(nil, asOf+1), nil)
	if err != nil {
		return Info{}, fmt.Errorf("digest of the cut at version %d: %w", asOf, err)
	}
	if len(ds) != 1 {
		return Info{}, fmt.Errorf("digest of the cut at version %d: the endpoint answered %d digests for one range", asOf, len(ds))
	}
	info.Root = ds[0]
	return info, nil
}

// RunPeer runs one session: the source endpoint, opened here, initiates; peer answers for
// the target. In Diff mode nothing is written. In Mirror mode the target is made equal to
// the source: only-source and changed rows are upserted, only-target rows deleted, each
// write conditional on the target still holding what its snapshot showed. A mirror sync
// that would delete more rows than opts.MaxDelete allows returns a *DeleteGuardError and
// writes nothing. The report is returned even with an error, filled as far as the session
// got. Options.Resolve, Observer, Logger and Stop hook into the session (see Options).
func RunPeer(ctx context.Context, source Endpoint, peer Peer, opts Options) (rep *Report, err error) {
	defer func() { opts.finished(rep, err) }()
	return runSession(ctx, source, peer, opts)
}

// RunFromPeer runs one session the other way round: peer answers for the source, and the
// target endpoint, opened here, initiates. It is RunPeer's contract with the roles of
// the two sides exchanged, for a source that is remote (an http(s) endpoint) and a local
// target: the descent is the same (it is symmetric), and a mirror sync reads the rows to
// upsert from the peer (Peer.Rows, one request per apply batch) and writes them here,
// conditional on the target's snapshot as always. The report speaks of source and target
// as RunPeer's does.
func RunFromPeer(ctx context.Context, peer Peer, target Endpoint, opts Options) (rep *Report, err error) {
	defer func() { opts.finished(rep, err) }()
	rep, err = runSessionAs(ctx, target, peer, opts, true)
	if err == nil {
		err = rootAfter(ctx, rep, target)
	}
	return rep, err
}

// runSession is RunPeer without the final log record and Observer call.
func runSession(ctx context.Context, source Endpoint, peer Peer, opts Options) (*Report, error) {
	return runSessionAs(ctx, source, peer, opts, false)
}

// runSessionAs runs a session whose initiator is the local endpoint: the source, or the
// target when reversed.
func runSessionAs(ctx context.Context, local Endpoint, peer Peer, opts Options, reversed bool) (*Report, error) {
	opts = opts.Defaults()
	start := time.Now()
	now := opts.Now
	if now == 0 {
		now = start.UnixNano()
	}
	rep := &Report{Mode: opts.Mode, DryRun: opts.DryRun, now: now}
	defer func() { rep.DurationMS = time.Since(start).Milliseconds() }()
	if opts.Mode != Diff && opts.Mode != Mirror {
		return rep, fmt.Errorf("mode %q is not supported: use diff or mirror", opts.Mode)
	}
	if opts.stopped() {
		return rep, fmt.Errorf("open session: %w", ErrStopped)
	}

	side := "source"
	if reversed {
		side = "target"
	}
	if l, ok := peer.(*Local); ok {
		l.preopen(ctx, now)
	}
	src, err := local.Open(ctx, now)
	if err != nil {
		return rep, fmt.Errorf("open %s snapshot: %w", side, err)
	}
	defer src.Close()

	s := &session{opts: opts, local: local, reversed: reversed, src: src, info: src.Info(), peer: peer, now: now, rep: rep, log: opts.logger(),
		names: [2]string{"source", "target"}}
	if reversed {
		s.names = [2]string{"target", "source"}
	}
	defer s.finishStats()
	s.log.Debug("session open", "mode", opts.Mode, "count_"+side, s.info.Root.Count, "ordering", s.info.Ordering)
	root, count := s.side(false)
	*root, *count = FormatFingerprint(s.info.Root.Fingerprint()), s.info.Root.Count

	fpBits, prefixBits, adaptive := 8*opts.FingerprintBytes, maxPrefixBits, true
	for attempt := 0; ; attempt++ {
		err := s.descend(ctx, fpBits, prefixBits, adaptive)
		if err != nil {
			return rep, err
		}
		if s.verify() {
			break
		}
		// A short fingerprint or entry prefix collided somewhere: the differences found do
		// not add up to the difference of the roots. Run again with a fresh nonce and
		// longer fingerprints; the collision cannot repeat.
		if attempt == 2 {
			return rep, fmt.Errorf("descend: the differences found do not account for the root digests after %d attempts (are the endpoints changing under their snapshots?)", attempt+1)
		}
		s.log.Warn("descend: a short fingerprint collided; running the descent again with 8-byte fingerprints", "attempt", attempt+1)
		fpBits, prefixBits, adaptive = 64, 64, false
	}
	s.classify()
	if opts.Mode == Diff {
		return rep, nil
	}
	return rep, s.mirror(ctx)
}

// session is one session as its initiator runs it. The initiator is the local endpoint:
// the source, or the target when reversed (RunFromPeer). Descent names the two sides I
// (initiator: src, info) and R (responder: peer, rootR); classify turns them into source
// and target.
type session struct {
	opts     Options
	local    Endpoint
	reversed bool
	names    [2]string // the initiator's and the responder's role, for messages
	src      Snapshot  // the initiator's snapshot (the target's when reversed)
	info     Info
	peer     Peer
	now      int64
	rep      *Report
	log      *slog.Logger

	params frameParams
	// fpBits and prefixBits are the fingerprint and entry prefix lengths of the round
	// being planned: maxFP and maxPrefix, or fewer bits where few parts can mismatch
	// (roundBits) when adaptive.
	fpBits, maxFP         int
	prefixBits, maxPrefix int
	adaptive              bool
	keyed                 *merkle.Keyed
	rootR                 merkle.Digest
	depth                 int // planned split levels from the root
	// cutLevels is the highest cut level the responder reads (OpenResponse.CutLevels):
	// cuts taken from a level up to it go on the wire short, as points of that level.
	cutLevels int

	onlyI, onlyR map[string]merkle.Entry // by position
	fetches      []Op
	next         []rng
	// The source listings a round's answers call for, run by settle after it named their
	// ranges to a Prefetcher.
	listings []listing
	// leaves lists them, read ahead on several cores where the snapshot forks.
	leaves *leafReader
	// leafR, leafI and leafE are settleLeaf's scratch: one leaf's prefixes on each side,
	// and the source's entries there.
	leafR []uint64
	leafI []valuedEntry
	leafE []merkle.Entry

	// Settled by classify: per key.
	srcOnly, tgtOnly, changed []string
	entryI, entryR            map[string]merkle.Entry // by key
}

// rng is a range still open: its digests differ. lo and hi are its bounds on the wire, of
// cut levels loL and hiL (Levels); x is the same range as the source cuts it (its cut
// entries the bounds snap to).
type rng struct {
	lo, hi   []byte
	loL, hiL uint8
	x        exactRange
	cI, cR   uint64
	depth    int
	list     bool // split made no progress here: list it
}

func (s *session) finishStats() {
	t := s.peer.Traffic()
	s.rep.BytesSent, s.rep.BytesReceived, s.rep.ValueBytes = t.Sent, t.Received, t.ValueBytes
	rs, rt := s.src.ReadStats(), s.peer.ReadStats()
	if s.reversed {
		rs, rt = rt, rs
	}
	s.rep.EntriesReadSource, s.rep.NodesReadSource = rs.Entries, rs.Nodes
	s.rep.EntriesReadTarget, s.rep.NodesReadTarget = rt.Entries, rt.Nodes
}

// side returns the report's root and count fields of the initiator (responder false) or
// of the responder.
func (s *session) side(responder bool) (*string, *uint64) {
	if responder == s.reversed {
		return &s.rep.RootSource, &s.rep.CountSource
	}
	return &s.rep.RootTarget, &s.rep.CountTarget
}

// targetRoot is the target's root digest.
func (s *session) targetRoot() merkle.Digest {
	if s.reversed {
		return s.info.Root
	}
	return s.rootR
}

func (s *session) progress(phase string, applied, pending int) {
	if s.opts.Progress == nil && s.opts.Observer == nil {
		return
	}
	p := Progress{Phase: phase, Rounds: s.rep.Rounds, Found: len(s.onlyI) + len(s.onlyR), Applied: applied, Pending: pending}
	if s.opts.Progress != nil {
		s.opts.Progress(p)
	}
	if s.opts.Observer != nil {
		s.opts.Observer.Progress(p)
	}
}

// descend runs the open round and the descent rounds, filling onlyI and onlyR.
func (s *session) descend(ctx context.Context, fpBits, prefixBits int, adaptive bool) error {
	req := &OpenRequest{Protocol: ProtocolVersion, Ordering: s.info.Ordering, Schema: s.info.Schema,
		Now: s.now, Root: s.info.Root}
	if _, err := readNonce(req.Nonce[:]); err != nil {
		return fmt.Errorf("session nonce: %w", err)
	}
	s.params = frameParams{ordering: s.info.Ordering}
	s.fpBits, s.maxFP, s.adaptive = fpBits, fpBits, adaptive
	s.prefixBits, s.maxPrefix = prefixBits, prefixBits
	s.cutLevels = 1 // the first split rides on the open request, before the responder says
	s.keyed = merkle.NewKeyed(req.Nonce[:])
	s.leaves = &leafReader{keyed: s.keyed}
	s.onlyI, s.onlyR, s.fetches, s.next = map[string]merkle.Entry{}, map[string]merkle.Entry{}, nil, nil

	// The first split of the root rides on the open request (the responder answers it only
	// when the roots differ), so the descent saves a round trip. The target's count is not
	// known yet: plan as if it held as many entries as the source.
	var ops []Op
	var handlers []func(Answer) error
	s.depth = s.plannedDepth(s.info.Root.Count)
	root := rng{cI: s.info.Root.Count, cR: s.info.Root.Count}
	if root.cI >= 2 {
		if err := s.plan(ctx, root, s.readPlan(ctx, s.src, root), &ops, &handlers); err != nil {
			return err
		}
		req.First = &RoundRequest{FPBits: uint8(s.fpBits), PrefixBits: uint8(s.prefixBits), FetchBits: uint8(s.prefixBits), Ops: ops}
	}
	resp, err := s.peer.Open(ctx, req)
	s.rep.Rounds++
	if err != nil {
		return err
	}
	if resp.Protocol != ProtocolVersion {
		return fmt.Errorf("open session: the %s speaks protocol %d, this side %d: run the same reconcile version on both sides", s.names[1], resp.Protocol, ProtocolVersion)
	}
	if err := checkCompatible(s.info.Ordering, s.info.Schema, Info{Ordering: resp.Ordering, Schema: resp.Schema}, s.names[0], s.names[1]); err != nil {
		return err
	}
	if ro, ok := s.peer.(ReadOnlyPeer); ok && ro.ReadOnly() && s.opts.Mode == Mirror && !s.opts.DryRun && !s.reversed {
		return fmt.Errorf("open session: the target refuses writes (%w): a mirror sync cannot write to it; use it as a diff target or a sync source; nothing was written", ErrReadOnly)
	}
	s.rootR = resp.Root
	s.cutLevels = int(resp.CutLevels)
	rootF, countF := s.side(true)
	*rootF, *countF = FormatFingerprint(resp.Root.Fingerprint()), resp.Root.Count
	if s.info.Root == s.rootR {
		return nil
	}
	// A target far larger than the source needs more levels than the first split planned.
	s.depth = max(s.depth, s.plannedDepth(s.rootR.Count))
	ranges := []rng{{cI: s.info.Root.Count, cR: s.rootR.Count}}
	if resp.First != nil {
		if err := s.settle(ctx, handlers, ops, resp.First); err != nil {
			return err
		}
		ranges = s.next
	}
	for len(ranges) > 0 || len(s.fetches) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		if s.opts.stopped() {
			return fmt.Errorf("descend: %w", ErrStopped)
		}
		var ops []Op
		var handlers []func(Answer) error
		s.fpBits = s.roundBits(ranges, s.maxFP)
		// The fetches ask for prefixes the last round listed, at its length.
		fetchBits := s.prefixBits
		s.prefixBits = s.roundBits(ranges, s.maxPrefix)
		pre, err := s.readPlans(ctx, ranges)
		if err != nil {
			return err
		}
		for i, r := range ranges {
			if err := s.plan(ctx, r, pre[i], &ops, &handlers); err != nil {
				return err
			}
		}
		for _, f := range s.fetches {
			f := f
			ops = append(ops, f)
			handlers = append(handlers, func(a Answer) error {
				for _, e := range a.Entries {
					s.onlyR[string(e.Position(s.info.Ordering))] = e
				}
				return nil
			})
		}
		s.fetches = nil
		if len(ops) == 0 {
			break
		}
		resp, err := s.peer.Round(ctx, &RoundRequest{FPBits: uint8(s.fpBits), PrefixBits: uint8(s.prefixBits), FetchBits: uint8(fetchBits), Ops: ops})
		s.rep.Rounds++
		if err != nil {
			return fmt.Errorf("round %d: %w", s.rep.Rounds, err)
		}
		if err := s.settle(ctx, handlers, ops, resp); err != nil {
			return err
		}
		ranges = s.next
		s.log.Debug("descend: round", "round", s.rep.Rounds, "ops", len(ops), "open_ranges", len(ranges), "found", len(s.onlyI)+len(s.onlyR),
			"reads_"+s.names[0], s.src.ReadStats(), "reads_"+s.names[1], s.peer.ReadStats(), "traffic", s.peer.Traffic())
		s.progress("descend", 0, 0)
	}
	s.cancelPairs()
	return nil
}

// cancelPairs drops the entries found on both sides: where the two sides cut a range at
// different cut entries (next to a difference), an entry both hold can land in parts that
// differ on each side and be reported by both (see cuts.go).
func (s *session) cancelPairs() {
	for p, e := range s.onlyI {
		if f, ok := s.onlyR[p]; ok && f.Hash() == e.Hash() {
			delete(s.onlyI, p)
			delete(s.onlyR, p)
		}
	}
}

// settle hands each answer of a round to its handler, then runs the source listings they
// called for; the ranges still open are left in s.next.
func (s *session) settle(ctx context.Context, handlers []func(Answer) error, ops []Op, resp *RoundResponse) error {
	if len(resp.Answers) != len(ops) {
		return fmt.Errorf("round %d: %d answers for %d operations", s.rep.Rounds, len(resp.Answers), len(ops))
	}
	s.next, s.listings = nil, nil
	for i, h := range handlers {
		if err := h(resp.Answers[i]); err != nil {
			return fmt.Errorf("round %d: %w", s.rep.Rounds, err)
		}
	}
	reads := make([]exactRange, len(s.listings))
	var leaves []exactRange
	for i, l := range s.listings {
		reads[i] = l.x
		if l.leaf {
			leaves = append(leaves, l.x)
		}
	}
	if err := prefetch(ctx, s.src, reads); err != nil {
		return fmt.Errorf("round %d: %w", s.rep.Rounds, err)
	}
	s.leaves.readAhead(s.src, leaves)
	defer s.leaves.readAhead(nil, nil)
	for _, l := range s.listings {
		if err := l.run(); err != nil {
			return fmt.Errorf("round %d: %w", s.rep.Rounds, err)
		}
	}
	s.listings = nil
	return nil
}

// listing is a listing of the source's entries in x that a round's answer calls for: a
// leaf's (settleLeaf, read through s.leaves) or a page's (settleList, which may be large
// and needs no entry prefixes).
type listing struct {
	x    exactRange
	leaf bool
	run  func() error
}

// roundBits is the length of a round's fingerprints (most: maxFP) or entry prefixes
// (maxPrefix) over ranges, from 16 bits up to most: long enough that the round causes a
// second pass about once in 1,000 rounds.
//
// A fingerprint collision is a mismatching part whose fingerprints happen to match, and
// only mismatching parts can collide (mismatches counts them). Prefixes that collide cost
// a second pass only where a source-only and a target-only entry of one listed part share
// a prefix that no other entry there has (settleLeaf resolves the other collisions, and
// lists a part in full where many of its entries differ): about one such pair per
// mismatching part, so the same count and the same rule.
func (s *session) roundBits(ranges []rng, most int) int {
	if !s.adaptive {
		return most
	}
	var m float64
	for _, r := range ranges {
		m += s.mismatches(r)
	}
	return marginBits(m, most)
}

// mismatches is how many of r's parts the next round expects to mismatch: about one, or
// the counts' difference where it is larger, up to the parts r is cut into.
func (s *session) mismatches(r rng) float64 {
	d := max(r.cI, r.cR) - min(r.cI, r.cR)
	return float64(min(max(d, 1), uint64(s.fanout(r.cI, r.depth))))
}

// marginBits is the length, 16 bits up to most, that makes a collision among n chances
// about 2^-fpMarginBits likely.
func marginBits(n float64, most int) int {
	bits := int(math.Ceil(math.Log2(max(n, 1)) + fpMarginBits))
	return min(max(bits, 16), most)
}

// fpMarginBits is how unlikely a round's collision is: 2^-10.
const fpMarginBits = 10

// plannedDepth is how many split levels take a range of n entries down to leaves of
// about half LeafMax, with fanouts near 48: more levels cost round trips, fewer cost bytes.
func (s *session) plannedDepth(n uint64) int {
	target := max(float64(s.opts.LeafMax)/2, 1)
	if float64(n) <= target {
		return 1
	}
	d := int(math.Ceil(math.Log(float64(n)/target) / math.Log(48)))
	return min(max(d, 1), 4)
}

// fanout is how many parts a range of c entries at depth is cut into: enough that leaves
// are reached in the planned number of levels, never fewer than Fanout.
func (s *session) fanout(c uint64, depth int) int {
	left := s.depth - depth
	if left < 1 {
		left = 1
	}
	// Aim at parts of half a leaf, so that the variance of part sizes rarely leaves a
	// mismatching part just over LeafMax, which would cost one more round.
	target := max(float64(s.opts.LeafMax)/2, 1)
	f := int(math.Ceil(math.Pow(float64(c)/target, 1/float64(left))))
	if left == 2 {
		// The split before the last cuts into parts of about 16 leaves, the span of a
		// level-2 node of a stored index (merkle.Stored): that split then costs neither
		// side a read below level 2 (its bounds go on the wire as level-2 points, or whole
		// to a responder that reads only level 1), and the last split, which is paid per
		// differing key, cuts a part into only about 16 leaves.
		f = max(f, int(float64(c)/(target*16)))
	}
	f = max(f, s.opts.Fanout)
	f = min(f, 4096)
	if uint64(f) > c {
		f = int(c)
	}
	return max(f, 2)
}

const listPage = 65536

// readNonce fills a session's nonce (tests fix it).
var readNonce = rand.Read

// FixNonce makes every session use the same nonce until restore is called, so that two
// sessions over the same data send the same bytes and read the same entries: which
// entries share a short prefix, and so what a session fetches, depends on the nonce. It
// is for reproducible measurements (tests, benchmarks that compare two pairs of stores),
// never for production: a nonce known in advance lets crafted data make short
// fingerprints collide on purpose (each collision still costs only a second pass). Not
// safe to call while sessions run.
func FixNonce() (restore func()) {
	old := readNonce
	readNonce = func(b []byte) (int, error) {
		for i := range b {
			b[i] = byte(i)
		}
		return len(b), nil
	}
	return func() { readNonce = old }
}

// How a range is planned (planKind).
const (
	planSourceOnly = iota // nothing on the target: every source entry here is source-only
	planList              // list the target's entries
	planLeaf              // compare the whole range
	planSplit             // cut it and compare the parts
)

// planKind says how r is planned.
func (s *session) planKind(r rng) int {
	switch {
	case r.cR == 0:
		return planSourceOnly
	case r.cI == 0 || r.list || r.depth >= s.depth:
		// Past the planned levels only oversized leaves are left: list them in full now
		// rather than cut them once more and fetch what their listing lacks a round later.
		return planList
	case r.cR <= uint64(s.opts.LeafMax):
		return planLeaf
	case r.cI < 2 || 2*min(r.cI, r.cR) < max(r.cI, r.cR):
		// The counts show that most of the range differs: list it rather than split it.
		return planList
	}
	return planSplit
}

// planRead is what planning a range reads from the source: its cuts (planSplit) or its
// digest (planLeaf). A round reads them all before it plans (readPlans), so that a
// Forker source reads them on several cores.
type planRead struct {
	cuts, prevs [][]byte
	level       int
	ds          []merkle.Digest
	fps         []byte // the fingerprints of ds
	known       bool
	err         error
}

// readPlans reads what planning each of ranges reads, with forEach.
func (s *session) readPlans(ctx context.Context, ranges []rng) ([]planRead, error) {
	out := make([]planRead, len(ranges))
	err := forEach(ctx, s.src, len(ranges), func(view Snapshot, i int) error {
		out[i] = s.readPlan(ctx, view, ranges[i])
		return nil
	})
	return out, err
}

// readPlan reads from view what planning r reads, and the fingerprints of the digests.
func (s *session) readPlan(ctx context.Context, view Snapshot, r rng) planRead {
	var p planRead
	switch s.planKind(r) {
	case planSplit:
		p.cuts, p.prevs, p.level, p.ds, p.known, p.err = splitCuts(ctx, view, r.x.lo, r.x.hi, s.fanout(r.cI, r.depth), r.cI, s.cutLevels)
		if p.err != nil {
			p.err = fmt.Errorf("split source range: %w", p.err)
			return p
		}
		if len(p.cuts) == 0 {
			return p // listed instead
		}
	case planLeaf:
	default:
		return p
	}
	switch {
	case r.x.empty:
		p.ds = make([]merkle.Digest, len(p.cuts)+1)
	case p.ds == nil:
		if p.ds, _, p.err = cutDigests(ctx, view, r.x.lo, r.x.hi, p.cuts, r.cI); p.err != nil {
			p.err = fmt.Errorf("source digests: %w", p.err)
			return p
		}
	}
	p.fps = appendFingerprints(make([]byte, 0, len(p.ds)*shortBytes(s.fpBits)), s.keyed, p.ds, s.fpBits)
	return p
}

// plan adds the operation that advances r, or settles r locally; pre is what readPlan
// read for it.
func (s *session) plan(ctx context.Context, r rng, pre planRead, ops *[]Op, handlers *[]func(Answer) error) error {
	kind := s.planKind(r)
	if pre.err != nil {
		return pre.err
	}
	switch kind {
	case planSourceOnly:
		return s.eachSource(ctx, r.x, func(e merkle.Entry) { s.onlyI[string(e.Position(s.info.Ordering))] = e })
	case planList:
		*ops = append(*ops, Op{Kind: OpList, Lo: r.lo, Hi: r.hi, Levels: r.levels(1), Limit: listPage})
		*handlers = append(*handlers, func(a Answer) error { return s.settleList(ctx, r, a) })
		return nil
	case planLeaf:
		return s.compare(ctx, r, nil, 1, nil, pre.ds, pre.fps, ops, handlers)
	default:
		cuts, prevs, level, ds, known := pre.cuts, pre.prevs, pre.level, pre.ds, pre.known
		if len(cuts) == 0 {
			r.list = true
			return s.plan(ctx, r, planRead{}, ops, handlers)
		}
		// Each cut goes on the wire as a short separator that snaps back to it: a prefix
		// above the cut entry of its level before it (and above the previous bound).
		seps := make([][]byte, len(cuts))
		last := r.lo
		for i, b := range cuts {
			p := prevs[i]
			if last != nil && (p == nil || bytes.Compare(last, p) > 0) {
				p = last
			}
			seps[i] = separator(s.info.Ordering, b, p, known)
			last = seps[i]
		}
		return s.compare(ctx, r, seps, uint8(level), cuts, ds, pre.fps, ops, handlers)
	}
}

// levels are the cut levels of r's bounds, with its parts' bounds at level bl.
func (r rng) levels(bl uint8) Levels { return Levels{Lo: r.loL, Hi: r.hiL, Bounds: bl} }

// eachSource calls fn for each source entry of the exact range x.
func (s *session) eachSource(ctx context.Context, x exactRange, fn func(merkle.Entry)) error {
	if x.empty {
		return nil
	}
	return eachEntry(ctx, s.src, x.lo, x.hi, fn)
}

// compare sends the source's fingerprints fps of r's parts, cut at the wire bounds (of
// cut level bl), which snap to the source's cut entries cuts; ds are the parts' digests
// (readPlan reads both).
func (s *session) compare(ctx context.Context, r rng, bounds [][]byte, bl uint8, cuts [][]byte, ds []merkle.Digest, fps []byte, ops *[]Op, handlers *[]func(Answer) error) error {
	listMax := s.opts.LeafMax
	if r.depth+1 >= s.depth {
		// Parts of the last planned level: list the prefixes of a part several times
		// larger than a leaf (a long level-1 node, which no cut can split) rather than
		// its full entries a round later.
		listMax *= 16
	}
	*ops = append(*ops, Op{Kind: OpCompare, Lo: r.lo, Hi: r.hi, Levels: r.levels(bl), Bounds: bounds, FPs: fps, ListMax: uint32(listMax)})
	*handlers = append(*handlers, func(a Answer) error {
		if len(a.Mismatch) != len(ds) {
			return fmt.Errorf("compare answer with %d parts for %d", len(a.Mismatch), len(ds))
		}
		k := 0
		merge := -1 // index in s.next of the part just before this one, when it may grow
		pl := s.prefixBits
		for j, mm := range a.Mismatch {
			if !mm {
				merge = -1
				continue
			}
			if k >= len(a.Counts) {
				return fmt.Errorf("compare answer short of counts")
			}
			if merge >= 0 && misaligned(s.next[merge].cI, s.next[merge].cR, ds[j].Count, a.Counts[k]) {
				// Two neighbouring parts cut at a point above level 1 both mismatch, the
				// target holding many more entries than the source in one and many fewer
				// in the other: the responder read that point as another cut entry (one
				// only it holds, or one it lacks, up to a level-2 node away: often the next
				// bound, leaving one part empty there and the other doubled), so the
				// entries between lie in different parts on the two sides. Go on with the
				// two as one range (a listing of the second is dropped), where they line up
				// again, instead of listing them in full on both sides.
				m := &s.next[merge]
				_, m.hi = partBounds(r.lo, r.hi, bounds, j)
				nx := exactPart(r.x, cuts, j)
				m.x.hi, m.x.empty = nx.hi, m.x.empty && nx.empty
				m.cI, m.cR = m.cI+ds[j].Count, m.cR+a.Counts[k]
				if j == len(bounds) {
					m.hiL = r.hiL
				}
				k++
				continue
			}
			merge = -1
			lo, hi := partBounds(r.lo, r.hi, bounds, j)
			part := rng{lo: lo, hi: hi, loL: bl, hiL: bl, x: exactPart(r.x, cuts, j), cI: ds[j].Count, cR: a.Counts[k], depth: r.depth + 1}
			if j == 0 {
				part.loL = r.loL
			}
			if j == len(bounds) {
				part.hiL = r.hiL
			}
			if listed := a.Listed[k]; listed != nil {
				s.listings = append(s.listings, listing{part.x, true, func() error { return s.settleLeaf(ctx, part, listed, pl) }})
			} else {
				if len(bounds) == 0 && part.cI == r.cI && part.cR == r.cR && r.depth > 0 {
					part.list = true // no progress: list it next round
				}
				if bl > 1 {
					merge = len(s.next)
				}
				s.next = append(s.next, part)
			}
			k++
		}
		return nil
	})
	return nil
}

// misaligned reports whether two neighbouring parts' counts (source, target) look like
// the sides cut between them at different entries: the target's surplus in one is a
// deficit in the other, of at least a level-1 node and of a sixteenth of the parts.
func misaligned(cI1, cR1, cI2, cR2 uint64) bool {
	d1, d2 := int64(cR1)-int64(cI1), int64(cR2)-int64(cI2)
	least := max(16, int64(cI1+cI2)/16)
	return (d1 > 0) != (d2 > 0) && min(abs(d1), abs(d2)) >= least
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

// settleLeaf (a listing, run by settle) compares the target's entry prefixes of a small
// range, pl bits each, with the source's entries there. Where both sides hold as many
// entries with a prefix, they are taken to be the same entries. Otherwise the source's
// entries with that prefix are taken to be source-only and the target's are fetched in
// full next round (cancelPairs drops the entries both turn out to hold), so that two
// entries sharing a prefix cost a fetch, not a second pass.
//
// Where many of the range's entries differ on both sides, a source-only and a
// target-only entry among them may share a prefix and pass for one entry both hold:
// the chance grows with the product of the two sides' unmatched entries. Past
// leafPairsMax such pairs the range is listed in full next round instead, compared by
// whole EntryHash; most of its target entries would be fetched anyway.
func (s *session) settleLeaf(ctx context.Context, r rng, listed []byte, pl int) error {
	if pl > 64 {
		return fmt.Errorf("entry prefixes of %d bits: at most 64 are listed", pl) // maxPrefixBits, or 64 on the second pass
	}
	// Both sides' prefixes as numbers, sorted, then walked together a value at a time:
	// every leaf comes here, and maps keyed by strings cost more than the rest of the work
	// (a tenth of the initiator's goroutine in a 10M-row session's profile).
	w := shortBytes(pl)
	theirs := s.leafR[:0]
	for j := 0; j+w <= len(listed); j += w {
		theirs = append(theirs, prefixValue(listed[j:j+w]))
	}
	slices.Sort(theirs)
	mine, entries := s.leafI[:0], s.leafE[:0]
	err := s.leaves.each(ctx, s.src, r.x, func(pe *prefixedEntry) {
		mine = append(mine, valuedEntry{pe.prefixValue(pl), len(entries)})
		entries = append(entries, pe.e)
	})
	s.leafR, s.leafI, s.leafE = theirs, mine, entries
	if err != nil {
		return err
	}
	slices.SortFunc(mine, func(a, b valuedEntry) int { return cmp.Compare(a.p, b.p) })
	var want []byte
	unmatchedR := 0
	var unmatchedI []merkle.Entry
	for i, j := 0, 0; i < len(mine) || j < len(theirs); {
		v := uint64(math.MaxUint64)
		if i < len(mine) {
			v = mine[i].p
		}
		if j < len(theirs) {
			v = min(v, theirs[j])
		}
		ni, nj := 0, 0
		for i+ni < len(mine) && mine[i+ni].p == v {
			ni++
		}
		for j+nj < len(theirs) && theirs[j+nj] == v {
			nj++
		}
		if ni != nj {
			// Not as many entries with this prefix on both sides: the source's are taken
			// as its own, the target's fetched whole (the ones both hold cancel later).
			for _, m := range mine[i : i+ni] {
				unmatchedI = append(unmatchedI, entries[m.i])
			}
			if nj > 0 {
				want = appendPrefixValue(want, v, w)
				unmatchedR += nj
			}
		}
		i, j = i+ni, j+nj
	}
	if len(unmatchedI)*unmatchedR > leafPairsMax {
		r.list = true
		s.next = append(s.next, r)
		return nil
	}
	for _, e := range unmatchedI {
		s.onlyI[string(e.Position(s.info.Ordering))] = e
	}
	if len(want) > 0 {
		s.fetches = append(s.fetches, Op{Kind: OpFetch, Lo: r.lo, Hi: r.hi, Levels: r.levels(1), Prefixes: want})
	}
	return nil
}

// valuedEntry is a source entry's prefix as a number (prefixValue) and the entry's index
// in settleLeaf's list (sorting moves these 16 bytes, not the entries).
type valuedEntry struct {
	p uint64
	i int
}

// maxPrefixBits is the longest entry prefix a first pass lists (tests shorten it to
// make prefixes collide).
var maxPrefixBits = 32

// leafPairsMax is how many pairs of a listed range's unmatched source and target entries
// settleLeaf takes on trust before it lists the range in full.
const leafPairsMax = 16

// settleList compares a page of the target's full entries with the source's entries over
// the part of r that page covers (a listing, run by settle); the rest of r is listed next
// round.
func (s *session) settleList(ctx context.Context, r rng, a Answer) error {
	o := s.info.Ordering
	x := r.x
	if a.More && len(a.Entries) > 0 {
		// The page ends just before a target cut entry; the rest starts at the bound just
		// past its last entry, which the source snaps to its own cut entry.
		hi := append(a.Entries[len(a.Entries)-1].Position(o), 0)
		cut, err := snapCuts(ctx, s.src, [][]byte{hi})
		if err != nil {
			return err
		}
		rest := rng{lo: hi, hi: r.hi, hiL: r.hiL, x: exactRange{lo: cut[0], hi: r.x.hi, empty: r.x.empty || cut[0] == nil}, cI: 1, cR: 1, depth: r.depth, list: true}
		if cut[0] != nil {
			x.hi = cut[0]
		}
		s.next = append(s.next, rest)
	}
	// The target's entries not matched by a source entry, by hash (each hashed once).
	s.listings = append(s.listings, listing{x, false, func() error {
		target := make(map[merkle.Hash]merkle.Entry, len(a.Entries))
		for _, e := range a.Entries {
			target[e.Hash()] = e
		}
		err := eachHashed(ctx, s.src, x, func(e merkle.Entry, h merkle.Hash) {
			if _, ok := target[h]; ok {
				delete(target, h)
				return
			}
			s.onlyI[string(e.Position(o))] = e
		})
		if err != nil {
			return err
		}
		for _, e := range target {
			s.onlyR[string(e.Position(o))] = e
		}
		return nil
	}})
	return nil
}

// verify checks that the differences found account exactly for the difference of the two
// root digests. Digests are full 256-bit sums, so a short fingerprint or prefix collision
// that hid a difference is caught here.
func (s *session) verify() bool {
	var sumI, sumR merkle.Digest
	for _, e := range s.onlyI {
		sumI = sumI.Add(e.Digest())
	}
	for _, e := range s.onlyR {
		sumR = sumR.Add(e.Digest())
	}
	return s.info.Root.Sub(s.rootR) == sumI.Sub(sumR)
}

// classify groups the differing entries by key, as the source's and the target's.
func (s *session) classify() {
	if s.reversed {
		s.onlyI, s.onlyR = s.onlyR, s.onlyI // from here on, I is the source and R the target
	}
	s.entryI = make(map[string]merkle.Entry, len(s.onlyI))
	s.entryR = make(map[string]merkle.Entry, len(s.onlyR))
	for _, e := range s.onlyI {
		s.entryI[string(e.Key)] = e
	}
	for _, e := range s.onlyR {
		s.entryR[string(e.Key)] = e
	}
	for k := range s.entryI {
		if _, ok := s.entryR[k]; ok {
			s.changed = append(s.changed, k)
		} else {
			s.srcOnly = append(s.srcOnly, k)
		}
	}
	for k := range s.entryR {
		if _, ok := s.entryI[k]; !ok {
			s.tgtOnly = append(s.tgtOnly, k)
		}
	}
	sort.Strings(s.srcOnly)
	sort.Strings(s.tgtOnly)
	sort.Strings(s.changed)
	s.rep.OnlySource, s.rep.OnlyTarget, s.rep.Changed = len(s.srcOnly), len(s.tgtOnly), len(s.changed)
	limit := s.opts.MaxDifferences
	if limit == 0 {
		limit = DifferenceSample
	}
	add := func(class string, keys []string) {
		for _, k := range keys {
			if limit >= 0 && len(s.rep.Differences) >= limit {
				return
			}
			d := Difference{Class: class, Key: s.keyString([]byte(k))}
			if e, ok := s.entryI[k]; ok {
				d.SourceVersion, d.SourceVersionText = e.Version, s.versionString(e.Version)
			}
			if e, ok := s.entryR[k]; ok {
				d.TargetVersion, d.TargetVersionText = e.Version, s.versionString(e.Version)
			}
			s.rep.Differences = append(s.rep.Differences, d)
		}
	}
	add("changed", s.changed)
	add("only_source", s.srcOnly)
	add("only_target", s.tgtOnly)
}
