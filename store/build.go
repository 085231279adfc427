package store

import (
	"fmt"
	"slices"
	"strings"
)

// BuildMode selects how a store builds (2.8 src/libstore/store-api.hh
// BuildMode): normally, repairing corrupt outputs, or checking that a
// rebuild gives the same result.
type BuildMode uint64

const (
	BuildNormal BuildMode = iota
	BuildRepair
	BuildCheck
)

// BuildStatus is the outcome of one build or substitution goal
// (2.8 src/libstore/build-result.hh BuildResult::Status; the wire values).
type BuildStatus uint64

const (
	StatusBuilt BuildStatus = iota
	StatusSubstituted
	StatusAlreadyValid
	StatusPermanentFailure
	StatusInputRejected
	StatusOutputRejected
	StatusTransientFailure
	StatusCachedFailure
	StatusTimedOut
	StatusMiscFailure
	StatusDependencyFailed
	StatusLogLimitExceeded
	StatusNotDeterministic
	StatusResolvesToAlreadyValid
	StatusNoSubstituters
)

var statusNames = [...]string{
	"Built", "Substituted", "AlreadyValid", "PermanentFailure", "InputRejected",
	"OutputRejected", "TransientFailure", "CachedFailure", "TimedOut", "MiscFailure",
	"DependencyFailed", "LogLimitExceeded", "NotDeterministic", "ResolvesToAlreadyValid",
	"NoSubstituters",
}

func (s BuildStatus) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return fmt.Sprintf("BuildStatus(%d)", uint64(s))
}

// Success reports whether the goal's outputs are valid afterwards.
func (s BuildStatus) Success() bool {
	switch s {
	case StatusBuilt, StatusSubstituted, StatusAlreadyValid, StatusResolvesToAlreadyValid:
		return true
	}
	return false
}

// BuildResult is what a store reports about one build
// (2.8 src/libstore/build-result.hh). Fields a peer's protocol version does
// not carry are zero.
type BuildResult struct {
	Status             BuildStatus
	ErrorMsg           string // ANSI colour escapes removed
	TimesBuilt         uint64
	IsNonDeterministic bool
	StartTime          int64 // unix seconds
	StopTime           int64
	CPUUser            int64 // microseconds; 0 when unknown (protocol ≥ 1.37)
	CPUSystem          int64
	// BuiltOutputs maps output names to the paths that were built.
	BuiltOutputs map[string]Path
}

// Err returns nil for a successful result and a *BuildError otherwise.
func (r *BuildResult) Err(what string) error {
	if r.Status.Success() {
		return nil
	}
	return &BuildError{Path: what, Status: r.Status, Message: r.ErrorMsg}
}

// BuildError is a build that ran (or was refused) and failed. Path is what
// was built (a .drv path or a DerivedPath string); LogTail holds the last
// lines of the build log when the store sent them.
type BuildError struct {
	Path    string
	Status  BuildStatus
	Message string
	LogTail []string
}

func (e *BuildError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = "build failed"
	}
	if e.Path == "" {
		return fmt.Sprintf("store: %s (%s)", msg, e.Status)
	}
	return fmt.Sprintf("store: building %s: %s (%s)", e.Path, msg, e.Status)
}

// DerivedPath names something a store can make valid (2.8
// src/libstore/derived-path.hh): an opaque store path, or outputs of a
// derivation. Its string form is "/nix/store/…" or "/nix/store/…drv!out,dev",
// with "!*" for all outputs.
type DerivedPath struct {
	Path Path
	// Built is set for derivation outputs; Outputs then lists the wanted
	// outputs, sorted, and is empty for all of them ("*").
	Built   bool
	Outputs []string
}

// OpaquePath is the DerivedPath of an existing store path.
func OpaquePath(p Path) DerivedPath { return DerivedPath{Path: p} }

// BuiltPath is the DerivedPath of the named outputs of drv (all outputs if
// none are named).
func BuiltPath(drv Path, outputs ...string) DerivedPath {
	outs := slices.Clone(outputs)
	slices.Sort(outs)
	outs = slices.Compact(outs)
	return DerivedPath{Path: drv, Built: true, Outputs: outs}
}

func (d DerivedPath) String() string {
	if !d.Built {
		return d.Path.String()
	}
	if len(d.Outputs) == 0 {
		return d.Path.String() + "!*"
	}
	return d.Path.String() + "!" + strings.Join(d.Outputs, ",")
}

// ParseDerivedPath parses the string form written by DerivedPath.String.
func ParseDerivedPath(s string) (DerivedPath, error) {
	pathPart, outs, built := strings.Cut(s, "!")
	p, err := ParsePath(pathPart)
	if err != nil {
		return DerivedPath{}, err
	}
	if !built {
		return OpaquePath(p), nil
	}
	if outs == "*" {
		return BuiltPath(p), nil
	}
	names := strings.Split(outs, ",")
	for _, n := range names {
		if n == "" || n == "*" {
			return DerivedPath{}, &PathError{Path: s, Reason: "invalid output list"}
		}
	}
	return BuiltPath(p, names...), nil
}

// Equal reports whether d and e name the same thing.
func (d DerivedPath) Equal(e DerivedPath) bool {
	return d.Path == e.Path && d.Built == e.Built && slices.Equal(d.Outputs, e.Outputs)
}
