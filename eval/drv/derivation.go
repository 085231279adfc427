// Package drv is nbuild's model of a Nix store derivation (a ".drv" file):
// the Derivation value, its one-pass ATerm codec, hashDerivationModulo, and
// the computation of output paths and of the .drv's own store path.
//
// Vocabulary (2.8 src/libstore/derivations.hh):
//   - output: a named result; its kind is input-addressed (path known from
//     hashes of inputs), fixed-output (path from a declared content hash),
//     CA floating (path known only after the build), deferred (input-
//     addressed but depending on a floating output), or impure.
//   - inputDrvs: other derivations and which of their outputs are needed.
//   - inputSrcs: plain store paths (sources) used as inputs.
//
// Strings are kept exactly as in the file (unescaped), so writing a parsed
// derivation gives back the same bytes.
package drv

import "github.com/nbuild/nbuild/store"

// Output is one entry of a derivation's outputs, in ATerm order
// (name, path, hashAlgo, hash). Path is the zero store.Path for floating,
// deferred and impure outputs (whose paths are not known before the build;
// the file has "" there); HashAlgo is "" for input-addressed and deferred
// ones; Hash is lowercase hex for fixed outputs, "impure" for impure ones.
type Output struct {
	Name     string
	Path     store.Path
	HashAlgo string
	Hash     string
}

// InputDrv names an input derivation (the store path of its .drv file,
// never the zero Path in a valid derivation) and the outputs of it that
// are used. Outputs are sorted.
type InputDrv struct {
	Path    store.Path
	Outputs []string
}

// EnvVar is one environment entry.
type EnvVar struct {
	Key   string
	Value string
}

// Derivation is a parsed store derivation. Slices are in the canonical
// order Nix writes: Outputs by name, InputDrvs by path, InputSrcs sorted,
// Env by key; Args keep their order.
type Derivation struct {
	Outputs   []Output
	InputDrvs []InputDrv
	InputSrcs []string
	Platform  string
	Builder   string
	Args      []string
	Env       []EnvVar
}
