package drv

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"unsafe"

	"github.com/nix-community/go-nix/pkg/nixbase32"

	"github.com/nbuild/nbuild/store"
)

// OutputPathName is the store path name of output out of a derivation
// called drvName: drvName for "out", drvName-out otherwise
// (2.8 src/libstore/derivations.cc outputPathName).
func OutputPathName(drvName, out string) string {
	if out == "out" {
		return drvName
	}
	return drvName + "-" + out
}

// NameFromDrvPath returns the derivation name of a .drv store path ("hello"
// for /nix/store/…-hello.drv), as 2.8 Derivation::nameFromPath.
func NameFromDrvPath(p store.Path) string { return strings.TrimSuffix(p.Name(), ".drv") }

// FixedOutputPath is the path of a fixed output called name with content
// hash h (2.8 src/libstore/store-api.cc makeFixedOutputPath): recursive
// sha256 is a "source" path, text a "text" path, anything else an
// "output:out" path over "fixed:out:<method><algo>:<hex>:".
func FixedOutputPath(name string, h FixedHash) (store.Path, error) {
	if len(h.Digest) != h.Algo.Size() {
		return store.Path{}, fmt.Errorf("drv: %s digest of %d bytes", h.Algo, len(h.Digest))
	}
	switch {
	case h.Method == Recursive && h.Algo == SHA256:
		return store.MakeSourcePath(name, [32]byte(h.Digest), nil, false)
	case h.Method == Text:
		if h.Algo != SHA256 {
			return store.Path{}, fmt.Errorf("drv: text hashing requires sha256, not %s", h.Algo)
		}
		return store.MakeTextPath(name, [32]byte(h.Digest), nil)
	}
	inner := sha256.Sum256([]byte("fixed:out:" + h.MethodAlgo() + ":" + h.Hex() + ":"))
	return store.MakePath("output:out", inner, name)
}

// DrvPath computes the store path of d's .drv file: a text path named
// Name()+".drv" over the ATerm text, referring to InputSrcs and the
// InputDrvs paths (2.8 derivations.cc writeDerivation, makeTextPath).
func DrvPath(d *Derivation) (store.Path, error) {
	name := d.Name()
	if name == "" {
		return store.Path{}, fmt.Errorf("drv: derivation has no name")
	}
	// The references, sorted and unique, as full store paths: build the
	// "text:<ref>:<ref>…" type from them directly. The input derivations'
	// paths are written into one block (never modified after) and viewed.
	refs := make([]string, 0, len(d.InputSrcs)+len(d.InputDrvs))
	for _, r := range d.InputSrcs {
		if reason := checkStorePath(r); reason != "" {
			return store.Path{}, fmt.Errorf("drv: reference %q: %s", r, reason)
		}
		refs = append(refs, r)
	}
	size := 0
	for _, in := range d.InputDrvs {
		size += pathLen(in.Path)
	}
	text := make([]byte, 0, size)
	for _, in := range d.InputDrvs {
		if in.Path.IsZero() {
			return store.Path{}, fmt.Errorf("drv: input derivation without a path")
		}
		k := len(text)
		text = in.Path.AppendTo(text)
		refs = append(refs, unsafe.String(&text[k], len(text)-k))
	}
	sort.Strings(refs)
	refs = slices.Compact(refs)
	n := len("text")
	for _, r := range refs {
		n += 1 + len(r)
	}
	typ := make([]byte, 0, n)
	typ = append(typ, "text"...)
	for _, r := range refs {
		typ = append(typ, ':')
		typ = append(typ, r...)
	}
	buf := bufPool.Get().(*[]byte)
	*buf = d.AppendATerm((*buf)[:0])
	sum := sha256.Sum256(*buf)
	bufPool.Put(buf)
	return store.MakePath(string(typ), sum, name+".drv")
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 8<<10); return &b }}

// HashPlaceholder is the string Nix puts in a derivation's env and args for
// its own output out whose path is not known yet:
// "/" + nix32(sha256("nix-output:" + out)) (2.8 derivations.cc hashPlaceholder).
func HashPlaceholder(out string) string {
	h := sha256.Sum256([]byte("nix-output:" + out))
	return "/" + nixbase32.EncodeToString(h[:])
}

// DownstreamPlaceholder is the string that stands for output out of the
// not-yet-built derivation drvPath in derivations that depend on it (2.8
// derivations.cc downstreamPlaceholder): "/" + nix32(sha256(
// "nix-upstream-output:" + hashPart + ":" + outputPathName(name, out))).
func DownstreamPlaceholder(drvPath store.Path, out string) string {
	h := sha256.Sum256([]byte("nix-upstream-output:" + drvPath.HashPart() + ":" +
		OutputPathName(NameFromDrvPath(drvPath), out)))
	return "/" + nixbase32.EncodeToString(h[:])
}

// ModuloHash is the result of hashDerivationModulo for one derivation: the
// hash every one of its outputs is identified by in the derivations that
// use it (for a fixed output, the hash of its content address and path).
type ModuloHash struct {
	Sum [sha256.Size]byte
	// Deferred is true when the derivation is floating or impure, or
	// depends on one: then output paths that depend on it are not known
	// until it is built (2.8 DrvHash::Kind::Deferred).
	Deferred bool
}

// Hex returns Sum in lowercase base16.
func (m ModuloHash) Hex() string { return hex.EncodeToString(m.Sum[:]) }

// impureHash is 2.8's impureOutputHash.
var impureHash = sha256.Sum256([]byte("impure"))

// A Loader returns the parsed derivation stored at a .drv path.
type Loader func(drvPath string) (*Derivation, error)

// Hasher computes hashDerivationModulo across a derivation graph,
// remembering each derivation's result, and the output paths derived from
// it. It is safe for concurrent use. Concurrent calls may compute the same
// derivation twice, but each result is remembered once computed; a cycle
// (impossible between real .drv files) is an error, not a hang.
type Hasher struct {
	load Loader
	mu   sync.RWMutex
	memo map[store.Path]memoEntry
}

type memoEntry struct {
	hash    ModuloHash
	outputs []string // the derivation's output names, to check selections
}

// NewHasher returns a Hasher reading derivations with load.
func NewHasher(load Loader) *Hasher {
	return &Hasher{load: load, memo: make(map[store.Path]memoEntry)}
}

// InputError says which input derivation of which derivation could not be
// loaded or hashed (a .drv missing from the store, say): the error names
// the derivation that needs it, not only the file that was not found.
type InputError struct {
	// Drv is the derivation whose input failed; "" when it is the
	// derivation handed to Modulo or OutputPaths, which has no path here.
	Drv   string
	Input string
	Err   error
}

func (e *InputError) Error() string {
	if e.Drv == "" {
		return fmt.Sprintf("drv: input derivation %s: %v", e.Input, e.Err)
	}
	return fmt.Sprintf("drv: %s: input derivation %s: %v", e.Drv, e.Input, e.Err)
}

func (e *InputError) Unwrap() error { return e.Err }

// HashModulo returns hashDerivationModulo of the derivation at drvPath,
// unmasked: the value derivations depending on it use
// (2.8 derivations.cc pathDerivationModulo).
func (h *Hasher) HashModulo(drvPath string) (ModuloHash, error) {
	p, err := store.ParsePath(drvPath)
	if err != nil {
		return ModuloHash{}, fmt.Errorf("drv: input derivation: %w", err)
	}
	e, err := h.hashPath(p, nil)
	return e.hash, err
}

func (h *Hasher) hashPath(p store.Path, chain map[store.Path]bool) (memoEntry, error) {
	h.mu.RLock()
	e, ok := h.memo[p]
	h.mu.RUnlock()
	if ok {
		return e, nil
	}
	drvPath := p.String()
	if chain[p] {
		return memoEntry{}, fmt.Errorf("drv: %s depends on itself", drvPath)
	}
	d, err := h.load(drvPath)
	if err != nil {
		return memoEntry{}, err
	}
	if chain == nil {
		chain = make(map[store.Path]bool)
	}
	chain[p] = true
	mh, err := h.modulo(d, NameFromDrvPath(p), false, chain)
	delete(chain, p)
	if err != nil {
		var ie *InputError
		if errors.As(err, &ie) {
			if ie.Drv == "" {
				ie.Drv = drvPath
			}
			return memoEntry{}, err
		}
		return memoEntry{}, fmt.Errorf("%s: %w", drvPath, err)
	}
	e = memoEntry{hash: mh, outputs: make([]string, len(d.Outputs))}
	for i := range d.Outputs {
		e.outputs[i] = d.Outputs[i].Name
	}
	h.mu.Lock()
	h.memo[p] = e
	h.mu.Unlock()
	return e, nil
}

// Modulo computes hashDerivationModulo of d, whose name (for a fixed
// output's path) is name; with maskOutputs, d's own output paths and the
// env vars named after its outputs are blanked, as when computing d's
// input-addressed output paths (2.8 derivations.cc hashDerivationModulo).
func (h *Hasher) Modulo(d *Derivation, name string, maskOutputs bool) (ModuloHash, error) {
	return h.modulo(d, name, maskOutputs, nil)
}

func (h *Hasher) modulo(d *Derivation, name string, mask bool, chain map[store.Path]bool) (ModuloHash, error) {
	kind, err := d.Kind()
	if err != nil {
		return ModuloHash{}, err
	}
	switch kind {
	case FixedOutput:
		o := &d.Outputs[0]
		fh, err := o.FixedHash()
		if err != nil {
			return ModuloHash{}, err
		}
		p, err := FixedOutputPath(OutputPathName(name, o.Name), fh)
		if err != nil {
			return ModuloHash{}, err
		}
		s := "fixed:out:" + fh.MethodAlgo() + ":" + fh.Hex() + ":" + p.String()
		return ModuloHash{Sum: sha256.Sum256([]byte(s))}, nil
	case Impure:
		return ModuloHash{Sum: impureHash, Deferred: true}, nil
	}
	res := ModuloHash{Deferred: kind == Floating}
	inputs := make([]hashedInput, 0, len(d.InputDrvs))
	for _, in := range d.InputDrvs {
		e, err := h.hashPath(in.Path, chain)
		if err != nil {
			var ie *InputError
			if errors.As(err, &ie) {
				return ModuloHash{}, err // named where it happened
			}
			return ModuloHash{}, &InputError{Input: in.Path.String(), Err: err}
		}
		for _, o := range in.Outputs {
			if !slices.Contains(e.outputs, o) {
				return ModuloHash{}, fmt.Errorf("drv: input %s has no output %q", in.Path, o)
			}
		}
		res.Deferred = res.Deferred || e.hash.Deferred
		inputs = append(inputs, hashedInput{hex: e.hash.Hex(), outs: in.Outputs})
	}
	sort.Slice(inputs, func(i, j int) bool { return inputs[i].hex < inputs[j].hex })
	// Inputs with equal hashes (e.g. two fixed-output derivations of the
	// same content) collapse into one entry, as in Nix's map.
	merged := inputs[:0]
	for _, in := range inputs {
		if n := len(merged); n > 0 && merged[n-1].hex == in.hex {
			outs := append(slices.Clone(merged[n-1].outs), in.outs...)
			sort.Strings(outs)
			merged[n-1].outs = slices.Compact(outs)
			continue
		}
		merged = append(merged, in)
	}
	buf := bufPool.Get().(*[]byte)
	*buf = d.appendATerm((*buf)[:0], merged, mask)
	res.Sum = sha256.Sum256(*buf)
	bufPool.Put(buf)
	return res, nil
}

// OutputPath is where one output of a derivation goes.
type OutputPath struct {
	Name string
	// Path is the output's store path when it is known before the build
	// (input-addressed and fixed outputs); the zero Path otherwise.
	Path store.Path
	// Placeholder, for outputs without a static Path, is what Nix writes
	// into the derivation's env var of that output: HashPlaceholder(Name)
	// for floating and impure outputs, "" for deferred ones.
	Placeholder string
}

// EnvValue is the value Nix gives the env var named after the output.
func (o OutputPath) EnvValue() string {
	if !o.Path.IsZero() {
		return o.Path.String()
	}
	return o.Placeholder
}

// OutputPaths computes every output of d the way Nix 2.8 does when it
// writes d (primops.cc derivationStrict): fixed outputs from their content
// hash, floating and impure outputs as placeholders, and the other outputs
// input-addressed from the masked hashDerivationModulo, or deferred if that
// depends on a floating or impure input. The result is in d.Outputs order.
// The derivation's name is d.Name().
func (h *Hasher) OutputPaths(d *Derivation) ([]OutputPath, error) {
	kind, err := d.Kind()
	if err != nil {
		return nil, err
	}
	name := d.Name()
	if name == "" {
		return nil, fmt.Errorf("drv: derivation has no name")
	}
	res := make([]OutputPath, len(d.Outputs))
	for i := range d.Outputs {
		res[i].Name = d.Outputs[i].Name
	}
	switch kind {
	case FixedOutput:
		fh, err := d.Outputs[0].FixedHash()
		if err != nil {
			return nil, err
		}
		res[0].Path, err = FixedOutputPath(OutputPathName(name, "out"), fh)
		return res, err
	case Floating, Impure:
		for i := range res {
			res[i].Placeholder = HashPlaceholder(res[i].Name)
		}
		return res, nil
	}
	mh, err := h.modulo(d, name, true, nil)
	if err != nil {
		return nil, err
	}
	if mh.Deferred {
		return res, nil
	}
	for i := range res {
		p, err := store.MakePath("output:"+res[i].Name, mh.Sum, OutputPathName(name, res[i].Name))
		if err != nil {
			return nil, err
		}
		res[i].Path = p
	}
	return res, nil
}
