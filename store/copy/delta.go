package copy

// Delta copies: the protocol between ToHost and Receive.
//
// A deploy after a nixpkgs bump sends mostly new store paths whose files
// are byte for byte those of paths the remote already has, apart from the
// hash parts of store paths they name. A delta copy sends only what the
// remote cannot make itself. The remote end is nbuild itself
// (`nbuild __copy-receive`, Receive), run over the copy's one ssh session
// once remoteScript has found or been sent a binary (see remote.go). Then:
//
//  1. Receive says hello: string "nbuild-copy-receive", u64 version.
//  2. The sender sends the paths to add, in order (references first):
//     u64 count, and for each its path info and two lists of candidate
//     predecessors that remoteScript found in the remote's store: paths of
//     the same name, then paths of the same name without version.
//  3. Receive picks each path's predecessor (the newest valid candidate
//     of the first non-empty list), rewrites the predecessors' hash parts
//     into their successors' (the map old → new, as Nix rewrites hashes)
//     and indexes every regular file of at least minRefSize bytes of every
//     predecessor by the SHA-256 of its rewritten contents (from its digest
//     cache when it can). It answers at once u64 4, the predecessors
//     (u64 count, strings, "" for none) and a string of 32-byte digests
//     (empty), then, as it indexes them in the order of the paths, for
//     each path u64 5, the path's number and a string of the digests its
//     predecessor adds (steps 3 and 5 overlap: path i goes once its
//     digests arrived). Any answer of Receive may instead be u64 2 and a
//     message: it failed.
//  4. The sender streams, zstd-compressed, each path's NAR entries in NAR
//     order: directories, symlinks, and regular files either with their
//     contents, or, when the remote indexed a file of that digest, with the
//     digest's number in the answer of step 3, or, for a changed file whose
//     predecessor's file of the same name the sender has too, as a zstd
//     frame with that file (rewritten) as its dictionary, when that is
//     less than half the file.
//  5. Receive assembles each path's NAR from what arrived and its own
//     rewritten files and adds it to its own Nix store through
//     `nix-daemon --stdio`, which checks the NAR's hash as for any import:
//     a wrong assembly can never become a valid path. It acknowledges each
//     path as the daemon accepts it, and ends with statistics. It keeps
//     the digests of the files of what it added (digestcache.go), so the
//     next update finds its predecessors indexed.
//
// Numbers are u64 little-endian and strings are u64 length, bytes and
// zero padding to 8, as in Nix's protocols (nar/wire).

import (
	"crypto/sha256"
	"fmt"
	"runtime"
	"time"

	"github.com/nbuild/nbuild/nar/wire"
	"github.com/nbuild/nbuild/store"
)

// ReceiveCommand is the hidden nbuild subcommand that runs Receive on the
// remote end of a delta copy: `nbuild __copy-receive`, or with --hello
// only print ReceiveHello.
const ReceiveCommand = "__copy-receive"

const (
	deltaMagic   = "nbuild-copy-receive"
	deltaVersion = 1
	// minRefSize is the smallest file sent by digest: a smaller one costs
	// less to send than its digest.
	minRefSize = 64
)

// ReceiveHello is the line `nbuild __copy-receive --hello` prints: the
// protocol and version Receive speaks and the platform it runs on. A
// sender uses a remote nbuild only if it prints this protocol and version.
func ReceiveHello() string {
	return fmt.Sprintf("%s %d %s/%s", deltaMagic, deltaVersion, runtime.GOOS, runtime.GOARCH)
}

// Record tags of the compressed stream (step 4).
const (
	tagEnd  = 0 // end of the current path's NAR
	tagDir  = 1 // string path
	tagLink = 2 // string path, string target
	tagFile = 3 // string path, bool executable, u64 size, contents padded
	tagRef  = 4 // string path, bool executable, u64 size, u64 number of the digest in step 3's answer
	tagPath = 5 // u64 index: the next path starts
	tagDone = 6 // every path was sent
	// tagPatch: string path, bool executable, u64 size, u64 number of a
	// digest, string zstd frame: the file's contents compressed with the
	// remote's file of that digest (rewritten) as a raw dictionary.
	tagPatch = 7
)

// Replies of Receive after step 3.
const (
	ackPath    = 1 // u64 index: the daemon accepted the path
	ackFail    = 2 // string message: Receive failed
	ackDone    = 3 // u64 index ns, u64 assembly ns, u64 reused bytes
	ackPreds   = 4 // the answer of step 3
	ackDigests = 5 // u64 path index, string digests: more of step 3's answer
)

// DeltaStats says what a delta copy did (HostResult.Delta).
type DeltaStats struct {
	// Used is set when the delta protocol ran; Why says why not, or why
	// it stopped and the copy went on without it.
	Used bool
	Why  string
	// Binary is how the remote nbuild was found: "cached", "sent" or its
	// path on the remote.
	Binary string
	// Predecessors counts the sent paths that had one on the remote.
	Predecessors int
	// NarBytes is the size of the NARs added; ReusedBytes of it the
	// remote made from its own files; LiteralBytes went over the link
	// (before compression); WireBytes is what the stream of step 4 took
	// on the link after compression.
	NarBytes, ReusedBytes, LiteralBytes, WireBytes int64
	// PatchedFiles changed files of PatchedBytes went as PatchBytes of
	// zstd with the remote's file of the same name as the dictionary.
	PatchedFiles             int
	PatchedBytes, PatchBytes int64
	// RemoteIndex is the time the remote spent indexing its
	// predecessors' files; RemoteAssemble the time from the first record
	// to the last path accepted by its daemon.
	RemoteIndex, RemoteAssemble time.Duration
}

type digest = [sha256.Size]byte

// appendDeltaInfo appends a path info as step 2 sends it.
func appendDeltaInfo(b []byte, info *store.PathInfo) []byte {
	b = wire.AppendString(b, info.Path.String())
	b = wire.AppendString(b, info.Deriver.String())
	b = wire.AppendBytes(b, info.NarHash[:])
	b = wire.AppendUint64(b, info.NarSize)
	b = wire.AppendUint64(b, uint64(len(info.References)))
	for _, r := range info.References {
		b = wire.AppendString(b, r.String())
	}
	b = wire.AppendUint64(b, uint64(info.RegistrationTime))
	b = wire.AppendBool(b, info.Ultimate)
	b = wire.AppendStrings(b, info.Sigs)
	return wire.AppendString(b, info.CA)
}

// readDeltaInfo reads what appendDeltaInfo wrote.
func readDeltaInfo(d *wire.Decoder) (*store.PathInfo, error) {
	info := &store.PathInfo{}
	path, deriver := d.Str(), d.Str()
	hash := d.Str()
	info.NarSize = d.U64()
	refs := make([]string, d.Count("references", 1<<20))
	for i := range refs {
		refs[i] = d.Str()
	}
	info.RegistrationTime = int64(d.U64())
	info.Ultimate = d.Bool()
	info.Sigs = d.Strs()
	info.CA = d.Str()
	if d.Err != nil {
		return nil, d.Err
	}
	var err error
	if info.Path, err = store.ParsePath(path); err != nil {
		return nil, err
	}
	if deriver != "" {
		if info.Deriver, err = store.ParsePath(deriver); err != nil {
			return nil, err
		}
	}
	if len(hash) != len(info.NarHash) {
		return nil, fmt.Errorf("%s: NAR hash of %d bytes", path, len(hash))
	}
	copy(info.NarHash[:], hash)
	info.References = make([]store.Path, len(refs))
	for i, r := range refs {
		if info.References[i], err = store.ParsePath(r); err != nil {
			return nil, err
		}
	}
	return info, nil
}
