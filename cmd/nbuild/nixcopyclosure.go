package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"slices"
	"strings"

	"github.com/nbuild/nbuild/sched"
	"github.com/nbuild/nbuild/store"
	"github.com/nbuild/nbuild/store/copy"
	"github.com/nbuild/nbuild/store/ssh"
)

// Run by the name nix-copy-closure (a symlink to nbuild), nbuild is Nix
// 2.8's nix-copy-closure for the scripts that call it: the same command
// line (its own flags and those every 2.8 legacy command inherits), the
// same output, errors and exit codes, and nbuild's copy underneath. The
// parsing mirrors 2.8's src/nix-copy-closure/nix-copy-closure.cc
// main_nix_copy_closure, src/libmain/shared.cc LegacyArgs and
// handleExceptions, src/libmain/common-args.cc MixCommonArgs,
// src/libutil/args.cc Args::parseCmdline and src/libutil/config.cc.

// storePathRE finds the path an error wrapping store.ErrNotValid is about.
var storePathRE = regexp.MustCompile(`/nix/store/[0-9a-df-np-sv-z]{32}-[^\s:'"]+`)

// nixCopyClosureName is the name that makes nbuild nix-copy-closure.
const nixCopyClosureName = "nix-copy-closure"

// Nix's verbosity levels (2.8 src/libutil/logging.hh).
const (
	lvlError  = 0
	lvlInfo   = 3
	lvlChatty = 5
	lvlDebug  = 6
)

// nccArgs is a parsed nix-copy-closure command line.
type nccArgs struct {
	to, gzip, includeOutputs, dryRun, useSubstitutes bool
	verbosity                                        int
	host                                             string
	paths                                            []string
	store                                            string
	unknownSettings                                  []string // --option names to warn about
}

// nccUsageError is 2.8's UsageError: the message, then a pointer to
// --help.
type nccUsageError struct{ msg string }

func (e *nccUsageError) Error() string { return e.msg }

func nccUsagef(format string, a ...any) error { return &nccUsageError{fmt.Sprintf(format, a...)} }

// runNixCopyClosure runs nix-copy-closure with args (argv without the
// program name) and returns its exit status. prog is argv[0] as given,
// which 2.8's usage errors repeat.
func runNixCopyClosure(ctx context.Context, env *cmdEnv, prog string, args []string) int {
	a, err := parseNixCopyClosure(env, args)
	if err == nil {
		err = a.run(ctx, env)
	}
	var ue *nccUsageError
	var ee *exitError
	var ce *copy.ConnectError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &ue):
		fmt.Fprintf(env.stderr, "error: %s\nTry '%s --help' for more information.\n", ue.msg, prog)
	case errors.As(err, &ce):
		// ssh has said why on our stderr already, as under Nix.
		fmt.Fprintf(env.stderr, "error: cannot connect to '%s'\n", ce.Host)
	case errors.Is(err, store.ErrNotValid) && storePathRE.MatchString(err.Error()):
		fmt.Fprintf(env.stderr, "error: path '%s' is not valid\n", storePathRE.FindString(err.Error()))
	default:
		fmt.Fprintf(env.stderr, "error: %s\n", err)
	}
	return 1
}

func (a *nccArgs) run(ctx context.Context, env *cmdEnv) error {
	if a.host == "" {
		return nccUsagef("no host name specified")
	}
	if _, err := ssh.Args(a.host, []string{"true"}, ssh.Options{Getenv: env.getenv}); errors.Is(err, ssh.ErrInvalidHost) {
		return fmt.Errorf("invalid SSH host name '%s'", a.host)
	}
	switch a.store {
	case "", "auto", "daemon":
	default:
		return fmt.Errorf("nbuild as nix-copy-closure copies to and from the local nix-daemon's store only, not --store '%s'", a.store)
	}
	// --dry-run is parsed and ignored, as 2.8 does (it copies).
	// --include-outputs does what 2.8's manual says, which 2.8 ignores.
	o := copyOptions{
		from:           !a.to,
		includeOutputs: a.includeOutputs,
		useSubstitutes: a.useSubstitutes,
		gzip:           a.gzip,
		compress:       "auto",
		nixCompat:      true,
		noLog:          a.verbosity < lvlInfo,
		sshVerbose:     a.verbosity >= lvlChatty,
	}
	return runCopy(ctx, env, o, a.host, a.paths)
}

// parseNixCopyClosure parses args as 2.8 does: compound short flags are
// split (-vvs is -v -v -s, -j4 is -j 4), the inherited flags take their
// arguments, and every other argument goes to nix-copy-closure's own
// parser, which takes the first it does not know (even "--bogus") as the
// host and the rest as paths. --version and --help act as soon as they
// are seen.
func parseNixCopyClosure(env *cmdEnv, args []string) (*nccArgs, error) {
	a := &nccArgs{to: true, verbosity: lvlInfo}
	args = slices.Clone(args)
	dashDash, flagsDone := false, false
	flagsProcessed := func() {
		// 2.8 warns about unknown --option names once the flags before
		// the first argument are processed (MixCommonArgs::initialFlagsProcessed).
		if !flagsDone {
			flagsDone = true
			// 2.8 keeps them in a std::map: sorted, once each.
			slices.Sort(a.unknownSettings)
			for _, name := range slices.Compact(a.unknownSettings) {
				fmt.Fprintf(env.stderr, "warning: unknown setting '%s'\n", name)
			}
		}
	}
	for i := 0; i < len(args); {
		arg := args[i]
		if !dashDash && len(arg) > 2 && arg[0] == '-' && arg[1] != '-' && isASCIILetter(arg[1]) {
			split := []string{arg[:2]}
			for j := 2; j < len(arg); j++ {
				if !isASCIILetter(arg[j]) {
					split = append(split, arg[j:])
					break
				}
				split = append(split, "-"+arg[j:j+1])
			}
			args = slices.Replace(args, i, i+1, split...)
			arg = args[i]
		}
		if !dashDash && arg == "--" {
			dashDash = true
			i++
			continue
		}
		if !dashDash && strings.HasPrefix(arg, "-") {
			n, err := a.inheritedFlag(env, args[i:])
			if err != nil {
				return nil, err
			}
			if n > 0 {
				i += n
				continue
			}
		} else {
			flagsProcessed()
		}
		if err := a.ownArg(env, arg); err != nil {
			return nil, err
		}
		i++
	}
	flagsProcessed()
	return a, nil
}

func isASCIILetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

// ownArg is nix-copy-closure's own argument parser: it accepts anything.
func (a *nccArgs) ownArg(env *cmdEnv, arg string) error {
	switch arg {
	case "--help":
		return nccHelp(env)
	case "--version":
		fmt.Fprintf(env.stdout, "%s (Nix) 2.8.0\n", nixCopyClosureName)
		if a.verbosity > lvlInfo {
			fmt.Fprintf(env.stdout, "Implementation: nbuild %s\n", buildVersion())
		}
		return &exitError{code: 0}
	case "--gzip", "--bzip2", "--xz":
		if arg != "--gzip" {
			fmt.Fprintf(env.stderr, "Warning: '%s' is not implemented, falling back to gzip\n", arg)
		}
		a.gzip = true
	case "--from":
		a.to = false
	case "--to":
		a.to = true
	case "--include-outputs":
		a.includeOutputs = true
	case "--show-progress":
		fmt.Fprintf(env.stderr, "Warning: '--show-progress' is not implemented\n")
	case "--dry-run":
		a.dryRun = true
	case "--use-substitutes", "-s":
		a.useSubstitutes = true
	default:
		if a.host == "" {
			a.host = arg
		} else {
			a.paths = append(a.paths, arg)
		}
	}
	return nil
}

// nccHelp shows nix-copy-closure's manual page as 2.8 does (man
// nix-copy-closure), or a summary when man cannot.
func nccHelp(env *cmdEnv) error {
	cmd := exec.Command("man", nixCopyClosureName)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = env.stdin, env.stdout, io.Discard
	if err := cmd.Run(); err != nil {
		fmt.Fprint(env.stdout, nccSummary)
	}
	return &exitError{code: 0}
}

const nccSummary = `Usage: nix-copy-closure [--to | --from] [--gzip] [--include-outputs] [--use-substitutes | -s] [-v] [user@]machine paths...

nbuild run as nix-copy-closure: copies the closure of paths to (default) or
from machine over ssh, sending only what the other side lacks, with Nix
2.8's command line, messages and exit codes. NIX_SSHOPTS is passed to ssh.
See 'nbuild copy --help' for nbuild's own flags.
`

// inheritedFlag handles args[0] if it is one of the flags every 2.8
// legacy command has (MixCommonArgs, LegacyArgs and one per setting) and
// returns how many arguments it took, or 0 if it is not one.
func (a *nccArgs) inheritedFlag(env *cmdEnv, args []string) (int, error) {
	flag := args[0]
	var f inheritedFlag
	var ok bool
	if strings.HasPrefix(flag, "--") {
		f, ok = lookupInheritedFlag(flag[2:])
	} else if len(flag) == 2 {
		f, ok = shortInheritedFlags[flag[1]]
	}
	if !ok {
		return 0, nil
	}
	if len(args)-1 < f.arity {
		return 0, nccUsagef("flag '%s' requires %d argument(s)", flag, f.arity)
	}
	if err := f.handle(a, env, args[1:1+f.arity]); err != nil {
		return 0, err
	}
	return 1 + f.arity, nil
}

// inheritedFlag is one inherited flag: how many arguments it takes and
// what it does with them (mostly: checks them as 2.8 does, and nothing).
type inheritedFlag struct {
	arity  int
	handle func(a *nccArgs, env *cmdEnv, vals []string) error
}

func noop(*nccArgs, *cmdEnv, []string) error { return nil }

var shortInheritedFlags = map[byte]inheritedFlag{
	'v': {0, verboseFlag},
	'j': {1, settingFlag("max-jobs", sched.SettingMaxJobs)},
	'Q': {0, noop},
	'K': {0, noop},
	'k': {0, noop},
}

func verboseFlag(a *nccArgs, _ *cmdEnv, _ []string) error { a.verbosity++; return nil }

// lookupInheritedFlag finds a long flag (without its dashes). Later
// registrations win in 2.8, so LegacyArgs' own come first here.
func lookupInheritedFlag(name string) (inheritedFlag, bool) {
	switch name {
	case "verbose":
		return inheritedFlag{0, verboseFlag}, true
	case "quiet":
		return inheritedFlag{0, func(a *nccArgs, _ *cmdEnv, _ []string) error {
			a.verbosity = max(a.verbosity-1, lvlError)
			return nil
		}}, true
	case "debug":
		return inheritedFlag{0, func(a *nccArgs, _ *cmdEnv, _ []string) error { a.verbosity = lvlDebug; return nil }}, true
	case "option":
		return inheritedFlag{2, nccOptionFlag}, true
	case "log-format":
		return inheritedFlag{1, func(_ *nccArgs, _ *cmdEnv, v []string) error {
			switch v[0] {
			case "raw", "raw-with-logs", "internal-json", "bar", "bar-with-logs":
				return nil
			}
			return fmt.Errorf("option 'log-format' has an invalid value '%s'", v[0])
		}}, true
	case "no-build-output", "keep-failed", "keep-going", "fallback", "readonly-mode", "no-gc-warning":
		return inheritedFlag{0, noop}, true
	case "cores", "max-silent-time", "timeout":
		return inheritedFlag{1, func(_ *nccArgs, _ *cmdEnv, v []string) error { return checkUnitInt(v[0]) }}, true
	case "store":
		return inheritedFlag{1, func(a *nccArgs, _ *cmdEnv, v []string) error { a.store = v[0]; return nil }}, true
	}
	// One flag per setting (2.8 config.cc convertToArg): --NAME VALUE,
	// --NAME / --no-NAME for booleans, --extra-NAME VALUE for lists.
	if s, ok := sched.LookupSetting(name, false); ok {
		switch s.Kind {
		case sched.SettingBool, sched.SettingSandbox:
			return inheritedFlag{0, noop}, true
		}
		return inheritedFlag{1, settingFlag(s.Name, s.Kind)}, true
	}
	for _, prefix := range []string{"no-", "relaxed-", "extra-"} {
		s, ok := sched.LookupSetting(strings.TrimPrefix(name, prefix), false)
		if !ok || !strings.HasPrefix(name, prefix) {
			continue
		}
		switch {
		case prefix == "no-" && (s.Kind == sched.SettingBool || s.Kind == sched.SettingSandbox),
			prefix == "relaxed-" && s.Kind == sched.SettingSandbox:
			return inheritedFlag{0, noop}, true
		case prefix == "extra-" && s.Appendable():
			return inheritedFlag{1, settingFlag(s.Name, s.Kind)}, true
		}
	}
	return inheritedFlag{}, false
}

// settingFlag checks a setting's value given as a flag: a bad one is a
// usage error.
func settingFlag(name string, kind sched.SettingKind) func(*nccArgs, *cmdEnv, []string) error {
	return func(_ *nccArgs, env *cmdEnv, v []string) error {
		warn, err := sched.CheckSetting(name, kind, v[0])
		if err != nil {
			return &nccUsageError{err.Error()}
		}
		if warn != "" {
			fmt.Fprintf(env.stderr, "warning: %s\n", warn)
		}
		return nil
	}
}

// nccOptionFlag is --option NAME VALUE: a bad value only warns, an unknown
// name is warned about once the flags are processed.
func nccOptionFlag(a *nccArgs, env *cmdEnv, v []string) error {
	name, value := v[0], v[1]
	s, ok := sched.LookupSetting(name, true)
	if !ok {
		if base, found := sched.LookupSetting(strings.TrimPrefix(name, "extra-"), true); found && strings.HasPrefix(name, "extra-") && base.Appendable() {
			s, ok = base, true
		}
	}
	if !ok {
		a.unknownSettings = append(a.unknownSettings, name)
		return nil
	}
	if s.Name == "store" {
		a.store = value
	}
	warn, err := sched.CheckSetting(s.Name, s.Kind, value)
	switch {
	case err != nil:
		fmt.Fprintf(env.stderr, "warning: error: %s\n", err)
	case warn != "":
		fmt.Fprintf(env.stderr, "warning: %s\n", warn)
	}
	return nil
}

// checkUnitInt is sched.CheckUnitInt as a usage error.
func checkUnitInt(s string) error {
	if err := sched.CheckUnitInt(s); err != nil {
		return &nccUsageError{err.Error()}
	}
	return nil
}
