package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nbuild/nbuild/nar/wire"
	"github.com/nbuild/nbuild/store"
	"github.com/nix-community/go-nix/pkg/nixbase32"
)

// Store is what the conformance suite exercises: the store interfaces a
// build engine uses to query, read and fill a store.
type Store interface {
	store.ValidPathQuerier
	store.PathInfoQuerier
	store.NarReader
	store.NarAdder
}

// Run runs the conformance suite against the store returned by newStore,
// which is called once; the store must accept content-addressed paths
// without signatures (as every Nix store does) and may hold other paths.
// Every path the suite adds is new: its contents carry random bytes.
//
// The failure cases run last, in this order: an upload whose NAR does not
// match its hash (the store must still answer afterwards), then a NAR of a
// missing path (Nix 2.8's daemon hangs up after it, so the suite asks
// nothing of the store afterwards).
func Run(t *testing.T, newStore func(t *testing.T) Store) {
	s := newStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	a := NewObject(t, "storetest-a", nil)
	b := NewObject(t, "storetest-b", []store.Path{a.Info.Path})
	missing := mustPath(t, "storetest-missing", randomDigest(t))

	t.Run("MissingPath", func(t *testing.T) {
		_, err := s.QueryPathInfo(ctx, missing)
		if !errors.Is(err, store.ErrNotValid) {
			t.Fatalf("QueryPathInfo(missing) error = %v, want ErrNotValid", err)
		}
		valid, err := s.QueryValidPaths(ctx, []store.Path{missing}, false)
		if err != nil || len(valid) != 0 {
			t.Fatalf("QueryValidPaths(missing) = %v, %v; want none", valid, err)
		}
		// The store is still usable after the failures.
		if valid, err := s.QueryValidPaths(ctx, nil, false); err != nil || len(valid) != 0 {
			t.Fatalf("QueryValidPaths(nil) = %v, %v", valid, err)
		}
	})

	t.Run("AddAndQuery", func(t *testing.T) {
		for _, o := range []*Object{a, b} {
			if err := s.AddToStoreNar(ctx, o.Info, bytes.NewReader(o.NAR)); err != nil {
				t.Fatalf("AddToStoreNar(%s): %v", o.Info.Path, err)
			}
			got, err := s.QueryPathInfo(ctx, o.Info.Path)
			if err != nil {
				t.Fatalf("QueryPathInfo(%s): %v", o.Info.Path, err)
			}
			CheckInfo(t, got, o.Info)
		}
		valid, err := s.QueryValidPaths(ctx, []store.Path{b.Info.Path, missing, a.Info.Path}, false)
		if err != nil {
			t.Fatal(err)
		}
		store.SortPaths(valid)
		want := []store.Path{a.Info.Path, b.Info.Path}
		store.SortPaths(want)
		if !slices.Equal(valid, want) {
			t.Fatalf("QueryValidPaths = %v, want %v", valid, want)
		}
	})

	t.Run("NarRoundTrip", func(t *testing.T) {
		for _, o := range []*Object{a, b} {
			var buf bytes.Buffer
			if err := s.NarFromPath(ctx, o.Info.Path, &buf); err != nil {
				t.Fatalf("NarFromPath(%s): %v", o.Info.Path, err)
			}
			if !bytes.Equal(buf.Bytes(), o.NAR) {
				t.Fatalf("NarFromPath(%s): %d bytes differ from the %d added", o.Info.Path, buf.Len(), len(o.NAR))
			}
		}
	})

	t.Run("AddValidIsNoop", func(t *testing.T) {
		if err := s.AddToStoreNar(ctx, a.Info, bytes.NewReader(a.NAR)); err != nil {
			t.Fatalf("re-adding %s: %v", a.Info.Path, err)
		}
		got, err := s.QueryPathInfo(ctx, a.Info.Path)
		if err != nil {
			t.Fatal(err)
		}
		CheckInfo(t, got, a.Info)
	})

	t.Run("HashMismatch", func(t *testing.T) {
		c := NewObject(t, "storetest-c", nil)
		other := NewObject(t, "storetest-c", nil)
		// Claim other's hash and path, send c's bytes.
		err := s.AddToStoreNar(ctx, other.Info, bytes.NewReader(c.NAR))
		if err == nil {
			t.Fatalf("AddToStoreNar with a NAR not matching its hash succeeded")
		}
		// No sentinel is shared by the stores (a daemon's is Nix's
		// message), but each must name the cause and the path, not
		// fail for an unrelated reason.
		if msg := err.Error(); !strings.Contains(msg, "hash mismatch") || !strings.Contains(msg, other.Info.Path.String()) {
			t.Errorf("AddToStoreNar with a wrong NAR: %v; want a hash mismatch naming %s", err, other.Info.Path)
		}
		// A store whose transport ends the session on a failed import
		// (nix-store --serve exits) must reconnect for the next call.
		valid, err := s.QueryValidPaths(ctx, []store.Path{other.Info.Path, a.Info.Path}, false)
		if err != nil {
			t.Fatalf("after a rejected upload QueryValidPaths: %v", err)
		}
		if !slices.Equal(valid, []store.Path{a.Info.Path}) {
			t.Fatalf("after rejected upload QueryValidPaths = %v, want only %s", valid, a.Info.Path)
		}
	})

	// Last, because Nix 2.8's daemon closes the connection after failing to
	// dump a path: a single-connection store may be unusable afterwards.
	t.Run("NarFromMissingPath", func(t *testing.T) {
		var buf bytes.Buffer
		err := s.NarFromPath(ctx, missing, &buf)
		if !errors.Is(err, store.ErrNotValid) {
			t.Errorf("NarFromPath(missing) error = %v, want ErrNotValid", err)
		}
		if buf.Len() != 0 {
			t.Errorf("NarFromPath(missing) wrote %d bytes", buf.Len())
		}
	})
}

// CheckInfo compares what a store reports with what was added: the fields
// every store must keep (registration time, ultimate and signatures are the
// store's own).
func CheckInfo(t testing.TB, got, want *store.PathInfo) {
	t.Helper()
	if got.Path != want.Path {
		t.Errorf("Path = %s, want %s", got.Path, want.Path)
	}
	if got.NarHash != want.NarHash {
		t.Errorf("%s: NarHash = %s, want %s", want.Path, got.NarHashString(), want.NarHashString())
	}
	if got.NarSize != want.NarSize {
		t.Errorf("%s: NarSize = %d, want %d", want.Path, got.NarSize, want.NarSize)
	}
	if !slices.Equal(got.References, want.References) {
		t.Errorf("%s: References = %v, want %v", want.Path, got.References, want.References)
	}
	if got.Deriver != want.Deriver {
		t.Errorf("%s: Deriver = %v, want %v", want.Path, got.Deriver, want.Deriver)
	}
	if got.CA != want.CA {
		t.Errorf("%s: CA = %q, want %q", want.Path, got.CA, want.CA)
	}
}

// Object is a store object made up for a test: its NAR and the PathInfo
// of a content-addressed (fixed:r:sha256) path, which stores accept
// without signatures.
type Object struct {
	Info *store.PathInfo
	NAR  []byte
}

// NewObject makes a small new object: a directory with a file holding
// random bytes and the given references' paths, an executable and a
// symlink.
func NewObject(t testing.TB, name string, refs []store.Path) *Object {
	t.Helper()
	var text bytes.Buffer
	text.WriteString(hex.EncodeToString(randomBytes(t, 16)))
	text.WriteByte('\n')
	for _, r := range refs {
		text.WriteString(r.String())
		text.WriteByte('\n')
	}
	narBytes := DirNAR([]NAREntry{
		{Name: "a", Contents: text.Bytes()},
		{Name: "bin", Dir: []NAREntry{{Name: "x", Executable: true, Contents: []byte("#!/bin/sh\nexit 0\n")}}},
		{Name: "link", Target: "a"},
	})
	info, err := CAInfo(name, narBytes, refs)
	if err != nil {
		t.Fatal(err)
	}
	return &Object{Info: info, NAR: narBytes}
}

// CAInfo returns the PathInfo of a NAR added as a fixed:r:sha256
// content-addressed path named name with the given references.
func CAInfo(name string, narBytes []byte, refs []store.Path) (*store.PathInfo, error) {
	h := sha256.Sum256(narBytes)
	p, err := store.MakeSourcePath(name, h, refs, false)
	if err != nil {
		return nil, err
	}
	refs = slices.Clone(refs)
	store.SortPaths(refs)
	return &store.PathInfo{
		Path:       p,
		NarHash:    h,
		NarSize:    uint64(len(narBytes)),
		References: refs,
		CA:         "fixed:r:sha256:" + nixbase32.EncodeToString(h[:]),
	}, nil
}

// NAREntry describes a node for DirNAR: a regular file (Contents), a
// symlink (Target != "") or a directory (Dir != nil). Entries of a
// directory must be sorted by name.
type NAREntry struct {
	Name       string
	Contents   []byte
	Executable bool
	Target     string
	Dir        []NAREntry
}

// DirNAR serialises a directory of entries as a NAR (2.8 archive.cc dump).
// It is deliberately independent of package nar, so the suite checks
// stores against a second implementation of the format.
func DirNAR(entries []NAREntry) []byte {
	b := wire.AppendString(nil, "nix-archive-1")
	return appendNode(b, NAREntry{Dir: entries})
}

func appendNode(b []byte, e NAREntry) []byte {
	b = wire.AppendString(b, "(")
	b = wire.AppendString(b, "type")
	switch {
	case e.Dir != nil:
		b = wire.AppendString(b, "directory")
		for _, c := range e.Dir {
			b = wire.AppendString(b, "entry")
			b = wire.AppendString(b, "(")
			b = wire.AppendString(b, "name")
			b = wire.AppendString(b, c.Name)
			b = wire.AppendString(b, "node")
			b = appendNode(b, c)
			b = wire.AppendString(b, ")")
		}
	case e.Target != "":
		b = wire.AppendString(b, "symlink")
		b = wire.AppendString(b, "target")
		b = wire.AppendString(b, e.Target)
	default:
		b = wire.AppendString(b, "regular")
		if e.Executable {
			b = wire.AppendString(b, "executable")
			b = wire.AppendString(b, "")
		}
		b = wire.AppendString(b, "contents")
		b = wire.AppendBytes(b, e.Contents)
	}
	return wire.AppendString(b, ")")
}

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func randomDigest(t testing.TB) [store.DigestSize]byte {
	var d [store.DigestSize]byte
	copy(d[:], randomBytes(t, store.DigestSize))
	return d
}

func mustPath(t testing.TB, name string, d [store.DigestSize]byte) store.Path {
	p, err := store.NewPath(d, name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
