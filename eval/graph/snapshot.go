package graph

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/nbuild/nbuild/eval/drv"
	"github.com/nbuild/nbuild/store"
	"github.com/nbuild/nbuild/store/cachedir"
)

// A snapshot is a Graph saved to one file, so that loading the same
// closure again reads one small file instead of thousands of .drv files.
// A .drv path names its content, so a snapshot never goes stale; it is
// keyed by the store root and the sorted roots (SnapshotFile).
//
// Layout (integers are unsigned varints unless said otherwise):
//
//	magic "nbuild-graph\x00" and version byte 2
//	counts: strings, lists, nodes, outputs, edges, sources (totals)
//	the nodes' length in bytes; checkpoints: count, then each a node
//	  NodeID, its offset in the nodes, and the outputs, edges and sources
//	  of the nodes before it (one every snapshotChunk nodes)
//	string table: length, bytes
//	list table: length, string indexes (output-name lists, feature sets)
//	nodes, in NodeID order:
//	  path (digest: 20 raw bytes; name: string index), system
//	  outputs: count; each name, 0 or 1, and a path when 1
//	  inputs: count; each input NodeID (below this node's), list index
//	  sources: count; each a path
//	  feature list index + 1 (0: none), flags byte, kind byte
//	roots: count; each a NodeID
//	CRC-32C (4 bytes, little endian) of everything before it
//
// Decoding checks every count, index and name, so a truncated or corrupt
// file is an error (ErrSnapshot), never a panic or a wrong graph. The
// checkpoints cut the nodes into chunks that decode on all cores at once
// (version 1 had none: a 100,000-node closure decoded on one core); each
// chunk must end exactly at the next checkpoint with exactly its counts.

// ErrSnapshot is wrapped by the error for a snapshot that cannot be used.
var ErrSnapshot = errors.New("graph: invalid snapshot")

const (
	snapshotMagic = "nbuild-graph\x00\x02"
	// snapshotChunk is how many nodes lie between checkpoints.
	snapshotChunk   = 4096
	flagPreferLocal = 1 << 0
	flagAllowSubst  = 1 << 1
)

// castagnoli is made on first use: making it at init cost every process
// that links this package (every nbuild command) 0.1 ms.
var castagnoli = sync.OnceValue(func() *crc32.Table { return crc32.MakeTable(crc32.Castagnoli) })

// SnapshotFile returns the name of the snapshot of the closure of roots in
// the store under storeRoot ("" or "/" for /nix/store): a hash of both, so
// the same set of roots in any order finds the same file.
func SnapshotFile(storeRoot string, roots []store.Path) string {
	if storeRoot == "/" {
		storeRoot = ""
	}
	names := make([]string, len(roots))
	for i, r := range roots {
		names[i] = r.String()
	}
	slices.Sort(names)
	names = slices.Compact(names)
	h := sha256.New()
	h.Write([]byte(storeRoot))
	for _, n := range names {
		h.Write([]byte{0})
		h.Write([]byte(n))
	}
	return hex.EncodeToString(h.Sum(nil)[:16]) + ".graph"
}

// AppendSnapshot appends the snapshot encoding of g to dst.
func (g *Graph) AppendSnapshot(dst []byte) []byte { return g.appendSnapshot(dst, snapshotChunk) }

// appendSnapshot is AppendSnapshot with a checkpoint every chunk nodes.
func (g *Graph) appendSnapshot(dst []byte, chunk int) []byte {
	e := snapshotEncoder{strs: map[string]int{}, lists: map[string]int{}}
	var nOut, nEdge, nSrc int
	for i := range g.nodes {
		n := &g.nodes[i]
		nOut += len(n.Outputs)
		nEdge += len(n.Inputs)
		nSrc += len(n.InputSrcs)
	}
	// The body first, so the tables it fills can precede it.
	var body []byte
	var checkpoints []uint64
	var outs, edges, srcs int
	for i := range g.nodes {
		n := &g.nodes[i]
		if i > 0 && i%chunk == 0 {
			checkpoints = append(checkpoints, uint64(i), uint64(len(body)), uint64(outs), uint64(edges), uint64(srcs))
		}
		outs, edges, srcs = outs+len(n.Outputs), edges+len(n.Inputs), srcs+len(n.InputSrcs)
		body = e.path(body, n.Path)
		body = binary.AppendUvarint(body, e.str(n.System))
		body = binary.AppendUvarint(body, uint64(len(n.Outputs)))
		for _, o := range n.Outputs {
			body = binary.AppendUvarint(body, e.str(o.Name))
			if o.Path.IsZero() {
				body = append(body, 0)
			} else {
				body = e.path(append(body, 1), o.Path)
			}
		}
		body = binary.AppendUvarint(body, uint64(len(n.Inputs)))
		for _, in := range n.Inputs {
			body = binary.AppendUvarint(body, uint64(in.To))
			body = binary.AppendUvarint(body, e.list(in.Outputs))
		}
		body = binary.AppendUvarint(body, uint64(len(n.InputSrcs)))
		for _, s := range n.InputSrcs {
			body = e.path(body, s)
		}
		feat := uint64(0)
		if n.RequiredFeatures != nil {
			feat = e.list(n.RequiredFeatures) + 1
		}
		body = binary.AppendUvarint(body, feat)
		var flags byte
		if n.PreferLocalBuild {
			flags |= flagPreferLocal
		}
		if n.AllowSubstitutes {
			flags |= flagAllowSubst
		}
		body = append(body, flags, byte(n.Kind))
	}
	nodesLen := len(body)
	body = binary.AppendUvarint(body, uint64(len(g.roots)))
	for _, r := range g.roots {
		body = binary.AppendUvarint(body, uint64(r))
	}

	start := len(dst)
	dst = append(dst, snapshotMagic...)
	for _, c := range []int{len(e.strTab), len(e.listTab), len(g.nodes), nOut, nEdge, nSrc, nodesLen, len(checkpoints) / 5} {
		dst = binary.AppendUvarint(dst, uint64(c))
	}
	for _, c := range checkpoints {
		dst = binary.AppendUvarint(dst, c)
	}
	for _, s := range e.strTab {
		dst = binary.AppendUvarint(dst, uint64(len(s)))
		dst = append(dst, s...)
	}
	for _, l := range e.listTab {
		dst = binary.AppendUvarint(dst, uint64(len(l)))
		for _, s := range l {
			dst = binary.AppendUvarint(dst, e.str(s))
		}
	}
	dst = append(dst, body...)
	return binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli()))
}

type snapshotEncoder struct {
	strs    map[string]int
	strTab  []string
	lists   map[string]int
	listTab [][]string
}

func (e *snapshotEncoder) str(s string) uint64 {
	k, ok := e.strs[s]
	if !ok {
		k = len(e.strTab)
		e.strs[s] = k
		e.strTab = append(e.strTab, s)
	}
	return uint64(k)
}

func (e *snapshotEncoder) list(l []string) uint64 {
	key := strings.Join(l, "\x00")
	if len(l) == 0 {
		key = "\x01" // not the key of [""]
	}
	k, ok := e.lists[key]
	if !ok {
		k = len(e.listTab)
		e.lists[key] = k
		e.listTab = append(e.listTab, l)
		for _, s := range l {
			e.str(s) // strings precede lists in the file
		}
	}
	return uint64(k)
}

func (e *snapshotEncoder) path(dst []byte, p store.Path) []byte {
	d := p.Digest()
	dst = append(dst, d[:]...)
	return binary.AppendUvarint(dst, e.str(p.Name()))
}

// DecodeSnapshot decodes a snapshot made by AppendSnapshot. The Graph's
// strings point into data, which the caller must not modify afterwards.
// root is the store root the Graph reads full derivations from
// (Graph.Derivation). Errors wrap ErrSnapshot.
func DecodeSnapshot(data []byte, root string) (*Graph, error) {
	if len(data) < len(snapshotMagic)+4 {
		return nil, fmt.Errorf("%w: too short", ErrSnapshot)
	}
	body := data[:len(data)-4]
	if crc32.Checksum(body, castagnoli()) != binary.LittleEndian.Uint32(data[len(body):]) {
		return nil, fmt.Errorf("%w: checksum mismatch", ErrSnapshot)
	}
	return decodeSnapshotBody(body, root)
}

// snapshotReader reads the body of a snapshot with a sticky error.
type snapshotReader struct {
	data string // the whole body, as one string the result shares
	pos  int
	err  error
}

func (r *snapshotReader) fail(msg string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s at offset %d", ErrSnapshot, msg, r.pos)
	}
	r.pos = len(r.data)
}

func (r *snapshotReader) uvarint() uint64 {
	// Varints of up to three bytes (counts, indexes into the string table
	// of a 100,000-node closure, input ids) are decoded without a loop.
	if p := r.pos; p+2 < len(r.data) {
		b0, b1, b2 := r.data[p], r.data[p+1], r.data[p+2]
		switch {
		case b0 < 0x80:
			r.pos = p + 1
			return uint64(b0)
		case b1 < 0x80:
			r.pos = p + 2
			return uint64(b0&0x7f) | uint64(b1)<<7
		case b2 < 0x80:
			r.pos = p + 3
			return uint64(b0&0x7f) | uint64(b1&0x7f)<<7 | uint64(b2)<<14
		}
	}
	var x uint64
	for shift := 0; r.pos < len(r.data); shift += 7 {
		b := r.data[r.pos]
		r.pos++
		if shift == 63 && b > 1 {
			break
		}
		if b < 0x80 {
			return x | uint64(b)<<shift
		}
		x |= uint64(b&0x7f) << shift
	}
	r.fail("bad varint")
	return 0
}

// count reads a count of items of at least minSize bytes each, bounded by
// what is left, so a corrupt count cannot make a huge allocation.
func (r *snapshotReader) count(minSize int) int {
	n := r.uvarint()
	if n > uint64(len(r.data)-r.pos)/uint64(minSize) {
		r.fail("count larger than the file")
		return 0
	}
	return int(n)
}

// index reads an index below n.
func (r *snapshotReader) index(n int) int {
	k := r.uvarint()
	if k >= uint64(n) {
		r.fail("index out of range")
		return 0
	}
	return int(k)
}

func (r *snapshotReader) byte() byte {
	if r.pos >= len(r.data) {
		r.fail("unexpected end")
		return 0
	}
	b := r.data[r.pos]
	r.pos++
	return b
}

func decodeSnapshotBody(body []byte, root string) (*Graph, error) {
	if !bytes.HasPrefix(body, []byte(snapshotMagic)) {
		return nil, fmt.Errorf("%w: not a graph snapshot (version 2)", ErrSnapshot)
	}
	if root == "/" {
		root = ""
	}
	r := &snapshotReader{data: unsafe.String(unsafe.SliceData(body), len(body)), pos: len(snapshotMagic)}
	// Minimum encoded sizes bound every count: a string 1 byte, a list 1,
	// a node 26 (digest, name, system, 4 counts, flags, kind), an output
	// 2, an edge 2, a source 21.
	nStr, nList, nNode := r.count(1), r.count(1), r.count(26)
	nOut, nEdge, nSrc := r.count(2), r.count(2), r.count(21)
	// Checkpoints: strictly increasing nodes and offsets, counts that
	// never decrease, all within the totals; the end of the nodes closes
	// the last chunk.
	nodesLen := r.count(1)
	bounds := []chunkBound{{}}
	for range r.count(5) {
		b := chunkBound{node: r.uvarint(), off: r.uvarint(), outs: r.uvarint(), edges: r.uvarint(), srcs: r.uvarint()}
		last := bounds[len(bounds)-1]
		if b.node <= last.node || b.node >= uint64(nNode) || b.off <= last.off || b.off >= uint64(nodesLen) ||
			b.outs < last.outs || b.outs > uint64(nOut) || b.edges < last.edges || b.edges > uint64(nEdge) ||
			b.srcs < last.srcs || b.srcs > uint64(nSrc) {
			r.fail("bad checkpoint")
			break
		}
		bounds = append(bounds, b)
	}
	bounds = append(bounds, chunkBound{uint64(nNode), uint64(nodesLen), uint64(nOut), uint64(nEdge), uint64(nSrc)})
	t := &snapshotTables{strs: make([]string, nStr)}
	for i := range t.strs {
		n := r.count(1)
		t.strs[i] = r.data[r.pos : r.pos+n]
		r.pos += n
	}
	t.lists = make([][]string, nList)
	var listStore []string
	for i := range t.lists {
		n := r.count(1)
		if r.err != nil {
			break
		}
		start := len(listStore)
		for range n {
			listStore = append(listStore, t.str(r))
		}
		l := listStore[start:len(listStore):len(listStore)]
		// Output names and features are sorted sets, as Load makes them.
		for k := 1; k < len(l); k++ {
			if l[k-1] >= l[k] {
				r.fail("list not sorted")
			}
		}
		t.lists[i] = l
	}
	base := r.pos
	if r.err == nil && nodesLen > len(r.data)-base {
		r.fail("nodes longer than the file")
	}
	if r.err != nil {
		return nil, r.err
	}

	g := &Graph{root: root, nodes: make([]Node, nNode), index: make(map[store.Path]NodeID, nNode)}
	outs := make([]Output, nOut)
	edges := make([]Edge, nEdge)
	srcs := make([]store.Path, nSrc)
	// The chunks decode on every core, each worker with its own name
	// checks and recent paths; the first error in file order is reported.
	chunks := len(bounds) - 1
	errs := make([]error, chunks)
	var next atomic.Int64
	work := func() {
		d := &chunkDecoder{t: t, nameOK: make([]int8, nStr)}
		for c := int(next.Add(1) - 1); c < chunks; c = int(next.Add(1) - 1) {
			errs[c] = d.chunk(r.data, base, bounds[c], bounds[c+1], g.nodes, outs, edges, srcs)
		}
	}
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), chunks) - 1 {
		wg.Go(work)
	}
	work()
	wg.Wait()
	if err := cmp.Or(errs...); err != nil {
		return nil, err
	}
	r.pos = base + nodesLen
	nRoot := r.count(1)
	if r.err == nil {
		g.roots = make([]NodeID, nRoot)
		for i := range g.roots {
			g.roots[i] = NodeID(r.index(nNode))
		}
	}
	if r.err == nil && r.pos != len(r.data) {
		r.fail("trailing data")
	}
	if r.err != nil {
		return nil, r.err
	}
	if dup := g.buildIndexes(); dup >= 0 {
		return nil, fmt.Errorf("%w: node %d repeats %s", ErrSnapshot, dup, g.nodes[dup].Path)
	}
	return g, nil
}

// chunkBound is a checkpoint: the first node of a chunk, its offset in
// the nodes, and the outputs, edges and sources before it.
type chunkBound struct{ node, off, outs, edges, srcs uint64 }

// snapshotTables are a snapshot's string and list tables.
type snapshotTables struct {
	strs  []string
	lists [][]string
}

// str reads a string index.
func (t *snapshotTables) str(r *snapshotReader) string {
	if k := r.index(len(t.strs)); r.err == nil {
		return t.strs[k]
	}
	return ""
}

// chunkDecoder decodes chunks of nodes on one goroutine.
type chunkDecoder struct {
	r      snapshotReader
	t      *snapshotTables
	nameOK []int8 // per string: 0 unknown, 1 valid name, -1 invalid
	// Input sources repeat (a 100,000-node closure used 3 of them 199,062
	// times): the last path made with each name, by name index modulo the
	// table's size, is reused when the digest matches too, sparing
	// NewPath's check of the name.
	recent [256]struct {
		k int // name index + 1; 0 for none
		p store.Path
	}
}

func (d *chunkDecoder) path() store.Path {
	r := &d.r
	if len(r.data)-r.pos < store.DigestSize {
		r.fail("unexpected end")
		return store.Path{}
	}
	var dg [store.DigestSize]byte
	copy(dg[:], r.data[r.pos:])
	r.pos += store.DigestSize
	k := r.index(len(d.t.strs))
	if r.err != nil {
		return store.Path{}
	}
	m := &d.recent[k%len(d.recent)]
	if m.k == k+1 && m.p.Digest() == dg {
		return m.p
	}
	p, err := store.NewPath(dg, d.t.strs[k])
	if err == nil {
		m.k, m.p = k+1, p
	}
	// Names are checked once per string, not once per use.
	if d.nameOK[k] == 0 {
		d.nameOK[k] = 1
		if err != nil {
			d.nameOK[k] = -1
		}
	}
	if d.nameOK[k] < 0 {
		r.fail("invalid store path name")
	}
	return p
}

// chunk decodes the nodes from one checkpoint to the next: the bytes of
// body from base+from.off to base+to.off, into nodes and the outputs,
// edges and sources between the checkpoints' counts, which it must fill
// exactly.
func (d *chunkDecoder) chunk(body string, base int, from, to chunkBound, nodes []Node, allOuts []Output, allEdges []Edge, allSrcs []store.Path) error {
	d.r = snapshotReader{data: body[:base+int(to.off)], pos: base + int(from.off)}
	r, lists := &d.r, d.t.lists
	outs := allOuts[from.outs:from.outs:to.outs]
	edges := allEdges[from.edges:from.edges:to.edges]
	srcs := allSrcs[from.srcs:from.srcs:to.srcs]
	for i := int(from.node); i < int(to.node); i++ {
		n := &nodes[i]
		n.Path = d.path()
		n.System = d.t.str(r)
		no := r.count(2)
		if r.err != nil || no > cap(outs)-len(outs) {
			r.fail("more outputs than counted")
			break
		}
		start := len(outs)
		for range no {
			o := Output{Name: d.t.str(r)}
			switch r.byte() {
			case 0:
			case 1:
				o.Path = d.path()
			default:
				r.fail("bad output path flag")
			}
			outs = append(outs, o)
		}
		n.Outputs = outs[start:len(outs):len(outs)]
		ne := r.count(2)
		if r.err != nil || ne > cap(edges)-len(edges) {
			r.fail("more inputs than counted")
			break
		}
		start = len(edges)
		for range ne {
			to := NodeID(r.index(i)) // inputs come first: below i
			var l []string
			if k := r.index(len(lists)); r.err == nil {
				l = lists[k]
			}
			edges = append(edges, Edge{To: to, Outputs: l})
		}
		n.Inputs = edges[start:len(edges):len(edges)]
		ns := r.count(21)
		if r.err != nil || ns > cap(srcs)-len(srcs) {
			r.fail("more sources than counted")
			break
		}
		if ns > 0 {
			start = len(srcs)
			for range ns {
				srcs = append(srcs, d.path())
			}
			n.InputSrcs = srcs[start:len(srcs):len(srcs)]
		}
		if f := r.uvarint(); f > 0 {
			if f > uint64(len(lists)) {
				r.fail("index out of range")
				break
			}
			n.RequiredFeatures = lists[f-1]
			if len(n.RequiredFeatures) == 0 {
				r.fail("empty feature set (Load keeps nil)")
			}
			for _, feat := range n.RequiredFeatures {
				if feat == "" || strings.ContainsAny(feat, " \t\n\r") {
					r.fail("bad feature name")
				}
			}
		}
		flags := r.byte()
		n.PreferLocalBuild = flags&flagPreferLocal != 0
		n.AllowSubstitutes = flags&flagAllowSubst != 0
		n.Kind = drv.OutputKind(r.byte())
		if flags&^(flagPreferLocal|flagAllowSubst) != 0 || n.Kind < drv.InputAddressed || n.Kind > drv.Impure {
			r.fail("bad flags or kind")
		}
		if r.err != nil {
			break
		}
		if !n.Path.IsDerivation() {
			r.fail("node is not a .drv")
			break
		}
	}
	if r.err == nil && (r.pos != len(r.data) || len(outs) != cap(outs) || len(edges) != cap(edges) || len(srcs) != cap(srcs)) {
		r.fail("chunk does not end at its checkpoint")
	}
	return r.err
}

// loadSnapshot returns the snapshot of roots in dir, with g.roots in the
// order of roots, or an error when there is none or it is unusable.
func loadSnapshot(dir, storeRoot string, roots []store.Path) (*Graph, error) {
	data, err := os.ReadFile(filepath.Join(dir, SnapshotFile(storeRoot, roots)))
	if err != nil {
		return nil, err
	}
	g, err := DecodeSnapshot(data, storeRoot)
	if err != nil {
		return nil, err
	}
	// The snapshot may have been saved for the same roots in another
	// order (or with duplicates): Roots follows this call's.
	ids := make([]NodeID, 0, len(roots))
	seen := make(map[NodeID]bool, len(roots))
	for _, p := range roots {
		id, ok := g.index[p]
		if !ok {
			return nil, fmt.Errorf("%w: root %s missing", ErrSnapshot, p)
		}
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	for _, id := range g.roots {
		if !seen[id] {
			return nil, fmt.Errorf("%w: roots differ", ErrSnapshot)
		}
	}
	if len(ids) != len(g.roots) {
		return nil, fmt.Errorf("%w: roots differ", ErrSnapshot)
	}
	g.roots = ids
	g.fromSnapshot = true
	return g, nil
}

// saveSnapshot writes g's snapshot into dir, atomically (a reader sees the
// old file or the whole new one). Failing to save only costs speed later.
func saveSnapshot(dir, storeRoot string, roots []store.Path, g *Graph) error {
	if err := cachedir.WriteFile(dir, 0o755, SnapshotFile(storeRoot, roots), g.AppendSnapshot(nil)); err != nil {
		return err
	}
	pruneSnapshots(dir, maxSnapshots)
	return nil
}

// maxSnapshots bounds a snapshot directory: one closure of 20,000
// derivations takes 3.4 MB.
const maxSnapshots = 32

// pruneSnapshots removes the oldest snapshots (by when they were saved)
// beyond keep.
func pruneSnapshots(dir string, keep int) { cachedir.Prune(dir, ".graph", keep) }
