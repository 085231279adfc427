package daemon

import (
	"context"
	"maps"
	"slices"

	"github.com/nbuild/nbuild/nar/wire"
)

// Verbosity is a Nix log level.
type Verbosity uint64

const (
	LvlError Verbosity = iota
	LvlWarn
	LvlNotice
	LvlInfo
	LvlTalkative
	LvlChatty
	LvlDebug
	LvlVomit
)

// Settings are the client settings sent with SetOptions (2.8 daemon.cc
// performOp wopSetOptions). The zero value asks for what a default Nix
// client asks for: one local build job, all cores, substitutes on.
// An untrusted client's overrides are ignored by the daemon except for a
// few harmless ones (2.8 src/libstore/daemon.cc performOp wopSetOptions).
type Settings struct {
	KeepFailed  bool
	KeepGoing   bool
	TryFallback bool
	// Verbosity filters plain log messages (not activities); default error.
	Verbosity Verbosity
	// MaxBuildJobs is max-jobs; 0 means 1. Use Overrides["max-jobs"]="0"
	// to forbid local builds.
	MaxBuildJobs  uint64
	MaxSilentTime uint64 // seconds, 0 = no limit
	// QuietBuild makes the daemon put the last log lines into build error
	// messages instead of treating the log as already shown (Nix's
	// verbose-build = false, as `nix-build -Q`).
	QuietBuild    bool
	BuildCores    uint64 // 0 = all cores
	NoSubstitutes bool
	// Overrides are other nix.conf settings by name, sent sorted.
	Overrides map[string]string
}

// SetOptions sends settings to the daemon; NewConn calls it unless
// Options.SkipSetOptions.
func (c *Conn) SetOptions(ctx context.Context, s *Settings) error {
	return c.simple(ctx, OpSetOptions, func(b []byte) []byte {
		jobs := s.MaxBuildJobs
		if jobs == 0 {
			jobs = 1
		}
		buildVerbosity := LvlError
		if s.QuietBuild {
			buildVerbosity = LvlVomit
		}
		b = wire.AppendBool(b, s.KeepFailed)
		b = wire.AppendBool(b, s.KeepGoing)
		b = wire.AppendBool(b, s.TryFallback)
		b = wire.AppendUint64(b, uint64(s.Verbosity))
		b = wire.AppendUint64(b, jobs)
		b = wire.AppendUint64(b, s.MaxSilentTime)
		b = wire.AppendUint64(b, 1) // useBuildHook, obsolete
		b = wire.AppendUint64(b, uint64(buildVerbosity))
		b = wire.AppendUint64(b, 0) // logType, obsolete
		b = wire.AppendUint64(b, 0) // printBuildTrace, obsolete
		b = wire.AppendUint64(b, s.BuildCores)
		b = wire.AppendBool(b, !s.NoSubstitutes)
		keys := slices.Sorted(maps.Keys(s.Overrides))
		b = wire.AppendUint64(b, uint64(len(keys)))
		for _, k := range keys {
			b = wire.AppendString(b, k)
			b = wire.AppendString(b, s.Overrides[k])
		}
		return b
	}, nil)
}
