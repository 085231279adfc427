package serve

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nbuild/nbuild/eval/drv"
	"github.com/nbuild/nbuild/nar/wire"
	"github.com/nbuild/nbuild/store"
)

// BuildOptions are the build settings sent with BuildPaths and
// BuildDerivation (2.8 opServe getBuildSettings). Zero values mean no
// limit; the server forces use-substitutes off and keeps no log.
type BuildOptions struct {
	MaxSilentTime      time.Duration // ≥ 1 s granularity
	BuildTimeout       time.Duration
	MaxLogSize         uint64 // bytes (≥2.2)
	EnforceDeterminism bool   // (≥2.3)
	KeepFailed         bool   // (≥2.7)
}

func (c *Client) appendBuildOptions(b []byte, o BuildOptions) []byte {
	b = wire.AppendUint64(b, uint64(o.MaxSilentTime/time.Second))
	b = wire.AppendUint64(b, uint64(o.BuildTimeout/time.Second))
	minor := c.minor()
	if minor >= 2 {
		b = wire.AppendUint64(b, o.MaxLogSize)
	}
	if minor >= 3 {
		// nrRepeats stays 0: 2.8 would build extra rounds, HEAD refuses
		// non-zero.
		b = wire.AppendUint64(b, 0)
		b = wire.AppendBool(b, o.EnforceDeterminism)
	}
	if minor >= 7 {
		b = wire.AppendBool(b, o.KeepFailed)
	}
	return b
}

// BuildDerivation builds d, whose .drv is drvPath, on the server without
// the .drv being there (2.8 opServe cmdBuildDerivation). The server takes
// d.InputSrcs as the complete list of inputs, so the caller puts the
// output paths of input derivations there (they must be valid on the
// server); InputDrvs is not sent. A build that ran and failed returns its
// result and a *store.BuildError.
func (c *Client) BuildDerivation(ctx context.Context, drvPath store.Path, d *drv.Derivation, opts BuildOptions) (*store.BuildResult, error) {
	var res *store.BuildResult
	err := c.do(ctx, "BuildDerivation", func() error {
		b := wire.AppendUint64(c.buf[:0], cmdBuildDerivation)
		b = wire.AppendString(b, drvPath.String())
		b = d.AppendBasicWire(b)
		if err := c.send(c.appendBuildOptions(b, opts)); err != nil {
			return err
		}
		var err error
		res, err = readBuildResult(c.r, c.minor())
		return err
	})
	if err != nil {
		return nil, err
	}
	if !res.Status.Success() {
		return res, res.Err(drvPath.String())
	}
	return res, nil
}

// BuildPaths builds or substitutes targets on the server, whose .drv
// files must be valid there (2.8 opServe cmdBuildPaths). The reply carries
// only a status and message: a failure returns a *store.BuildError.
func (c *Client) BuildPaths(ctx context.Context, targets []store.DerivedPath, opts BuildOptions) error {
	var status uint64
	var msg string
	err := c.do(ctx, "BuildPaths", func() error {
		b := wire.AppendUint64(c.buf[:0], cmdBuildPaths)
		b = wire.AppendUint64(b, uint64(len(targets)))
		for _, t := range targets {
			b = wire.AppendString(b, pathWithOutputs(t))
		}
		if err := c.send(c.appendBuildOptions(b, opts)); err != nil {
			return err
		}
		d := decoder{Decoder: wire.Decoder{R: c.r}}
		status = d.U64()
		if status != 0 {
			msg = stripANSI(d.Str())
		}
		return d.Err
	})
	if err != nil {
		return err
	}
	if status != 0 {
		// status is the server's exit status for the failure (1, or
		// 100+ for build failures), not a BuildStatus.
		names := make([]string, len(targets))
		for i, t := range targets {
			names[i] = t.String()
		}
		return &store.BuildError{
			Path:    strings.Join(names, " "),
			Status:  store.StatusMiscFailure,
			Message: fmt.Sprintf("%s (exit status %d)", msg, status),
		}
	}
	return nil
}

// pathWithOutputs renders t as the 2.8 server parses it
// (parsePathWithOutputs): "drv!o1,o2", or the bare .drv path for all
// outputs. An opaque .drv path cannot be expressed: the server builds it.
func pathWithOutputs(t store.DerivedPath) string {
	if t.Built && len(t.Outputs) > 0 {
		return t.Path.String() + "!" + strings.Join(t.Outputs, ",")
	}
	return t.Path.String()
}
