package graph

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"unsafe"

	"github.com/nbuild/nbuild/eval/drv"
	"github.com/nbuild/nbuild/store"
)

// Options tune Load. The zero value gives the defaults.
type Options struct {
	// Concurrency is the number of derivations read and parsed at once;
	// 0 means twice GOMAXPROCS (reads from a cold disk wait).
	Concurrency int
	// KeepDerivations keeps every parsed derivation (Graph.Derivation
	// then answers from memory). It costs about the size of the .drv
	// files in memory.
	KeepDerivations bool
	// SnapshotDir, if set, is a directory of graph snapshots: Load reads
	// the closure from the snapshot of the same store root and roots when
	// there is a usable one (a .drv path names its content, so it is never
	// stale), and otherwise loads the .drv files and saves a snapshot
	// there. A corrupt or truncated snapshot is ignored (and replaced).
	// Not used with KeepDerivations.
	SnapshotDir string
}

// Load reads the closure of roots (.drv paths) from the store whose files
// are under storeRoot: "" or "/" for the machine's /nix/store, or the root
// of a chroot store (files at storeRoot/nix/store/...). Files are read and
// parsed by a bounded set of goroutines; Load returns when all are done,
// when one fails, or when ctx is cancelled, and leaves no goroutine behind.
//
// Errors: a *LoadError naming the .drv (and which derivation needed it)
// for a missing, unreadable or corrupt file; a *CycleError for a cycle;
// ctx.Err() when cancelled.
func Load(ctx context.Context, storeRoot string, roots []store.Path, opts Options) (_ *Graph, err error) {
	if storeRoot == "/" {
		storeRoot = ""
	}
	defer func() {
		var le *LoadError
		if errors.As(err, &le) {
			le.Root = storeRoot
		}
	}()
	workers := opts.Concurrency
	if workers <= 0 {
		workers = 2 * runtime.GOMAXPROCS(0)
	}
	l := &loader{
		keep:  opts.KeepDerivations,
		index: make(map[store.Path]NodeID),
	}
	l.cond.L = &l.mu
	var rootIDs []NodeID
	for _, p := range roots {
		if !p.IsDerivation() {
			return nil, &LoadError{Path: p, Err: ErrNotDerivation}
		}
		if id, isNew := l.discover(p, -1); isNew {
			rootIDs = append(rootIDs, id)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	snapshots := opts.SnapshotDir != "" && !opts.KeepDerivations
	if snapshots {
		if g, err := loadSnapshot(opts.SnapshotDir, storeRoot, roots); err == nil {
			return g, nil
		}
	}
	dir, err := openStoreDir(storeRoot)
	if err != nil {
		return nil, fmt.Errorf("graph: store directory: %w", err)
	}
	defer dir.Close()
	l.dir = dir
	failed := make(chan struct{})
	stop := context.AfterFunc(ctx, func() { l.fail(ctx.Err()); close(failed) })
	var wg sync.WaitGroup
	for range workers {
		wg.Go(l.work)
	}
	wg.Wait()
	if !stop() {
		<-failed // the AfterFunc goroutine has started: leave none behind
	}
	if l.err != nil {
		return nil, l.err
	}
	g, err := l.finish(storeRoot, rootIDs)
	if err == nil && snapshots {
		saveSnapshot(opts.SnapshotDir, storeRoot, roots, g) // only a cache
	}
	return g, err
}

// loader is the shared state of one Load. Nodes get a discovery number
// when first seen; finish renumbers them in topological order.
type loader struct {
	dir  *storeDir
	keep bool

	mu      sync.Mutex
	cond    sync.Cond
	index   map[store.Path]NodeID // .drv path -> discovery number
	recs    []*record
	queue   []NodeID // discovered, not yet taken by a worker
	active  int      // taken, not yet finished
	waiting int      // workers in cond.Wait
	err     error
	text    []byte   // holds the index's keys' names (see discover)
	recSlab []record // records are carved from it
}

// carve returns the next n elements of *slab, starting a new block when it
// is full: the many small slices of a graph's nodes share a few
// allocations. The blocks live as long as any slice carved from them.
func carve[T any](slab *[]T, n int) []T {
	if n == 0 {
		return []T{} // empty, not nil, as make gives (and snapshots decode)
	}
	if cap(*slab)-len(*slab) < n {
		*slab = make([]T, 0, max(n, 256))
	}
	k := len(*slab)
	*slab = (*slab)[:k+n]
	return (*slab)[k : k+n : k+n]
}

// record is a node being loaded; its Inputs' To are discovery numbers.
// Its node's Path is set when it is discovered.
type record struct {
	node Node
	from NodeID // the node that discovered it; -1 for a root
	drv  *drv.Derivation
}

// discover returns the discovery number of the .drv path p, queueing it
// when new. Called with l.mu held (or before the workers start).
func (l *loader) discover(p store.Path, from NodeID) (NodeID, bool) {
	if id, ok := l.index[p]; ok {
		return id, false
	}
	id := NodeID(len(l.recs))
	// p's name may alias the parser's buffer of a whole .drv file: it is
	// copied into a block of names shared by many nodes, and its record
	// carved from a block of records (two allocations per hundreds of
	// nodes instead of two per node, under the lock every worker takes).
	name := p.Name()
	if cap(l.text)-len(l.text) < len(name) {
		l.text = make([]byte, 0, max(len(name), 16<<10))
	}
	k := len(l.text)
	l.text = append(l.text, name...)
	p, _ = store.NewPath(p.Digest(), unsafe.String(&l.text[k], len(name))) // a valid name
	l.index[p] = id
	rec := carve(&l.recSlab, 1)
	rec[0] = record{node: Node{Path: p}, from: from}
	l.recs = append(l.recs, &rec[0])
	l.queue = append(l.queue, id)
	return id, true
}

// fail records the first error and wakes every worker so they stop.
func (l *loader) fail(err error) {
	l.mu.Lock()
	if l.err == nil {
		l.err = err
	}
	l.mu.Unlock()
	l.cond.Broadcast()
}

// work takes queued derivations until the closure is complete or the load
// failed. The closure is complete when nothing is queued and no worker
// holds a derivation that may still add inputs.
func (l *loader) work() {
	w := worker{keep: l.keep}
	l.mu.Lock()
	defer l.mu.Unlock()
	for {
		for len(l.queue) == 0 && l.active > 0 && l.err == nil {
			l.waiting++
			l.cond.Wait()
			l.waiting--
		}
		if l.err != nil || len(l.queue) == 0 {
			l.cond.Broadcast()
			return
		}
		id := l.queue[len(l.queue)-1]
		l.queue = l.queue[:len(l.queue)-1]
		rec := l.recs[id]
		l.active++
		// Wake one more worker only when work is left for it: each woken
		// worker does the same, so wake-ups follow the available work
		// instead of one per discovered node.
		if len(l.queue) > 0 && l.waiting > 0 {
			l.cond.Signal()
		}
		l.mu.Unlock()

		err := w.load(l.dir, rec)

		l.mu.Lock()
		l.active--
		if err != nil {
			if l.err == nil {
				var from store.Path
				if rec.from >= 0 {
					from = l.recs[rec.from].node.Path
				}
				l.err = &LoadError{Path: rec.node.Path, From: from, Err: err}
			}
			l.cond.Broadcast()
			continue
		}
		for i, p := range w.inputs {
			rec.node.Inputs[i].To, _ = l.discover(p, id)
		}
		switch {
		case len(l.queue) == 0 && l.active == 0:
			l.cond.Broadcast() // done: release everyone
		case len(l.queue) > 1 && l.waiting > 0:
			l.cond.Signal() // this worker takes one; wake one for the rest
		}
	}
}

// worker is one goroutine's reusable state.
type worker struct {
	keep   bool
	name   nameBuf
	buf    []byte
	parser drv.Parser
	inputs []store.Path          // the last loaded node's input derivations
	base   []byte                // the base name of the .drv being read
	srcs   map[string]store.Path // input sources: drvs share many
	// strs and lists intern strings and output-name lists; per worker, so
	// no lock: a string is kept at most once per worker.
	strs  map[string]string
	lists map[string][]string
	// The nodes' slices are carved from these (see carve).
	outSlab  []Output
	edgeSlab []Edge
	pathSlab []store.Path
}

// internString returns the worker's copy of s. A parsed derivation's
// strings all share one buffer as big as the file, so whatever the graph
// keeps is copied or interned, never referenced.
func (w *worker) internString(s string) string {
	if t, ok := w.strs[s]; ok {
		return t
	}
	if w.strs == nil {
		w.strs = make(map[string]string)
	}
	s = strings.Clone(s)
	w.strs[s] = s
	return s
}

// clonePath returns p with a name of its own.
func clonePath(p store.Path) store.Path {
	q, err := store.NewPath(p.Digest(), strings.Clone(p.Name()))
	if err != nil {
		return p // cannot happen: p's name was validated
	}
	return q
}

// parsePath parses a store path of a derivation and copies its name.
func parsePath(s string) (store.Path, error) {
	p, err := store.ParsePath(s)
	if err != nil {
		return p, err
	}
	return clonePath(p), nil
}

// internList returns a shared copy of names.
func (w *worker) internList(names []string) []string {
	if len(names) == 1 {
		if l, ok := w.lists[names[0]]; ok {
			return l // no allocation for the common case
		}
	}
	key := strings.Join(names, "\x00")
	if l, ok := w.lists[key]; ok {
		return l
	}
	key = strings.Clone(key)
	if w.lists == nil {
		w.lists = make(map[string][]string)
	}
	l := make([]string, len(names))
	for i, n := range names {
		l[i] = w.internString(n)
	}
	w.lists[key] = l
	return l
}

func (w *worker) parse(dir *storeDir, base string) (*drv.Derivation, error) {
	d, err := w.parseRead(dir, base, false)
	var rerr readError
	if err != nil && !errors.As(err, &rerr) {
		// Perhaps a short read that was not the end (see storeDir.read).
		return w.parseRead(dir, base, true)
	}
	return d, err
}

// readError marks a failure to read, as opposed to parse, a .drv file.
type readError struct{ error }

func (e readError) Unwrap() error { return e.error }

func (w *worker) parseRead(dir *storeDir, base string, full bool) (*drv.Derivation, error) {
	if w.keep {
		// The derivation outlives this read: it gets its own copy.
		data, err := dir.read(base, w.buf, &w.name, full)
		w.buf = data[:0]
		if err != nil {
			return nil, readError{err}
		}
		return w.parser.Parse(data)
	}
	// The parsed derivation lives only until load has copied what the
	// graph keeps (internString, parsePath, discover), so its strings may
	// point into the reused read buffer and the parser may reuse its
	// blocks: no copy of the file, and no allocation once warm.
	w.parser.Recycle()
	data, err := dir.read(base, w.buf, &w.name, full)
	w.buf = data[:0]
	if err != nil {
		return nil, readError{err}
	}
	return w.parser.ParseShared(data)
}

// load reads rec's derivation and fills rec.node, except the inputs' To,
// which the caller sets from w.inputs.
func (w *worker) load(dir *storeDir, rec *record) error {
	n := &rec.node
	p := n.Path
	if !p.IsDerivation() {
		return ErrNotDerivation
	}
	// The base name, in a buffer read does not retain.
	w.base = p.AppendBase(w.base[:0])
	d, err := w.parse(dir, unsafe.String(unsafe.SliceData(w.base), len(w.base)))
	if err != nil {
		return err
	}
	n.System = w.internString(d.Platform)
	n.Outputs = carve(&w.outSlab, len(d.Outputs))
	for i, o := range d.Outputs {
		n.Outputs[i].Name = w.internString(o.Name)
		if !o.Path.IsZero() {
			n.Outputs[i].Path = clonePath(o.Path)
		}
	}
	w.inputs = w.inputs[:0]
	n.Inputs = carve(&w.edgeSlab, len(d.InputDrvs))
	for i, in := range d.InputDrvs {
		w.inputs = append(w.inputs, in.Path)
		n.Inputs[i].Outputs = w.internList(in.Outputs)
	}
	if len(d.InputSrcs) > 0 {
		n.InputSrcs = carve(&w.pathSlab, len(d.InputSrcs))
		for i, s := range d.InputSrcs {
			p, ok := w.srcs[s]
			if !ok {
				if p, err = parsePath(s); err != nil {
					return fmt.Errorf("input source: %w", err)
				}
				if w.srcs == nil {
					w.srcs = make(map[string]store.Path)
				}
				w.srcs[p.String()] = p
			}
			n.InputSrcs[i] = p
		}
	}
	sched, err := d.Scheduling()
	if err != nil {
		return err
	}
	if len(sched.RequiredSystemFeatures) > 0 {
		n.RequiredFeatures = w.internList(sched.RequiredSystemFeatures)
	}
	n.PreferLocalBuild = sched.PreferLocalBuild
	n.AllowSubstitutes = sched.AllowSubstitutes
	if n.Kind, err = d.Kind(); err != nil {
		return err
	}
	if w.keep {
		rec.drv = d
	}
	return nil
}
