package copy

import (
	"bytes"
	"crypto/sha256"
	"io"
	"math/bits"
	"os"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/nbuild/nbuild/store"
)

// Patches: a changed file sent as zstd with the predecessor's file of the
// same name as a raw dictionary, as `zstd --patch-from` does. The sender
// has the predecessor too when it built or copied the last generation; it
// rewrites its copy of the old file as the remote does and names the
// remote's file by the digest both compute, so a predecessor that differs
// between the two ends only loses the patch.
const (
	minPatchSize = 4 << 10  // smaller changed files go as they are
	maxPatchSize = 32 << 20 // file and dictionary are held in memory
	patchDictID  = 1
	// betterPatchSize is the largest dictionary klauspost's "better" level
	// matches all through; "best" reaches about 20 MiB, at 6× the CPU
	// (a line added to random data: 3 MiB dictionary, better 365 bytes in
	// 52 ms; 6 MiB, better 1.2 MB, best 701 bytes in 0.43 s; 20 MiB, best
	// 2.4 kB in 1.3 s; the default level matches only about its first
	// MiB). On repetitive text "best" does worse than "better" (4.7 MB of
	// store-path lines: better 15 kB, best 49 kB), so above this size both
	// are tried and the smaller kept.
	betterPatchSize = 4 << 20
)

// remoteIndex is what the sender knows of the remote's index (step 3):
// it grows as the remote's answers arrive, path by path.
type remoteIndex struct {
	preds  []string          // per path, "" for none
	hashes map[string]string // predecessor's hash part → successor's, as Receive maps them

	mu      sync.Mutex
	cond    *sync.Cond
	have    map[digest]uint64 // digest → its number in the answers
	n       uint64            // digests numbered so far
	covered int               // paths whose predecessors are indexed
	ended   bool              // no more answers will come
}

// newRemoteIndex is the index the remote answered: preds and have cover
// every path; for an answer to come path by path, set covered to 0.
func newRemoteIndex(missing []*store.PathInfo, preds []string, have map[digest]uint64) *remoteIndex {
	ri := &remoteIndex{have: have, preds: preds, hashes: map[string]string{}, covered: len(missing)}
	ri.cond = sync.NewCond(&ri.mu)
	for _, i := range have {
		ri.n = max(ri.n, i+1)
	}
	for i, p := range preds {
		if p == "" {
			continue
		}
		pp, err := store.ParsePath(p)
		if err != nil || pp == missing[i].Path {
			continue
		}
		if _, dup := ri.hashes[pp.HashPart()]; !dup {
			ri.hashes[pp.HashPart()] = missing[i].Path.HashPart()
		}
	}
	return ri
}

// add numbers the digests of path i's predecessor's files, in order:
// path i and those before it are covered.
func (ri *remoteIndex) add(i int, digs []byte) {
	ri.mu.Lock()
	defer ri.mu.Unlock()
	for k := 0; k+sha256.Size <= len(digs); k += sha256.Size {
		d := digest(digs[k : k+sha256.Size])
		if _, dup := ri.have[d]; !dup {
			ri.have[d] = ri.n
		}
		ri.n++
	}
	ri.covered = max(ri.covered, i+1)
	ri.cond.Broadcast()
}

// end says no more answers will come.
func (ri *remoteIndex) end() {
	ri.mu.Lock()
	ri.ended = true
	ri.mu.Unlock()
	ri.cond.Broadcast()
}

// wait blocks until path i is covered; false if the answers ended first.
func (ri *remoteIndex) wait(i int) bool {
	ri.mu.Lock()
	defer ri.mu.Unlock()
	for ri.covered <= i && !ri.ended {
		ri.cond.Wait()
	}
	return ri.covered > i
}

// lookup returns the number of digest d, if the remote has it.
func (ri *remoteIndex) lookup(d digest) (uint64, bool) {
	ri.mu.Lock()
	defer ri.mu.Unlock()
	i, ok := ri.have[d]
	return i, ok
}

// patch returns file e of path i as a zstd frame whose dictionary is the
// remote's file number idx, when the sender has the path's predecessor,
// the remote indexed its file of the same name, and the frame is less
// than half the file.
func (ri *remoteIndex) patch(i int, e *sendEntry) (idx uint64, frame []byte, ok bool) {
	if ri == nil || i >= len(ri.preds) || ri.preds[i] == "" || e.size < minPatchSize || e.size > maxPatchSize {
		return 0, nil, false
	}
	old := ri.preds[i] + "/" + e.narPath
	if e.narPath == "" {
		old = ri.preds[i]
	}
	fi, err := os.Lstat(old)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() > maxPatchSize || fi.Size() < minRefSize {
		return 0, nil, false
	}
	raw, err := os.ReadFile(old)
	if err != nil {
		return 0, nil, false
	}
	var dict bytes.Buffer
	rw := newRewriter(&dict, ri.hashes)
	rw.Write(raw)
	rw.Close()
	idx, ok = ri.lookup(sha256.Sum256(dict.Bytes()))
	if !ok {
		return 0, nil, false
	}
	content, err := os.ReadFile(e.osPath)
	if err != nil || int64(len(content)) != e.size {
		return 0, nil, false
	}
	frame, err = makePatch(dict.Bytes(), content)
	if err != nil || int64(len(frame)) >= e.size/2 {
		return 0, nil, false
	}
	return idx, frame, true
}

// makePatch compresses content with dict as a raw dictionary: at the
// "better" level, and for a dictionary "better" does not match all
// through also at "best", keeping the smaller.
func makePatch(dict, content []byte) ([]byte, error) {
	frame, err := makePatchLevel(dict, content, zstd.SpeedBetterCompression)
	if err != nil || len(dict) <= betterPatchSize {
		return frame, err
	}
	best, err := makePatchLevel(dict, content, zstd.SpeedBestCompression)
	if err != nil || len(best) >= len(frame) {
		return frame, nil
	}
	return best, nil
}

func makePatchLevel(dict, content []byte, level zstd.EncoderLevel) ([]byte, error) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithEncoderDictRaw(patchDictID, dict),
		zstd.WithWindowSize(patchWindow(len(dict), len(content))), zstd.WithEncoderCRC(false), zstd.WithEncoderLevel(level))
	if err != nil {
		return nil, err
	}
	defer enc.Close()
	return enc.EncodeAll(content, nil), nil
}

// patchWindow is a window that reaches from the end of a file back over
// it and its dictionary: the next power of two, at least zstd's minimum.
func patchWindow(dict, file int) int {
	n := dict + file
	w := 1 << bits.Len(uint(max(n-1, 1)))
	return max(w, zstd.MinWindowSize)
}

// unpatch decodes a patch frame for a file of size bytes with dict as its
// dictionary.
func unpatch(frame, dict []byte, size int64) ([]byte, error) {
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderDictRaw(patchDictID, dict),
		zstd.WithDecoderMaxWindow(1<<30), zstd.WithDecoderMaxMemory(uint64(size)+1))
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	out, err := dec.DecodeAll(frame, make([]byte, 0, size))
	if err != nil {
		return nil, err
	}
	if int64(len(out)) != size {
		return nil, io.ErrUnexpectedEOF
	}
	return out, nil
}
