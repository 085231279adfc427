package store

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// ErrNotValid is wrapped when a store is asked about a path it does not
// hold as valid.
var ErrNotValid = errors.New("store: path is not valid")

// PathInfo is what a store knows about a valid path
// (2.8 src/libstore/path-info.hh ValidPathInfo).
type PathInfo struct {
	Path             Path
	Deriver          Path // zero when unknown
	NarHash          [sha256.Size]byte
	NarSize          uint64
	References       []Path // sorted; may include Path itself
	RegistrationTime int64  // unix seconds; 0 when unknown
	Ultimate         bool   // built locally: trusted without signatures
	Sigs             []string
	CA               string // rendered content address (e.g. "text:sha256:…"), "" for none
}

// NarHashString returns the NAR hash as "sha256:<nix32>", as narinfo files,
// signatures and `nix-store -q --hash` print it.
func (pi *PathInfo) NarHashString() string {
	return "sha256:" + EncodeNix32(pi.NarHash[:])
}

// Fingerprint returns the message Nix signs for a path
// (2.8 src/libstore/store-api.cc ValidPathInfo::fingerprint):
// "1;<path>;sha256:<nix32 narHash>;<narSize>;<ref>,<ref>...".
func (pi *PathInfo) Fingerprint() (string, error) {
	if pi.NarSize == 0 {
		return "", fmt.Errorf("store: cannot calculate fingerprint of path %s because its size is not known", pi.Path)
	}
	refs := make([]string, len(pi.References))
	for i, r := range pi.References {
		refs[i] = r.String()
	}
	// References are kept sorted by base name, which sorts full paths too.
	var b strings.Builder
	b.WriteString("1;")
	b.WriteString(pi.Path.String())
	b.WriteByte(';')
	b.WriteString(pi.NarHashString())
	b.WriteByte(';')
	b.WriteString(strconv.FormatUint(pi.NarSize, 10))
	b.WriteByte(';')
	b.WriteString(strings.Join(refs, ","))
	return b.String(), nil
}

// The interfaces below are the store operations nbuild's engine consumes.
// Each implementation (daemon, serve, binary cache, cached decorator)
// provides those it can; consumers ask for the smallest one they need.

// ValidPathQuerier reports which of paths are valid. With substitute, the
// store may first try to substitute missing paths.
type ValidPathQuerier interface {
	QueryValidPaths(ctx context.Context, paths []Path, substitute bool) ([]Path, error)
}

// PathInfoQuerier returns the PathInfo of a valid path, or an error
// wrapping ErrNotValid.
type PathInfoQuerier interface {
	QueryPathInfo(ctx context.Context, p Path) (*PathInfo, error)
}

// NarReader streams the NAR serialisation of a valid path to w.
type NarReader interface {
	NarFromPath(ctx context.Context, p Path, w io.Writer) error
}

// NarAdder adds a path from its NAR. The store verifies the NAR against
// info (hash, size) before it registers the path as valid.
type NarAdder interface {
	AddToStoreNar(ctx context.Context, info *PathInfo, nar io.Reader) error
}
