package binarycache

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/nix-community/go-nix/pkg/nixbase32"

	"github.com/nbuild/nbuild/nar"
	"github.com/nbuild/nbuild/nar/compress"
	"github.com/nbuild/nbuild/store"
)

// ErrHashMismatch is wrapped when a NAR does not match its NarHash or
// NarSize.
var ErrHashMismatch = errors.New("binarycache: NAR hash mismatch")

// ErrMissingReference is wrapped when a path is added before one of its
// references.
var ErrMissingReference = errors.New("binarycache: reference is not in the cache")

// HashMismatchError reports a NAR that is not what its info says.
type HashMismatchError struct {
	Path              store.Path
	WantHash, GotHash [32]byte
	WantSize, GotSize uint64
}

func (e *HashMismatchError) Error() string {
	return fmt.Sprintf("binarycache: NAR of %s: hash mismatch: want sha256:%s (%d bytes), got sha256:%s (%d bytes)",
		e.Path, nixbase32.EncodeToString(e.WantHash[:]), e.WantSize, nixbase32.EncodeToString(e.GotHash[:]), e.GotSize)
}

func (e *HashMismatchError) Unwrap() error { return ErrHashMismatch }

// FileMismatchError reports a compressed NAR file that is not what its
// narinfo's FileHash and FileSize say. It wraps ErrHashMismatch.
type FileMismatchError struct {
	Path              store.Path
	File              string
	WantHash, GotHash [32]byte
	WantSize, GotSize uint64
}

func (e *FileMismatchError) Error() string {
	return fmt.Sprintf("binarycache: NAR file %s of %s: hash mismatch: want sha256:%s (%d bytes), got sha256:%s (%d bytes)",
		e.File, e.Path, nixbase32.EncodeToString(e.WantHash[:]), e.WantSize, nixbase32.EncodeToString(e.GotHash[:]), e.GotSize)
}

func (e *FileMismatchError) Unwrap() error { return ErrHashMismatch }

// Options configures a Cache. The zero value writes xz-compressed NARs
// without signatures or listings and reads without checking signatures.
type Options struct {
	// Compression of written NARs: "xz" (the default, as Nix's), "zstd" or
	// "none".
	Compression string
	// CompressionLevel is the algorithm's level; 0 means its default.
	CompressionLevel int
	// Parallelism is how many chunks of one NAR are compressed at once;
	// 0 means GOMAXPROCS.
	Parallelism int
	// ChunkSize is the NAR bytes compressed into each independent zstd
	// frame or xz stream of a NAR file; 0 means nar/compress's default
	// (4 MiB zstd, 16 MiB xz).
	ChunkSize int
	// SecretKey signs every narinfo written. SecretKeyFile is read by Open
	// when SecretKey is nil.
	SecretKey     *SecretKey
	SecretKeyFile string
	// WriteNarListing writes <hash>.ls next to each narinfo.
	WriteNarListing bool
	// CheckSigs makes reads (QueryPathInfo, NarInfo, NarFromPath) fail
	// with ErrSignature for a path neither signed by one of TrustedKeys
	// nor content-addressed to its own path.
	CheckSigs   bool
	TrustedKeys []PublicKey
}

// Cache is a file:// binary cache in a local directory. It is safe for
// concurrent use; writes are atomic (temporary file, then rename) and the
// narinfo, written last, is the commit point of a path.
type Cache struct {
	dir  string
	opts Options
}

var (
	_ store.PathInfoQuerier  = (*Cache)(nil)
	_ store.ValidPathQuerier = (*Cache)(nil)
	_ store.NarReader        = (*Cache)(nil)
	_ store.NarAdder         = (*Cache)(nil)
)

// ParseURL parses a Nix store URL of a local binary cache,
// "file:///dir?compression=zstd&secret-key=FILE&write-nar-listing=1",
// into the directory and Options. Parameters 2.8 knows but that change
// nothing here (parallel-compression: nbuild always compresses in
// parallel; priority, want-mass-query, index-debug-info, local-nar-cache)
// are accepted and ignored; others are an error.
func ParseURL(s string) (string, Options, error) {
	var opts Options
	u, err := url.Parse(s)
	if err != nil {
		return "", opts, fmt.Errorf("binarycache: %w", err)
	}
	if u.Scheme != "file" || (u.Host != "" && u.Host != "localhost") || u.Path == "" {
		return "", opts, fmt.Errorf("binarycache: %q is not a file:///DIR URL", s)
	}
	for key, vals := range u.Query() {
		v := vals[len(vals)-1]
		switch key {
		case "compression":
			opts.Compression = v
		case "compression-level":
			if opts.CompressionLevel, err = strconv.Atoi(v); err != nil {
				return "", opts, fmt.Errorf("binarycache: %s: compression-level %q is not an integer", s, v)
			}
			if opts.CompressionLevel == -1 { // Nix's "default"
				opts.CompressionLevel = 0
			}
		case "secret-key":
			opts.SecretKeyFile = v
		case "write-nar-listing":
			if opts.WriteNarListing, err = parseBool(v); err != nil {
				return "", opts, fmt.Errorf("binarycache: %s: write-nar-listing: %w", s, err)
			}
		case "parallel-compression", "priority", "want-mass-query", "index-debug-info", "local-nar-cache":
		default:
			return "", opts, fmt.Errorf("binarycache: %s: unknown setting %q", s, key)
		}
	}
	if err := checkCompression(opts.Compression); err != nil {
		return "", opts, err
	}
	return u.Path, opts, nil
}

func parseBool(v string) (bool, error) {
	switch v {
	case "1", "true":
		return true, nil
	case "0", "false":
		return false, nil
	}
	return false, fmt.Errorf("%q is not a Boolean", v)
}

func checkCompression(c string) error {
	switch c {
	case "", "xz", "zstd", "none":
		return nil
	}
	return fmt.Errorf("binarycache: compression %q is not supported (xz, zstd or none)", c)
}

// Open opens the binary cache in dir, creating dir, dir/nar and
// nix-cache-info when absent as Nix does, and refusing a cache made for
// another store directory.
func Open(dir string, opts Options) (*Cache, error) {
	if err := checkCompression(opts.Compression); err != nil {
		return nil, err
	}
	if opts.Compression == "" {
		opts.Compression = "xz"
	}
	if opts.SecretKey == nil && opts.SecretKeyFile != "" {
		sk, err := LoadSecretKey(opts.SecretKeyFile)
		if err != nil {
			return nil, err
		}
		opts.SecretKey = sk
	}
	if err := os.MkdirAll(filepath.Join(dir, "nar"), 0o755); err != nil {
		return nil, fmt.Errorf("binarycache: %w", err)
	}
	c := &Cache{dir: dir, opts: opts}
	infoFile := filepath.Join(dir, "nix-cache-info")
	data, err := os.ReadFile(infoFile)
	switch {
	case errors.Is(err, os.ErrNotExist):
		ci := CacheInfo{StoreDir: store.StoreDir}
		if err := writeFileAtomic(infoFile, ci.AppendText(nil)); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, fmt.Errorf("binarycache: %w", err)
	default:
		ci, err := ParseCacheInfo(data)
		if err != nil {
			return nil, err
		}
		if ci.StoreDir != "" && ci.StoreDir != store.StoreDir {
			return nil, fmt.Errorf("binarycache: binary cache %q is for Nix stores with prefix %q, not %q", dir, ci.StoreDir, store.StoreDir)
		}
	}
	return c, nil
}

// Dir returns the cache's directory.
func (c *Cache) Dir() string { return c.dir }

func (c *Cache) narInfoFile(p store.Path) string {
	return filepath.Join(c.dir, p.HashPart()+".narinfo")
}

// NarInfo reads and parses the narinfo of p. A missing narinfo is an
// error wrapping store.ErrNotValid; with Options.CheckSigs an untrusted
// one wraps ErrSignature.
func (c *Cache) NarInfo(ctx context.Context, p store.Path) (*NarInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	file := c.narInfoFile(p)
	data, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s in binary cache %s", store.ErrNotValid, p, c.dir)
	}
	if err != nil {
		return nil, fmt.Errorf("binarycache: %w", err)
	}
	ni, err := ParseNarInfo(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if ni.StorePath != p {
		return nil, fmt.Errorf("%s: %w", file, &NarInfoError{Reason: "describes " + ni.StorePath.String() + ", not " + p.String()})
	}
	if c.opts.CheckSigs {
		if err := CheckTrust(ni.PathInfo(), c.opts.TrustedKeys); err != nil {
			return nil, err
		}
	}
	return ni, nil
}

// QueryPathInfo returns the PathInfo of p from its narinfo.
func (c *Cache) QueryPathInfo(ctx context.Context, p store.Path) (*store.PathInfo, error) {
	ni, err := c.NarInfo(ctx, p)
	if err != nil {
		return nil, err
	}
	return ni.PathInfo(), nil
}

// QueryValidPaths returns the paths among paths that have a narinfo, in
// input order. A binary cache substitutes nothing: substitute is ignored.
func (c *Cache) QueryValidPaths(ctx context.Context, paths []store.Path, substitute bool) ([]store.Path, error) {
	var valid []store.Path
	for _, p := range paths {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		ok, err := c.has(p)
		if err != nil {
			return nil, err
		}
		if ok {
			valid = append(valid, p)
		}
	}
	return valid, nil
}

func (c *Cache) has(p store.Path) (bool, error) {
	_, err := os.Stat(c.narInfoFile(p))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("binarycache: %w", err)
	}
	return true, nil
}

// NarFromPath writes the decompressed NAR of p to w, checking the
// compressed file against the narinfo's FileHash and FileSize (when it
// has them) and the NAR against its NarHash and NarSize as they stream.
// A mismatch is an error wrapping ErrHashMismatch (*FileMismatchError or
// *HashMismatchError) returned once the file is read; w has then already
// received bytes, so a consumer must not commit what it was given before
// NarFromPath returns nil (a Nix store verifies the hash itself).
func (c *Cache) NarFromPath(ctx context.Context, p store.Path, w io.Writer) error {
	ni, err := c.NarInfo(ctx, p)
	if err != nil {
		return err
	}
	if !filepath.IsLocal(ni.URL) {
		return fmt.Errorf("%s: %w", c.narInfoFile(p), &NarInfoError{Reason: fmt.Sprintf("URL %q leaves the cache", ni.URL)})
	}
	f, err := os.Open(filepath.Join(c.dir, ni.URL))
	if err != nil {
		return fmt.Errorf("binarycache: NAR of %s: %w", p, err)
	}
	defer f.Close()
	// The file's hash is taken over what the decompressor reads, plus
	// whatever it leaves unread after the end of the last stream.
	fileHash := nar.NewHashingWriter(nil)
	br := bufio.NewReaderSize(io.TeeReader(ctxReader{ctx, f}, fileHash), 256<<10)
	zr, err := compress.NewReader(br, ni.Compression)
	if err != nil {
		return fmt.Errorf("binarycache: NAR of %s: %w", p, err)
	}
	defer zr.Close()
	hw := nar.NewHashingWriter(w)
	_, err = io.Copy(hw, ctxReader{ctx, zr})
	// Hash the whole file even after a decompression error, so that a
	// corrupt file is reported as such rather than by how xz or zstd
	// failed on it.
	if _, derr := io.Copy(io.Discard, br); derr != nil && err == nil {
		err = derr
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	fileErr := c.checkFile(ni, fileHash)
	if err != nil {
		if fileErr != nil {
			return fileErr
		}
		return fmt.Errorf("binarycache: NAR of %s: %w", p, err)
	}
	if fileErr != nil {
		return fileErr
	}
	if got, size := hw.Sum(), uint64(hw.Size()); got != ni.NarHash || size != ni.NarSize {
		return &HashMismatchError{Path: p, WantHash: ni.NarHash, GotHash: got, WantSize: ni.NarSize, GotSize: size}
	}
	return nil
}

// checkFile compares the bytes hashed from a NAR file with the narinfo's
// FileHash and FileSize. A narinfo without FileHash (newer Nix may omit
// it) is checked on FileSize alone, if it has one.
func (c *Cache) checkFile(ni *NarInfo, h *nar.HashingWriter) error {
	got, size := h.Sum(), uint64(h.Size())
	wrongSize := ni.FileSize != 0 && size != ni.FileSize
	wrongHash := ni.HasFileHash && got != ni.FileHash
	if !wrongSize && !wrongHash {
		return nil
	}
	return &FileMismatchError{Path: ni.StorePath, File: filepath.Join(c.dir, ni.URL), WantHash: ni.FileHash, GotHash: got, WantSize: ni.FileSize, GotSize: size}
}

// ctxReader stops a long copy once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

// AddToStoreNar adds info.Path from its NAR, as 2.8's
// BinaryCacheStore::addToStore does: a path already present is skipped
// without reading nar; every reference but the path itself must already be
// present (ErrMissingReference); the NAR, read up to info.NarSize bytes,
// is validated, compressed and hashed in one pass into a temporary file;
// on a hash or size mismatch (ErrHashMismatch) the file is removed and
// nothing is written. Otherwise the NAR file, then the listing, then the
// narinfo (signed with Options.SecretKey) are renamed into place.
func (c *Cache) AddToStoreNar(ctx context.Context, info *store.PathInfo, r io.Reader) error {
	if info.Path.IsZero() || info.NarSize == 0 {
		return fmt.Errorf("binarycache: AddToStoreNar needs a path and its NAR size")
	}
	if ok, err := c.has(info.Path); err != nil || ok {
		return err
	}
	for _, ref := range info.References {
		if ref == info.Path {
			continue
		}
		ok, err := c.has(ref)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w: cannot add %s to the binary cache because the reference %s is not valid", ErrMissingReference, info.Path, ref)
		}
	}

	ni := &NarInfo{
		StorePath:   info.Path,
		Compression: c.opts.Compression,
		NarSize:     info.NarSize,
		NarHash:     info.NarHash,
		References:  info.References,
		Deriver:     info.Deriver,
		Sigs:        append([]string(nil), info.Sigs...),
		CA:          info.CA,
		HasFileHash: true,
	}
	listing, err := c.writeNar(ctx, info, r, ni)
	if err != nil {
		return err
	}
	if listing != nil {
		if err := writeFileAtomic(filepath.Join(c.dir, info.Path.HashPart()+".ls"), listing.AppendJSON(nil)); err != nil {
			return err
		}
	}
	if sk := c.opts.SecretKey; sk != nil {
		sig, err := sk.Sign(info)
		if err != nil {
			return fmt.Errorf("binarycache: %w", err)
		}
		if !slices.Contains(ni.Sigs, sig) { // Ed25519 signatures are deterministic
			ni.Sigs = append(ni.Sigs, sig)
		}
	}
	return writeFileAtomic(c.narInfoFile(info.Path), ni.AppendText(nil))
}

// writeNar streams the NAR into nar/<filehash>.nar<ext> and fills ni's
// URL, FileHash and FileSize. It returns the listing when the cache
// writes them.
func (c *Cache) writeNar(ctx context.Context, info *store.PathInfo, r io.Reader, ni *NarInfo) (_ *nar.Listing, err error) {
	narDir := filepath.Join(c.dir, "nar")
	tmp, err := os.CreateTemp(narDir, ".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("binarycache: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err = tmp.Chmod(0o644); err != nil { // CreateTemp makes 0600; caches are served to others
		return nil, fmt.Errorf("binarycache: %w", err)
	}
	bw := bufio.NewWriterSize(tmp, 256<<10)
	fileHash := nar.NewHashingWriter(bw)
	zw, err := compress.NewWriter(fileHash, c.opts.Compression, compress.Options{
		Level:       c.opts.CompressionLevel,
		Concurrency: c.opts.Parallelism,
		ChunkSize:   c.opts.ChunkSize,
		Context:     ctx,
	})
	if err != nil {
		return nil, fmt.Errorf("binarycache: %w", err)
	}
	narHash := nar.NewHashingWriter(zw)
	// Reading at most NarSize bytes lets a NAR that is followed by more
	// data (a protocol stream) be read exactly, and makes a longer or
	// shorter NAR fail the size check rather than hang or over-read.
	in := ctxReader{ctx, io.LimitReader(r, int64(info.NarSize))}
	var listing *nar.Listing
	if c.opts.WriteNarListing {
		listing, err = nar.List(io.TeeReader(in, narHash))
	} else {
		_, err = nar.Copy(narHash, in)
	}
	if cerr := zw.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		got := uint64(narHash.Size())
		switch {
		case got < info.NarSize && errors.Is(err, nar.ErrTruncated):
			return nil, &HashMismatchError{Path: info.Path, WantHash: info.NarHash, GotHash: narHash.Sum(), WantSize: info.NarSize, GotSize: got}
		case got == info.NarSize && errors.Is(err, nar.ErrTruncated):
			return nil, fmt.Errorf("%w: NAR of %s is longer than its NarSize %d", ErrHashMismatch, info.Path, info.NarSize)
		case errors.Is(err, nar.ErrTrailingData):
			return nil, fmt.Errorf("%w: NAR of %s is shorter than its NarSize %d", ErrHashMismatch, info.Path, info.NarSize)
		}
		return nil, fmt.Errorf("binarycache: NAR of %s: %w", info.Path, err)
	}
	if got := narHash.Sum(); got != info.NarHash || uint64(narHash.Size()) != info.NarSize {
		return nil, &HashMismatchError{Path: info.Path, WantHash: info.NarHash, GotHash: got, WantSize: info.NarSize, GotSize: uint64(narHash.Size())}
	}
	if err = bw.Flush(); err != nil {
		return nil, fmt.Errorf("binarycache: %w", err)
	}
	if err = tmp.Close(); err != nil {
		return nil, fmt.Errorf("binarycache: %w", err)
	}
	ni.FileHash = fileHash.Sum()
	ni.FileSize = uint64(fileHash.Size())
	ni.URL = "nar/" + nixbase32.EncodeToString(ni.FileHash[:]) + ".nar" + compress.Ext(c.opts.Compression)
	if err = os.Rename(tmp.Name(), filepath.Join(c.dir, ni.URL)); err != nil {
		return nil, fmt.Errorf("binarycache: %w", err)
	}
	return listing, nil
}

// writeFileAtomic writes data to a temporary file next to path and
// renames it over path, so readers see the old file or the new one.
func writeFileAtomic(path string, data []byte) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("binarycache: %w", err)
	}
	defer func() {
		if err != nil {
			os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("binarycache: %w", err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("binarycache: %w", err)
	}
	if err = os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("binarycache: %w", err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("binarycache: %w", err)
	}
	return nil
}
