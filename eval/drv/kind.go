package drv

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// OutputKind is the kind shared by all outputs of a derivation
// (2.8 src/libstore/derivations.hh DerivationOutput, BasicDerivation::type).
type OutputKind uint8

const (
	// InputAddressed outputs have paths computed from hashDerivationModulo.
	InputAddressed OutputKind = iota + 1
	// FixedOutput: one output "out" whose content hash is declared.
	FixedOutput
	// Floating content-addressed outputs (__contentAddressed): the path is
	// known only after the build.
	Floating
	// Deferred outputs are input-addressed but depend on a floating or
	// impure output, so their paths are known only after those are built.
	Deferred
	// Impure outputs (__impure) are rebuilt every time.
	Impure
)

func (k OutputKind) String() string {
	switch k {
	case InputAddressed:
		return "input-addressed"
	case FixedOutput:
		return "fixed-output"
	case Floating:
		return "floating content-addressed"
	case Deferred:
		return "deferred"
	case Impure:
		return "impure"
	}
	return fmt.Sprintf("OutputKind(%d)", k)
}

// StaticPaths reports whether outputs of this kind have paths known before
// the build (2.8 DerivationType::hasKnownOutputPaths).
func (k OutputKind) StaticPaths() bool { return k == InputAddressed || k == FixedOutput }

// ErrKind is wrapped by Kind's errors.
var ErrKind = errors.New("drv: invalid derivation outputs")

// Kind returns the kind of d's outputs, checking the rules of
// 2.8 BasicDerivation::type: at least one output, all of one kind, a fixed
// output is the single output "out", floating outputs share a hash
// algorithm. Parse has already checked these for parsed derivations.
func (d *Derivation) Kind() (OutputKind, error) {
	var kind OutputKind
	var floatAlgo HashAlgo
	for i := range d.Outputs {
		o := &d.Outputs[i]
		k, algo, msg, _ := classifyOutput(o)
		if msg != "" {
			return 0, fmt.Errorf("%w: output %q: %s", ErrKind, o.Name, msg)
		}
		switch {
		case kind == 0:
			kind, floatAlgo = k, algo
		case kind != k:
			return 0, fmt.Errorf("%w: can't mix derivation output types (%s and %s)", ErrKind, kind, k)
		case k == FixedOutput:
			return 0, fmt.Errorf("%w: only one fixed output is allowed", ErrKind)
		case k == Floating && algo != floatAlgo:
			return 0, fmt.Errorf("%w: all floating outputs must use the same hash type", ErrKind)
		}
		if k == FixedOutput && o.Name != "out" {
			return 0, fmt.Errorf("%w: single fixed output must be named \"out\"", ErrKind)
		}
	}
	if kind == 0 {
		return 0, fmt.Errorf("%w: must have at least one output", ErrKind)
	}
	return kind, nil
}

// Getenv returns the value of the environment variable key and whether it
// is set. Env is sorted, so this is a binary search.
func (d *Derivation) Getenv(key string) (string, bool) {
	// By hand rather than slices.BinarySearchFunc: the graph loader looks
	// up four keys in every derivation, and the generic search's compare
	// callback is not inlined.
	lo, hi := 0, len(d.Env)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if d.Env[m].Key < key {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(d.Env) && d.Env[lo].Key == key {
		return d.Env[lo].Value, true
	}
	return "", false
}

// StructuredAttrs returns the __json environment variable, the structured
// attributes of a derivation made with __structuredAttrs = true.
func (d *Derivation) StructuredAttrs() (string, bool) { return d.Getenv("__json") }

// Name returns the derivation's name: the "name" env var, or the "name"
// attribute of structured attrs (which then hold every attribute). It is
// "" if neither exists. The .drv file is named Name()+".drv".
func (d *Derivation) Name() string {
	if v, ok := d.Getenv("name"); ok {
		return v
	}
	if js, ok := d.StructuredAttrs(); ok {
		var a struct {
			Name string `json:"name"`
		}
		if json.Unmarshal([]byte(js), &a) == nil {
			return a.Name
		}
	}
	return ""
}

// SchedulingAttrs are the attributes a scheduler needs, read as
// 2.8 src/libstore/parsed-derivations.cc does.
type SchedulingAttrs struct {
	// RequiredSystemFeatures, sorted and without duplicates; it includes
	// "ca-derivations" when the output paths are not known statically
	// (ParsedDerivation::getRequiredSystemFeatures).
	RequiredSystemFeatures []string
	PreferLocalBuild       bool // default false
	AllowSubstitutes       bool // default true
}

// Scheduling reads the scheduling attributes: from __json when the
// derivation has structured attrs (a list and booleans there), otherwise
// from env (requiredSystemFeatures split on whitespace, a boolean is true
// iff its value is exactly "1"). A structured attribute of the wrong type is
// an error, as in Nix.
func (d *Derivation) Scheduling() (SchedulingAttrs, error) {
	a := SchedulingAttrs{AllowSubstitutes: true}
	if js, ok := d.StructuredAttrs(); ok {
		// JSON is decoded into variables of this branch, not into a's
		// fields, so that a does not escape to the heap for every
		// derivation.
		var raw struct {
			RequiredSystemFeatures json.RawMessage `json:"requiredSystemFeatures"`
			PreferLocalBuild       json.RawMessage `json:"preferLocalBuild"`
			AllowSubstitutes       json.RawMessage `json:"allowSubstitutes"`
		}
		if err := json.Unmarshal([]byte(js), &raw); err != nil {
			return a, fmt.Errorf("drv: structured attrs: %w", err)
		}
		if raw.RequiredSystemFeatures != nil && string(raw.RequiredSystemFeatures) != "null" {
			var feats []string
			if err := json.Unmarshal(raw.RequiredSystemFeatures, &feats); err != nil {
				return a, fmt.Errorf("drv: attribute 'requiredSystemFeatures' must be a list of strings")
			}
			a.RequiredSystemFeatures = feats
		}
		prefer, allow := a.PreferLocalBuild, a.AllowSubstitutes
		for _, b := range [...]struct {
			name string
			raw  json.RawMessage
			dst  *bool
		}{{"preferLocalBuild", raw.PreferLocalBuild, &prefer}, {"allowSubstitutes", raw.AllowSubstitutes, &allow}} {
			if b.raw == nil || string(b.raw) == "null" {
				continue
			}
			if err := json.Unmarshal(b.raw, b.dst); err != nil {
				return a, fmt.Errorf("drv: attribute '%s' must be a Boolean", b.name)
			}
		}
		a.PreferLocalBuild, a.AllowSubstitutes = prefer, allow
	} else {
		if v, ok := d.Getenv("requiredSystemFeatures"); ok {
			a.RequiredSystemFeatures = strings.FieldsFunc(v, func(r rune) bool {
				return r == ' ' || r == '\t' || r == '\n' || r == '\r'
			})
		}
		if v, ok := d.Getenv("preferLocalBuild"); ok {
			a.PreferLocalBuild = v == "1"
		}
		if v, ok := d.Getenv("allowSubstitutes"); ok {
			a.AllowSubstitutes = v == "1"
		}
	}
	if k, err := d.Kind(); err == nil && !k.StaticPaths() {
		a.RequiredSystemFeatures = append(a.RequiredSystemFeatures, "ca-derivations")
	}
	sort.Strings(a.RequiredSystemFeatures)
	a.RequiredSystemFeatures = slices.Compact(a.RequiredSystemFeatures)
	if len(a.RequiredSystemFeatures) == 0 {
		a.RequiredSystemFeatures = nil
	}
	return a, nil
}

// RequiredSystemFeatures is Scheduling().RequiredSystemFeatures, or nil
// when the structured attrs are malformed.
func (d *Derivation) RequiredSystemFeatures() []string {
	a, err := d.Scheduling()
	if err != nil {
		return nil
	}
	return a.RequiredSystemFeatures
}

// PreferLocalBuild is Scheduling().PreferLocalBuild (false when malformed).
func (d *Derivation) PreferLocalBuild() bool {
	a, err := d.Scheduling()
	return err == nil && a.PreferLocalBuild
}

// AllowSubstitutes is Scheduling().AllowSubstitutes (true when malformed).
func (d *Derivation) AllowSubstitutes() bool {
	a, err := d.Scheduling()
	return err != nil || a.AllowSubstitutes
}
