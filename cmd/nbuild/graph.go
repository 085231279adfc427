package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"time"

	"github.com/nbuild/nbuild/eval/graph"
	"github.com/nbuild/nbuild/sched"
	"github.com/nbuild/nbuild/sched/plan"
	"github.com/nbuild/nbuild/store/location"
	"github.com/nbuild/nbuild/store/metacache"
	"github.com/spf13/pflag"
)

const graphUsage = `graph [flags] INSTALLABLE...

Shows the build plan of INSTALLABLEs (.drv paths, output paths, FILE.nix
with -A ATTR, or FLAKEREF#ATTR): which derivations are valid, which can be
substituted, which must be built, for which system and on which builder,
which cannot be built anywhere and why, and the critical path. Several
installables form one plan. Exits 1 when some derivation has no capable
builder (they are listed first).

The loaded derivation graph is saved as a snapshot beside the metadata
cache, so the next plan of the same installables reads one file instead of
every .drv (a .drv path names its content: a snapshot never goes stale);
which outputs are valid is asked anew every time. The simulated schedule is
kept there too: the same plan asked for again (another --format, a
--why-builder) is not simulated again. --no-cache bypasses both.`

const graphExample = `  nbuild graph --store testdata/store testdata/store/nix/store/*-nixos-system-pi-23.05.drv --builders @testdata/machines
  nbuild graph --format dot ./result.drv | dot -Tsvg > plan.svg
  nbuild graph --why /nix/store/...-openssl-3.0.8.drv ./system.drv
  nbuild graph --diff ./old-system.drv ./new-system.drv`

type graphOptions struct {
	format       string
	builders     string
	store        string
	attrs        []string
	why          string
	whyBuilder   string
	diff         string
	nixConf      string
	cacheDir     string
	noCache      bool
	offline      bool
	substTimeout time.Duration
	defDur       time.Duration
	options      []sched.Option // --option NAME VALUE
}

func graphCommand() command {
	return command{
		name:    "graph",
		summary: "inspect a build plan: states, systems, builders, critical path, why, diff",
		run: func(ctx context.Context, env *cmdEnv, args []string) error {
			var o graphOptions
			fs := newFlagSet(env, "graph", graphUsage, graphExample)
			fs.StringVar(&o.format, "format", "summary", "output: summary, tree, dot or json")
			jsonOut := fs.Bool("json", false, "same as --format json")
			fs.StringVar(&o.builders, "builders", "", "builders as Nix's `builders` setting: a spec, or @FILE (default: nix.conf's)")
			fs.StringVar(&o.store, "store", "", "the store: a chroot store directory, or the local daemon's URI (default: $NIX_REMOTE, or auto: the machine's nix-daemon)")
			fs.StringArrayVarP(&o.attrs, "attr", "A", nil, "attribute to instantiate from a FILE.nix installable (repeatable)")
			fs.StringVar(&o.why, "why", "", "show the shortest dependency chains from the roots to NAME|PATH (a name such as perl or perl-5.36.0, or a .drv, output or source path)")
			fs.StringVar(&o.whyBuilder, "why-builder", "", "say where DRV (a path, name or package name) is built and why that builder, or why it is not built")
			fs.StringVar(&o.diff, "diff", "", "compare with the plan of INSTALLABLE (the old version) and name the root causes")
			fs.StringVar(&o.nixConf, "nix-conf", "", "nix.conf to read the local machine from (default $NIX_CONF_DIR/nix.conf or /etc/nix/nix.conf)")
			fs.StringVar(&o.cacheDir, "cache-dir", "", "metadata cache with recorded build times (default ~/.cache/nbuild/metacache); graph snapshots go to DIR-graphs; \"none\" disables both")
			fs.BoolVar(&o.noCache, "no-cache", false, "read every .drv file and simulate the schedule, rather than use the graph snapshot and schedule an earlier run saved in CACHE-DIR-graphs (and save none)")
			fs.DurationVar(&o.defDur, "default-duration", 5*time.Minute, "build time assumed for derivations never built before")
			substituteFlags(fs, &o)
			optionFlag(fs, &o.options)
			if err := parseFlags(fs, args); err != nil {
				return err
			}
			if *jsonOut {
				o.format = "json"
			}
			switch o.format {
			case "summary", "tree", "dot", "json":
			default:
				return usagef("graph: unknown --format %q (summary, tree, dot, json)", o.format)
			}
			if fs.NArg() == 0 {
				return usagef("graph: no installable given (see 'nbuild graph --help')")
			}
			return runGraph(ctx, env, o, fs.Args())
		},
	}
}

func runGraph(ctx context.Context, env *cmdEnv, o graphOptions, args []string) error {
	// A plan is a short burst of allocation in a short-lived process: at
	// the default GOGC the collector's cycles were a third of the user
	// time of a warm 3,500-derivation plan, for 0.5 MB less peak RSS.
	// (20,000 derivations: 0.24 -> 0.19 s warm, 51 -> 76 MB, still 1.5x
	// the .drv bytes.) Not for JSON, whose encoder makes garbage in
	// proportion to the output (28 -> 35 MB at 3,500). An explicit GOGC
	// wins.
	tuneGC := os.Getenv("GOGC") == "" && o.format != "json"
	if tuneGC {
		defer debug.SetGCPercent(debug.SetGCPercent(400))
	}
	loc, root, err := parseStoreFlag(env, o.store)
	if err != nil {
		return err
	}
	roots, err := resolveInstallables(ctx, root, args, o.attrs)
	if err != nil {
		return err
	}
	if o.diff != "" {
		old, err := resolveInstallables(ctx, root, []string{o.diff}, o.attrs)
		if err != nil {
			return err
		}
		return runDiff(ctx, env.stdout, root, roots, old, o.format)
	}
	if o.why != "" {
		return runWhy(ctx, env.stdout, root, roots, o.why, o.format)
	}
	g, err := graph.Load(ctx, string(root), roots, graph.Options{SnapshotDir: snapshotDir(o)})
	if err != nil {
		return err
	}
	if tuneGC {
		// The graph stays live to the end and planning only adds to it,
		// so a collection from here on frees little and marks every node
		// again: at 100,000 derivations one was a fifth of a warm plan's
		// instructions. None, unless the heap grows past 3x its size now.
		heap := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		metrics.Read(heap)
		debug.SetGCPercent(-1)
		defer debug.SetMemoryLimit(debug.SetMemoryLimit(3*int64(heap[0].Value.Uint64()) + 64<<20))
	}
	// The reference graph of tree and DOT depends on the graph alone: it
	// is built on another core while validity and the plan are worked out.
	var refs chan *plan.RefGraph
	if o.format == "tree" || o.format == "dot" {
		refs = make(chan *plan.RefGraph, 1)
		go func() { refs <- plan.NewRefGraph(g) }()
	}
	settings, err := loadSettings(env, o)
	if err != nil {
		return err
	}
	machines, err := settings.Machines(o.builders, sched.LocalOptions{})
	if err != nil {
		return err
	}
	cache := metacache.OpenForLookups(metacache.ResolveDir(o.cacheDir))
	vi, err := queryValidity(ctx, env, o, g, loc, settings, cache)
	if err != nil {
		cache.Close()
		return err
	}
	durations := cache.BuildTimes(sched.PackageName)
	cache.Close()
	if vi.HasNewAnswers() {
		rememberSubstitutes(env, o.cacheDir, vi)
	}
	p, err := plan.New(g, vi, plan.Options{Machines: machines, DefaultDuration: o.defDur, Duration: durations, CacheDir: snapshotDir(o)})
	if err != nil {
		return err
	}
	if o.whyBuilder != "" {
		if !p.WriteWhyBuilder(env.stdout, o.whyBuilder) {
			return fmt.Errorf("no derivation in the closure matches '%s' (give a store path, a name such as perl-5.36.0, or a package name such as perl)", o.whyBuilder)
		}
		return nil
	}
	w := bufio.NewWriter(env.stdout)
	switch o.format {
	case "summary":
		err = p.WriteSummary(w)
	case "tree":
		err = p.WriteTree(w, <-refs)
	case "dot":
		err = p.WriteDot(w, <-refs)
	case "json":
		err = p.WriteJSON(w)
	}
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		return err
	}
	if bad := p.Unbuildable(); len(bad) > 0 {
		// The plan of what can be built is on stdout; what cannot, with
		// its causes and hints, goes to stderr.
		p.WriteUnbuildable(env.stderr)
		return &exitError{code: 1}
	}
	return nil
}

// queryValidity asks the store what is valid and what its substituters
// have, remembering answers in the metadata cache (nil: none). With no
// substituters (--offline, --option substituters ”) nothing is
// substitutable and the daemon is not asked.
func queryValidity(ctx context.Context, env *cmdEnv, o graphOptions, g *graph.Graph, loc location.Location, settings *sched.Settings, cache *metacache.Cache) (*plan.Validity, error) {
	vi, err := plan.QueryValidity(ctx, g, g.Roots(), plan.ValidityOptions{
		Store: loc, Options: settings.DaemonOverrides(), CacheDir: snapshotDir(o),
		NoSubstituters: o.offline || len(settings.Substituters()) == 0, Substituters: settings.Substituters(),
		Cache: cache, SubstituteTimeout: o.substTimeout,
	})
	if err == nil && vi.SubstitutesUnknown != "" && o.format != "summary" { // the summary says it
		fmt.Fprintf(env.stderr, "warning: substitutes unknown: %s\n", vi.SubstitutesUnknown)
	}
	return vi, err
}

// rememberSubstitutes stores what the daemon said about substitutes in
// the metadata cache; failing costs only the next plan's time.
func rememberSubstitutes(env *cmdEnv, dir string, vi *plan.Validity) {
	if dir = metacache.ResolveDir(dir); dir == "" {
		return
	}
	c, err := metacache.Open(dir, metacache.Options{})
	if err != nil {
		return
	}
	defer c.Close()
	if err := vi.Remember(c); err != nil {
		fmt.Fprintf(env.stderr, "warning: metadata cache %s: %v\n", dir, err)
	}
}

// loadSettings reads Nix's settings as a Nix client does: nix.conf (or
// --nix-conf), the user's files, NIX_CONFIG, then --option.
func loadSettings(env *cmdEnv, o graphOptions) (*sched.Settings, error) {
	return sched.LoadSettings(sched.SettingsOptions{Getenv: env.getenv, ConfFile: o.nixConf, Options: o.options})
}

// snapshotDir is where graph snapshots are kept: beside the metadata
// cache, in <cache-dir>-graphs. A snapshot holds a closure's derivation
// graph only (a .drv path names its content, so it never goes stale);
// validity is always asked fresh. "" disables them.
func snapshotDir(o graphOptions) string {
	dir := metacache.ResolveDir(o.cacheDir)
	if o.noCache || dir == "" {
		return ""
	}
	return dir + "-graphs"
}

// openCache opens the metadata cache for recorded build times; a cache
// that cannot be opened only costs the estimates.
func openCache(env *cmdEnv, dir string) *metacache.Cache {
	if dir = metacache.ResolveDir(dir); dir == "" {
		return nil
	}
	c, err := metacache.Open(dir, metacache.Options{})
	if err != nil {
		fmt.Fprintf(env.stderr, "warning: metadata cache %s: %v\n", dir, err)
		return nil
	}
	return c
}

// substituteFlags adds --offline and --substitute-timeout.
func substituteFlags(fs *pflag.FlagSet, o *graphOptions) {
	fs.BoolVar(&o.offline, "offline", false, "do not ask substituters (as --option substituters '')")
	fs.DurationVar(&o.substTimeout, "substitute-timeout", plan.DefaultSubstituteTimeout, "how long to wait for the daemon's substituters before reporting substitutes as unknown")
}

// optionFlag adds Nix's --option NAME VALUE (repeatable): a setting that
// overrides nix.conf and NIX_CONFIG, and is sent to every nix-daemon
// connection. pflag gives a flag one word, so parseFlags first joins
// "--option NAME VALUE" into "--option=NAME=VALUE" (see joinOptionArgs).
func optionFlag(fs *pflag.FlagSet, into *[]sched.Option) {
	fs.Var(&optionValue{into}, "option", "NAME VALUE: set a Nix setting, as nix --option (repeatable)")
}

type optionValue struct{ opts *[]sched.Option }

func (v *optionValue) String() string { return "" }
func (v *optionValue) Type() string   { return "" }
func (v *optionValue) Set(s string) error {
	name, value, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return fmt.Errorf("--option takes a name and a value")
	}
	*v.opts = append(*v.opts, sched.Option{Name: name, Value: value})
	return nil
}

// joinOptionArgs rewrites "--option NAME VALUE" into "--option=NAME=VALUE",
// leaving everything after "--" alone.
func joinOptionArgs(args []string) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		if args[i] == "--" {
			return append(out, args[i:]...)
		}
		if args[i] == "--option" && i+2 < len(args) {
			out = append(out, "--option="+args[i+1]+"="+args[i+2])
			i += 2
			continue
		}
		out = append(out, args[i])
	}
	return out
}
