package daemon

import (
	"context"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/nbuild/nbuild/nar/wire"
	"github.com/nbuild/nbuild/store"
	"github.com/nix-community/go-nix/pkg/nixbase32"
)

var (
	_ store.ValidPathQuerier = (*Conn)(nil)
	_ store.PathInfoQuerier  = (*Conn)(nil)
	_ store.NarReader        = (*Conn)(nil)
	_ store.NarAdder         = (*Conn)(nil)
)

// IsValidPath reports whether p is valid in the daemon's store.
func (c *Conn) IsValidPath(ctx context.Context, p store.Path) (bool, error) {
	var valid bool
	err := c.simple(ctx, OpIsValidPath, func(b []byte) []byte {
		return wire.AppendString(b, p.String())
	}, func(r *wire.Reader) (err error) {
		valid, err = r.ReadBool()
		return err
	})
	return valid, err
}

// QueryValidPaths returns the valid subset of paths, in the daemon's
// (sorted) order, in one round trip. With substitute the daemon first tries
// to substitute missing paths.
func (c *Conn) QueryValidPaths(ctx context.Context, paths []store.Path, substitute bool) ([]store.Path, error) {
	var valid []store.Path
	err := c.simple(ctx, OpQueryValidPaths, func(b []byte) []byte {
		b = appendPaths(b, paths)
		if c.has(27) {
			b = wire.AppendBool(b, substitute)
		}
		return b
	}, func(r *wire.Reader) (err error) {
		valid, err = readPaths(r)
		return err
	})
	return valid, err
}

// QueryPathInfo returns what the daemon knows about p; an error wrapping
// store.ErrNotValid when p is not valid.
func (c *Conn) QueryPathInfo(ctx context.Context, p store.Path) (*store.PathInfo, error) {
	var info *store.PathInfo
	err := c.simple(ctx, OpQueryPathInfo, func(b []byte) []byte {
		return wire.AppendString(b, p.String())
	}, func(r *wire.Reader) (err error) {
		info, err = readOptionalPathInfo(r, p)
		return err
	})
	if err == nil && info == nil {
		return nil, fmt.Errorf("daemon: %s: %s: %w", OpQueryPathInfo, p, store.ErrNotValid)
	}
	return info, err
}

// QueryPathInfos returns the PathInfo of each path, nil for invalid ones.
// The requests are pipelined: one round trip for all of them, as the daemon
// answers a connection's requests in order.
func (c *Conn) QueryPathInfos(ctx context.Context, paths []store.Path) ([]*store.PathInfo, error) {
	end, err := c.begin(ctx, OpQueryPathInfo)
	if err != nil {
		return nil, err
	}
	infos := make([]*store.PathInfo, len(paths))
	return infos, end(c.queryPathInfos(paths, infos))
}

func (c *Conn) queryPathInfos(paths []store.Path, infos []*store.PathInfo) error {
	werr := c.sendPathOps(OpQueryPathInfo, paths)
	var first error
	for i, p := range paths {
		_, err := c.processStderr(OpQueryPathInfo, nil)
		if err == nil {
			infos[i], err = readOptionalPathInfo(c.r, p)
		}
		if err != nil && !isSynced(err) {
			c.rwc.Close() // unblocks the writer
			<-werr
			return err
		}
		if err != nil && first == nil {
			first = err
		}
	}
	if err := <-werr; err != nil {
		return err
	}
	return first
}

// sendPathOps writes the request op(path) for every path, on a goroutine
// beside the caller's reading of the replies so that neither side's
// buffers can fill up with the other blocked, and reports the writing's
// end on the returned channel.
func (c *Conn) sendPathOps(op Op, paths []store.Path) <-chan error {
	werr := make(chan error, 1)
	go func() {
		var b []byte
		for i, p := range paths {
			b = wire.AppendUint64(b, uint64(op))
			b = wire.AppendString(b, p.String())
			if len(b) >= 32<<10 || i == len(paths)-1 {
				if _, err := c.bw.Write(b); err != nil {
					werr <- err
					return
				}
				if err := c.bw.Flush(); err != nil {
					werr <- err
					return
				}
				b = b[:0]
			}
		}
		werr <- nil
	}()
	return werr
}

func isSynced(err error) bool {
	if isDaemonError(err) {
		return true
	}
	_, ok := err.(*syncedError)
	return ok
}

// QueryMissing reports what building targets would involve.
func (c *Conn) QueryMissing(ctx context.Context, targets []store.DerivedPath) (*Missing, error) {
	m := &Missing{}
	err := c.simple(ctx, OpQueryMissing, func(b []byte) []byte {
		return appendDerivedPaths(b, targets)
	}, func(r *wire.Reader) (err error) {
		if m.WillBuild, err = readPaths(r); err != nil {
			return err
		}
		if m.WillSubstitute, err = readPaths(r); err != nil {
			return err
		}
		if m.Unknown, err = readPaths(r); err != nil {
			return err
		}
		if m.DownloadSize, err = r.ReadUint64(); err != nil {
			return err
		}
		m.NarSize, err = r.ReadUint64()
		return err
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// Missing is the answer of QueryMissing (2.8 store-api.hh queryMissing).
type Missing struct {
	WillBuild      []store.Path // derivations to build
	WillSubstitute []store.Path
	Unknown        []store.Path // neither valid, buildable nor substitutable
	DownloadSize   uint64
	NarSize        uint64
}

// QueryDerivationOutputMap returns the output paths of a valid derivation
// by output name; the Path is zero for an output whose path is not known
// (a floating content-addressed output not built yet).
func (c *Conn) QueryDerivationOutputMap(ctx context.Context, drvPath store.Path) (map[string]store.Path, error) {
	var outs map[string]store.Path
	err := c.simple(ctx, OpQueryDerivationOutputMap, func(b []byte) []byte {
		return wire.AppendString(b, drvPath.String())
	}, func(r *wire.Reader) error {
		n, err := r.ReadUint64()
		if err != nil {
			return err
		}
		if n > 1<<16 {
			return &wire.LengthError{What: "output map", Len: n, Limit: 1 << 16}
		}
		raw := make([]string, 0, 2*n)
		for range 2 * n {
			s, err := r.ReadString()
			if err != nil {
				return err
			}
			raw = append(raw, s)
		}
		outs = make(map[string]store.Path, n)
		for i := 0; i < len(raw); i += 2 {
			var p store.Path
			if raw[i+1] != "" {
				if p, err = store.ParsePath(raw[i+1]); err != nil {
					return synced(err)
				}
			}
			outs[raw[i]] = p
		}
		return nil
	})
	return outs, err
}

// EnsurePath makes p valid, substituting it if needed.
func (c *Conn) EnsurePath(ctx context.Context, p store.Path) error {
	return c.simple(ctx, OpEnsurePath, func(b []byte) []byte {
		return wire.AppendString(b, p.String())
	}, readAck)
}

// AddTempRoot protects p from garbage collection while the connection is
// open.
func (c *Conn) AddTempRoot(ctx context.Context, p store.Path) error {
	return c.simple(ctx, OpAddTempRoot, func(b []byte) []byte {
		return wire.AppendString(b, p.String())
	}, readAck)
}

func appendPaths(b []byte, ps []store.Path) []byte {
	b = wire.AppendUint64(b, uint64(len(ps)))
	for _, p := range ps {
		b = wire.AppendString(b, p.String())
	}
	return b
}

func appendDerivedPaths(b []byte, ds []store.DerivedPath) []byte {
	b = wire.AppendUint64(b, uint64(len(ds)))
	for _, d := range ds {
		b = wire.AppendString(b, d.String())
	}
	return b
}

// readPaths reads a string list of store paths. A malformed path is
// reported after the whole list is read, so the stream stays in step.
func readPaths(r *wire.Reader) ([]store.Path, error) {
	ss, err := r.ReadStrings()
	if err != nil {
		return nil, err
	}
	return parsePaths(ss)
}

func parsePaths(ss []string) ([]store.Path, error) {
	ps := make([]store.Path, len(ss))
	for i, s := range ss {
		p, err := store.ParsePath(s)
		if err != nil {
			return nil, synced(err)
		}
		ps[i] = p
	}
	return ps, nil
}

// readOptionalPathInfo reads QueryPathInfo's reply: u64 valid, then the
// unkeyed ValidPathInfo when valid (nil when not).
func readOptionalPathInfo(r *wire.Reader, p store.Path) (*store.PathInfo, error) {
	valid, err := r.ReadBool()
	if err != nil || !valid {
		return nil, err
	}
	return readPathInfo(r, p)
}

// readPathInfo reads an unkeyed ValidPathInfo, format ≥ 16 (2.8
// daemon.cc wopQueryPathInfo, ValidPathInfo::write): deriver, narHash
// (base16), references, registrationTime, narSize, ultimate, sigs, ca.
func readPathInfo(r *wire.Reader, p store.Path) (*store.PathInfo, error) {
	d := decoder{wire.Decoder{R: r}}
	deriver := d.Str()
	narHash := d.Str()
	refs := d.Strs()
	regTime := d.U64()
	narSize := d.U64()
	ultimate := d.Bool()
	sigs := d.Strs()
	ca := d.Str()
	if d.Err != nil {
		return nil, d.Err
	}
	var err error
	info := &store.PathInfo{
		Path:             p,
		NarSize:          narSize,
		RegistrationTime: int64(regTime),
		Ultimate:         ultimate,
		Sigs:             sigs,
		CA:               ca,
	}
	if deriver != "" {
		if info.Deriver, err = store.ParsePath(deriver); err != nil {
			return nil, synced(err)
		}
	}
	if info.NarHash, err = parseNarHash(narHash); err != nil {
		return nil, synced(err)
	}
	if info.References, err = parsePaths(refs); err != nil {
		return nil, err
	}
	store.SortPaths(info.References)
	return info, nil
}

// parseNarHash accepts the bare base16 SHA-256 the worker protocol sends,
// and the "sha256:" forms in base16 or nix32.
func parseNarHash(s string) (h [32]byte, err error) {
	body := strings.TrimPrefix(s, "sha256:")
	var b []byte
	switch len(body) {
	case 64:
		b, err = hex.DecodeString(body)
	case 52:
		if body == s {
			return h, fmt.Errorf("%w: nar hash %q without algorithm", ErrProtocol, s)
		}
		b, err = nixbase32.DecodeString(body)
	default:
		return h, fmt.Errorf("%w: bad nar hash %q", ErrProtocol, s)
	}
	if err != nil {
		return h, fmt.Errorf("%w: bad nar hash %q: %v", ErrProtocol, s, err)
	}
	copy(h[:], b)
	return h, nil
}
