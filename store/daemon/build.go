package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/nbuild/nbuild/eval/drv"
	"github.com/nbuild/nbuild/nar/wire"
	"github.com/nbuild/nbuild/store"
)

// BuildPaths makes targets valid, building or substituting as needed. A
// failure is an *Error whose LogTail holds the last build log lines seen.
func (c *Conn) BuildPaths(ctx context.Context, targets []store.DerivedPath, mode store.BuildMode) error {
	end, err := c.begin(ctx, OpBuildPaths)
	if err != nil {
		return err
	}
	return end(c.roundTrip(OpBuildPaths, func(b []byte) []byte {
		b = appendDerivedPaths(b, targets)
		return wire.AppendUint64(b, uint64(mode))
	}, readAck))
}

// BuildPathsWithResults is BuildPaths reporting one result per target:
// results[i] belongs to targets[i]. Nix 2.8 answers in its own goal order
// and merges requests for the same derivation, so results are matched by
// DerivedPath, falling back to the derivation path. Failed builds are
// results with a failure Status, not errors; err is for the op itself.
func (c *Conn) BuildPathsWithResults(ctx context.Context, targets []store.DerivedPath, mode store.BuildMode) ([]*store.BuildResult, error) {
	if !c.has(34) {
		return nil, &OpError{Op: OpBuildPathsWithResults, Err: fmt.Errorf("%w: needs protocol 1.34, daemon speaks %s", ErrProtocol, versionString(c.version))}
	}
	var keyed []keyedResult
	err := c.simple(ctx, OpBuildPathsWithResults, func(b []byte) []byte {
		b = appendDerivedPaths(b, targets)
		return wire.AppendUint64(b, uint64(mode))
	}, func(r *wire.Reader) error {
		n, err := r.ReadUint64()
		if err != nil {
			return err
		}
		if n > uint64(len(targets))+1024 {
			return &wire.LengthError{What: "build results", Len: n, Limit: uint64(len(targets)) + 1024}
		}
		var bad error
		for range n {
			s, err := r.ReadString()
			if err != nil {
				return err
			}
			res, err := readBuildResult(r, c.version)
			if err != nil {
				if _, ok := err.(*syncedError); !ok {
					return err
				}
				bad = err
				continue
			}
			d, err := store.ParseDerivedPath(s)
			if err != nil {
				bad = synced(err)
				continue
			}
			keyed = append(keyed, keyedResult{d, res})
		}
		return bad
	})
	if err != nil {
		return nil, err
	}
	return matchResults(targets, keyed)
}

type keyedResult struct {
	path store.DerivedPath
	res  *store.BuildResult
}

func matchResults(targets []store.DerivedPath, keyed []keyedResult) ([]*store.BuildResult, error) {
	out := make([]*store.BuildResult, len(targets))
	var missing []string
	for i, t := range targets {
		for _, k := range keyed {
			if k.path.Equal(t) {
				out[i] = k.res
				break
			}
		}
		if out[i] == nil {
			for _, k := range keyed {
				if k.path.Path == t.Path && k.path.Built == t.Built {
					out[i] = k.res
					break
				}
			}
		}
		if out[i] == nil {
			missing = append(missing, t.String())
		}
	}
	if missing != nil {
		return out, &OpError{Op: OpBuildPathsWithResults, Err: fmt.Errorf("%w: no result for %s", ErrProtocol, strings.Join(missing, ", "))}
	}
	return out, nil
}

// BuildDerivation builds d, whose .drv is drvPath, without the daemon
// reading the .drv: it need not be valid there. The daemon takes
// d.InputSrcs as the complete list of inputs (it adds their closure), so
// for a derivation with input derivations the caller puts their output
// paths into InputSrcs; InputDrvs is not sent. Untrusted clients may only
// build content-addressed derivations this way.
//
// A build that ran and failed returns its result and a *store.BuildError
// carrying the status, the daemon's message and the last log lines.
func (c *Conn) BuildDerivation(ctx context.Context, drvPath store.Path, d *drv.Derivation, mode store.BuildMode) (*store.BuildResult, error) {
	end, err := c.begin(ctx, OpBuildDerivation)
	if err != nil {
		return nil, err
	}
	var res *store.BuildResult
	var tail *logTail
	err = func() error {
		b := wire.AppendUint64(c.buf[:0], uint64(OpBuildDerivation))
		b = wire.AppendString(b, drvPath.String())
		b = d.AppendBasicWire(b)
		c.buf = wire.AppendUint64(b, uint64(mode))
		if err := c.send(); err != nil {
			return err
		}
		var err error
		if tail, err = c.processStderr(OpBuildDerivation, nil); err != nil {
			return err
		}
		res, err = readBuildResult(c.r, c.version)
		return err
	}()
	if err = end(err); err != nil {
		return nil, err
	}
	if !res.Status.Success() {
		return res, &store.BuildError{Path: drvPath.String(), Status: res.Status, Message: res.ErrorMsg, LogTail: tail.lines()}
	}
	return res, nil
}

// readBuildResult decodes a BuildResult at protocol version v (2.8
// daemon.cc wopBuildDerivation; HEAD worker-protocol.cc
// Serialise<BuildResult>): status, errorMsg, [≥1.29 timesBuilt,
// isNonDeterministic, startTime, stopTime], [≥1.37 cpuUser, cpuSystem as
// optional microseconds], [≥1.28 builtOutputs as DrvOutput id → Realisation
// JSON].
func readBuildResult(r *wire.Reader, v uint64) (*store.BuildResult, error) {
	d := decoder{wire.Decoder{R: r}}
	res := &store.BuildResult{Status: store.BuildStatus(d.U64()), ErrorMsg: StripANSI(d.Str())}
	if v >= 1<<8|29 {
		res.TimesBuilt = d.U64()
		res.IsNonDeterministic = d.Bool()
		res.StartTime = int64(d.U64())
		res.StopTime = int64(d.U64())
	}
	if v >= 1<<8|37 {
		for _, dst := range []*int64{&res.CPUUser, &res.CPUSystem} {
			switch tag := d.U64(); tag {
			case 0:
			case 1:
				*dst = int64(d.U64())
			default:
				if d.Err == nil {
					d.Err = fmt.Errorf("%w: optional tag %d", ErrProtocol, tag)
				}
			}
		}
	}
	if v < 1<<8|28 {
		return res, d.Err
	}
	n := d.Count("built outputs", 1<<16)
	raw := make([]string, 0, 2*n)
	for range 2 * n {
		raw = append(raw, d.Str())
	}
	if d.Err != nil {
		return nil, d.Err
	}
	if n > 0 {
		res.BuiltOutputs = make(map[string]store.Path, n)
	}
	for i := 0; i < len(raw); i += 2 {
		name, p, err := parseRealisation(raw[i], raw[i+1])
		if err != nil {
			return nil, synced(err)
		}
		res.BuiltOutputs[name] = p
	}
	return res, nil
}

// parseRealisation takes the output name from a DrvOutput id
// ("sha256:<hex>!out") and the path from the Realisation JSON; the hash is
// not meaningful to clients (2.8 src/libstore/realisation.hh).
func parseRealisation(id, js string) (string, store.Path, error) {
	i := strings.LastIndexByte(id, '!')
	if i < 0 || i == len(id)-1 {
		return "", store.Path{}, fmt.Errorf("%w: bad DrvOutput id %q", ErrProtocol, id)
	}
	var rz struct {
		OutPath string `json:"outPath"`
	}
	if err := json.Unmarshal([]byte(js), &rz); err != nil {
		return "", store.Path{}, fmt.Errorf("%w: bad realisation for %q: %v", ErrProtocol, id, err)
	}
	var p store.Path
	var err error
	if strings.HasPrefix(rz.OutPath, "/") {
		p, err = store.ParsePath(rz.OutPath)
	} else {
		p, err = store.ParseBase(rz.OutPath)
	}
	if err != nil {
		return "", store.Path{}, err
	}
	return id[i+1:], p, nil
}
