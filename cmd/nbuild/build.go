package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nbuild/nbuild/eval/graph"
	"github.com/nbuild/nbuild/sched"
	"github.com/nbuild/nbuild/sched/executor"
	"github.com/nbuild/nbuild/sched/plan"
	"github.com/nbuild/nbuild/store"
	"github.com/nbuild/nbuild/store/location"
	"github.com/nbuild/nbuild/store/metacache"
)

const buildUsage = `build [flags] INSTALLABLE...

Builds INSTALLABLEs (.drv paths, output paths, FILE.nix with -A ATTR, or
FLAKEREF#ATTR) by scheduling every derivation that must be built onto the
local nix-daemon and the remote builders (--builders, or nix.conf's
builders), longest critical path first, each on the builder expected to
finish it first. nbuild builds nothing itself: every build is delegated to
a nix-daemon. Prints the output paths of the roots, as nix-build does.

Builders: each remote builder is reached with one ssh login that its
sessions share, its builders line's host key (8th field) trusted as Nix
does; the local daemon through a bounded pool of connections. A builder
that cannot be reached is tried 3 times, 1 s then 2 s apart, and then
left out for the run: derivations only it can build fail at once (exit
1). A builder lost mid-build has its jobs moved elsewhere. When some
derivation has no capable builder nothing starts (exit 1); with
--keep-going what does not depend on it is built, and the exit status is
still 1.`

const buildExample = `  nbuild build -A hello default.nix
  nbuild build --builders 'ssh-ng://arm64-box aarch64-linux - 8 2' --timeline run.svg ./system.drv
  nbuild build --dry-run --builders @/etc/nix/machines ./system.drv`

type buildOptions struct {
	graphOptions
	jobs      int
	keepGoing bool
	dryRun    bool
	timeline  string
	quiet     bool
}

func buildCommand() command {
	return command{
		name:    "build",
		summary: "schedule and delegate builds to the local and remote nix-daemons",
		run: func(ctx context.Context, env *cmdEnv, args []string) error {
			var o buildOptions
			fs := newFlagSet(env, "build", buildUsage, buildExample)
			fs.IntVarP(&o.jobs, "max-jobs", "j", -1, "builds at once on the local machine (default: nix.conf's max-jobs)")
			fs.BoolVarP(&o.keepGoing, "keep-going", "k", false, "after a failure, go on with what does not depend on it")
			fs.BoolVar(&o.dryRun, "dry-run", false, "print the plan and its estimated time; build nothing")
			fs.StringVar(&o.timeline, "timeline", "", "write what ran where and when to FILE (.json or .svg)")
			fs.StringVar(&o.builders, "builders", "", "builders as Nix's `builders` setting: a spec, or @FILE (default: nix.conf's)")
			fs.StringVar(&o.store, "store", "", "the nix-daemon to build with (default: $NIX_REMOTE, or the machine's)")
			fs.StringArrayVarP(&o.attrs, "attr", "A", nil, "attribute to instantiate from a FILE.nix installable (repeatable)")
			fs.StringVar(&o.nixConf, "nix-conf", "", "nix.conf to read the local machine from (default $NIX_CONF_DIR/nix.conf or /etc/nix/nix.conf)")
			fs.StringVar(&o.cacheDir, "cache-dir", "", "metadata cache for build times (default ~/.cache/nbuild; \"none\" disables)")
			fs.DurationVar(&o.defDur, "default-duration", 5*time.Minute, "build time assumed for derivations never built before")
			fs.BoolVarP(&o.quiet, "quiet", "Q", false, "no progress, no log lines")
			substituteFlags(fs, &o.graphOptions)
			optionFlag(fs, &o.options)
			if err := parseFlags(fs, args); err != nil {
				return err
			}
			if fs.NArg() == 0 {
				return usagef("build: no installable given (see 'nbuild build --help')")
			}
			if o.timeline != "" && !strings.HasSuffix(o.timeline, ".json") && !strings.HasSuffix(o.timeline, ".svg") {
				return usagef("build: --timeline %s: the file name must end in .json or .svg", o.timeline)
			}
			return runBuild(ctx, env, o, fs.Args())
		},
	}
}

func runBuild(ctx context.Context, env *cmdEnv, o buildOptions, args []string) error {
	loc, err := location.Parse(o.store, location.Options{Getenv: env.getenv})
	if err != nil {
		return err
	}
	if loc.Kind != location.Daemon {
		return usagef("build: --store %s: builds are delegated to a nix-daemon; give its socket (daemon, unix://PATH)", o.store)
	}
	roots, err := resolveInstallables(ctx, "", args, o.attrs)
	if err != nil {
		return err
	}
	g, err := graph.Load(ctx, "", roots, graph.Options{})
	if err != nil {
		return err
	}
	settings, err := loadSettings(env, o.graphOptions)
	if err != nil {
		return err
	}
	options := settings.DaemonOverrides()
	machines, err := settings.Machines(o.builders, sched.LocalOptions{})
	if err != nil {
		return err
	}
	if o.jobs >= 0 {
		machines[0].MaxJobs = uint(o.jobs)
	}
	cache := openCache(env, o.cacheDir)
	if cache != nil {
		defer cache.Close()
	}
	vi, err := queryValidity(ctx, env, o.graphOptions, g, loc, settings, cache)
	if err != nil {
		return err
	}
	if cache != nil {
		if err := vi.Remember(cache); err != nil {
			fmt.Fprintf(env.stderr, "warning: metadata cache: %v\n", err)
		}
	}
	p, err := plan.New(g, vi, plan.Options{Machines: machines, DefaultDuration: o.defDur, Duration: cache.BuildTimes(sched.PackageName)})
	if err != nil {
		return err
	}
	unbuildable := len(p.Unbuildable()) > 0
	if unbuildable {
		p.WriteUnbuildable(env.stderr)
	}
	if o.dryRun {
		if err := p.WriteSummary(env.stdout); err != nil {
			return err
		}
		p.WriteEstimate(env.stdout)
		if p.Timeline != nil && o.timeline != "" {
			if err := p.Timeline.WriteFile(o.timeline); err != nil {
				return err
			}
		}
		if unbuildable {
			return &exitError{code: 1}
		}
		return nil
	}
	if unbuildable && !o.keepGoing {
		fmt.Fprintln(env.stderr, "nothing was built (--keep-going builds what does not depend on them)")
		return &exitError{code: 1}
	}
	if err := runSchedule(ctx, env, o, p, cache, loc, options); err != nil {
		return err
	}
	if unbuildable {
		fmt.Fprintln(env.stderr, "error: built what does not depend on the derivations no builder can build")
		return &exitError{code: 1}
	}
	for _, r := range p.Roots {
		for _, out := range g.Node(r).Outputs {
			if !out.Path.IsZero() {
				fmt.Fprintln(env.stdout, out.Path)
			}
		}
	}
	return nil
}

// runSchedule builds the plan with executor.Run, drawing progress and
// recording build times.
func runSchedule(ctx context.Context, env *cmdEnv, o buildOptions, p *plan.Plan, cache *metacache.Cache, loc location.Location, options map[string]string) error {
	prog := executor.NewDisplay(env.stderr, p, executor.DisplayOptions{Terminal: isTerminal(env.stderr), Quiet: o.quiet})
	var started sync.Map // job -> time.Time the build was handed out
	events := prog.Events()
	events.Built = func(job, machine int, res *store.BuildResult) {
		d := time.Duration(res.StopTime-res.StartTime) * time.Second
		if t, ok := started.Load(job); ok && (res.StartTime == 0 || d <= 0) {
			d = time.Since(t.(time.Time))
		}
		// A failure to record a duration only costs a later estimate.
		_ = cache.RecordBuild(sched.PackageName(p.Sched.Jobs[job].Name), d)
	}
	var tl *sched.Timeline
	if o.timeline != "" && p.Sched != nil {
		tl = sched.NewTimeline(p.Sched)
	}
	err := executor.Run(ctx, p, executor.RunOptions{
		Socket: loc.Socket, Options: options, KeepGoing: o.keepGoing, Events: events, Getenv: env.getenv,
		Timeline: tl, Progress: prog.Update,
		Started: func(job, machine int) {
			started.Store(job, time.Now())
			prog.Started(job, machine)
		},
	})
	prog.Clear()
	if tl != nil {
		if werr := tl.WriteFile(o.timeline); werr != nil && err == nil {
			err = werr
		}
	}
	if errors.Is(err, sched.ErrBuildFailed) {
		fmt.Fprintf(env.stderr, "error: %v\n", err)
		return &exitError{code: 1}
	}
	return err
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
