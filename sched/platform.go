package sched

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// ErrInvalidPlatform is wrapped by every error NewPlatform returns.
var ErrInvalidPlatform = errors.New("sched: invalid platform")

// Platform is what a derivation needs from a builder: a system type
// ("x86_64-linux", or "builtin") and a set of required system features
// ("kvm", "big-parallel"). It is a comparable value, safe as a map key: two
// platforms with the same system and the same set of features are ==,
// whatever order or duplicates the features were given in.
//
// The features are kept as one string, sorted, deduplicated and joined by a
// space. A feature never contains whitespace (Nix splits
// requiredSystemFeatures and machines-file columns on it), so the encoding
// is unambiguous.
type Platform struct {
	system   string
	features string
}

// NewPlatform validates and normalises a platform. The system must be
// non-empty; neither it nor any feature may contain whitespace or be empty
// (an empty feature is skipped, as Nix's tokenizer would).
func NewPlatform(system string, features ...string) (Platform, error) {
	if system == "" {
		return Platform{}, fmt.Errorf("%w: empty system", ErrInvalidPlatform)
	}
	if strings.ContainsAny(system, " \t\n\r") {
		return Platform{}, fmt.Errorf("%w: system %q contains whitespace", ErrInvalidPlatform, system)
	}
	fs := make([]string, 0, len(features))
	for _, f := range features {
		if f == "" {
			continue
		}
		if strings.ContainsAny(f, " \t\n\r") {
			return Platform{}, fmt.Errorf("%w: feature %q contains whitespace", ErrInvalidPlatform, f)
		}
		fs = append(fs, f)
	}
	return Platform{system: system, features: strings.Join(sortedSet(fs), " ")}, nil
}

// MustPlatform is NewPlatform for constants in tests and tables; it panics
// on an invalid platform, so never call it on input.
func MustPlatform(system string, features ...string) Platform {
	p, err := NewPlatform(system, features...)
	if err != nil {
		panic(err)
	}
	return p
}

// System is the platform's system type.
func (p Platform) System() string { return p.system }

// Features returns the required features, sorted and deduplicated.
func (p Platform) Features() []string {
	if p.features == "" {
		return nil
	}
	return strings.Split(p.features, " ")
}

// HasFeature reports whether f is one of the platform's features.
func (p Platform) HasFeature(f string) bool {
	for _, g := range p.Features() {
		if g == f {
			return true
		}
	}
	return false
}

// IsZero reports whether p is the zero Platform (never valid).
func (p Platform) IsZero() bool { return p.system == "" }

// String renders "system" or "system[f1,f2]".
func (p Platform) String() string {
	if p.features == "" {
		return p.system
	}
	return p.system + "[" + strings.ReplaceAll(p.features, " ", ",") + "]"
}

// sortedSet sorts s in place and removes duplicates, like a std::set.
func sortedSet(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	sort.Strings(s)
	out := s[:1]
	for _, x := range s[1:] {
		if x != out[len(out)-1] {
			out = append(out, x)
		}
	}
	return out
}
