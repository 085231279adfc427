package nixflags

import (
	"fmt"
	"slices"
	"strings"

	"github.com/nbuild/nbuild/sched"
)

// Verbosity is a Nix verbosity level (2.8 src/libutil/logging.hh): -v
// raises it, --quiet lowers it.
type Verbosity int

// The levels nix-copy-closure's behaviour depends on.
const (
	LvlError  Verbosity = 0
	LvlInfo   Verbosity = 3 // the default
	LvlChatty Verbosity = 5
	LvlDebug  Verbosity = 6
)

// CopyClosure is a nix-copy-closure command line as Nix 2.8 parses it
// (src/nix-copy-closure/nix-copy-closure.cc main_nix_copy_closure).
type CopyClosure struct {
	To             bool // --to (the default) rather than --from
	Gzip           bool // --gzip, or --bzip2 and --xz, which fall back to it
	IncludeOutputs bool
	DryRun         bool // parsed, and ignored by 2.8
	UseSubstitutes bool // -s, --use-substitutes
	Verbosity      Verbosity
	Host           string   // the first argument nix-copy-closure's own parser does not know
	Paths          []string // the arguments after Host
	Store          string   // --store or --option store, "" if not given

	// Help or Version is set when --help or --version was seen: 2.8
	// acts on them at once, so parsing stopped there and the fields
	// above hold what came before.
	Help, Version bool

	// Warnings are the lines 2.8 prints on stderr while parsing, in
	// order, without "\n": unknown --option names, settings given bad
	// values with --option, flags it does not implement.
	Warnings []string
}

// UsageError is 2.8's UsageError: a bad command line, which 2.8 reports
// with a pointer to --help.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// ParseCopyClosure parses a nix-copy-closure command line (argv without
// the program's name) as 2.8 does (src/libmain/shared.cc LegacyArgs,
// src/libmain/common-args.cc MixCommonArgs, src/libutil/args.cc
// Args::parseCmdline, src/libutil/config.cc): compound short flags are
// split (-vvs is -v -v -s, -j4 is -j 4), the flags every legacy command
// inherits take their arguments and have their values checked, and every
// other argument goes to nix-copy-closure's own parser, which takes the
// first it does not know (even "--bogus") as the host and the rest as
// paths. A missing host is not an error here: 2.8 reports it only after
// parsing, as the command runs.
//
// The error is a *UsageError for a malformed command line (a flag short
// of arguments, a bad setting value), or another error that 2.8 reports
// as a plain one. c.Warnings holds what was to be printed before it.
func ParseCopyClosure(args []string) (c *CopyClosure, err error) {
	c = &CopyClosure{To: true, Verbosity: LvlInfo}
	var unknownSettings []string // --option names to warn about
	args = slices.Clone(args)
	dashDash, flagsDone := false, false
	flagsProcessed := func() {
		// 2.8 warns about unknown --option names once the flags before
		// the first argument are processed (MixCommonArgs::initialFlagsProcessed).
		if !flagsDone {
			flagsDone = true
			// 2.8 keeps them in a std::map: sorted, once each.
			slices.Sort(unknownSettings)
			for _, name := range slices.Compact(unknownSettings) {
				c.warnf("warning: unknown setting '%s'", name)
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
			n, err := c.inheritedFlag(args[i:], &unknownSettings)
			if err != nil {
				return c, err
			}
			if n > 0 {
				i += n
				continue
			}
		} else {
			flagsProcessed()
		}
		if c.ownArg(arg); c.Help || c.Version {
			return c, nil
		}
		i++
	}
	flagsProcessed()
	return c, nil
}

func (c *CopyClosure) warnf(format string, a ...any) {
	c.Warnings = append(c.Warnings, fmt.Sprintf(format, a...))
}

func isASCIILetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

// ownArg is nix-copy-closure's own argument parser: it accepts anything.
func (c *CopyClosure) ownArg(arg string) {
	switch arg {
	case "--help":
		c.Help = true
	case "--version":
		c.Version = true
	case "--gzip", "--bzip2", "--xz":
		if arg != "--gzip" {
			c.warnf("Warning: '%s' is not implemented, falling back to gzip", arg)
		}
		c.Gzip = true
	case "--from":
		c.To = false
	case "--to":
		c.To = true
	case "--include-outputs":
		c.IncludeOutputs = true
	case "--show-progress":
		c.warnf("Warning: '--show-progress' is not implemented")
	case "--dry-run":
		c.DryRun = true
	case "--use-substitutes", "-s":
		c.UseSubstitutes = true
	default:
		if c.Host == "" {
			c.Host = arg
		} else {
			c.Paths = append(c.Paths, arg)
		}
	}
}

// inheritedFlag handles args[0] if it is one of the flags every 2.8
// legacy command has (MixCommonArgs, LegacyArgs and one per setting) and
// returns how many arguments it took, or 0 if it is not one.
func (c *CopyClosure) inheritedFlag(args []string, unknownSettings *[]string) (int, error) {
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
		return 0, &UsageError{fmt.Sprintf("flag '%s' requires %d argument(s)", flag, f.arity)}
	}
	if f.option {
		c.optionFlag(args[1], args[2], unknownSettings)
	} else if err := f.handle(c, args[1:1+f.arity]); err != nil {
		return 0, err
	}
	return 1 + f.arity, nil
}

// inheritedFlag is one inherited flag: how many arguments it takes and
// what it does with them (mostly: checks them as 2.8 does, and nothing).
type inheritedFlag struct {
	arity  int
	handle func(c *CopyClosure, vals []string) error
	option bool // --option NAME VALUE, handled by optionFlag
}

func noop(*CopyClosure, []string) error { return nil }

var shortInheritedFlags = map[byte]inheritedFlag{
	'v': {arity: 0, handle: verboseFlag},
	'j': {arity: 1, handle: settingFlag("max-jobs", sched.SettingMaxJobs)},
	'Q': {arity: 0, handle: noop},
	'K': {arity: 0, handle: noop},
	'k': {arity: 0, handle: noop},
}

func verboseFlag(c *CopyClosure, _ []string) error { c.Verbosity++; return nil }

// lookupInheritedFlag finds a long flag (without its dashes). Later
// registrations win in 2.8, so LegacyArgs' own come first here.
func lookupInheritedFlag(name string) (inheritedFlag, bool) {
	switch name {
	case "verbose":
		return inheritedFlag{arity: 0, handle: verboseFlag}, true
	case "quiet":
		return inheritedFlag{arity: 0, handle: func(c *CopyClosure, _ []string) error {
			c.Verbosity = max(c.Verbosity-1, LvlError)
			return nil
		}}, true
	case "debug":
		return inheritedFlag{arity: 0, handle: func(c *CopyClosure, _ []string) error { c.Verbosity = LvlDebug; return nil }}, true
	case "option":
		return inheritedFlag{arity: 2, option: true}, true
	case "log-format":
		return inheritedFlag{arity: 1, handle: func(_ *CopyClosure, v []string) error {
			switch v[0] {
			case "raw", "raw-with-logs", "internal-json", "bar", "bar-with-logs":
				return nil
			}
			return fmt.Errorf("option 'log-format' has an invalid value '%s'", v[0])
		}}, true
	case "no-build-output", "keep-failed", "keep-going", "fallback", "readonly-mode", "no-gc-warning":
		return inheritedFlag{arity: 0, handle: noop}, true
	case "cores", "max-silent-time", "timeout":
		return inheritedFlag{arity: 1, handle: func(_ *CopyClosure, v []string) error { return checkUnitInt(v[0]) }}, true
	case "store":
		return inheritedFlag{arity: 1, handle: func(c *CopyClosure, v []string) error { c.Store = v[0]; return nil }}, true
	}
	// One flag per setting (2.8 config.cc convertToArg): --NAME VALUE,
	// --NAME / --no-NAME for booleans, --extra-NAME VALUE for lists.
	if s, ok := sched.LookupSetting(name, false); ok {
		switch s.Kind {
		case sched.SettingBool, sched.SettingSandbox:
			return inheritedFlag{arity: 0, handle: noop}, true
		}
		return inheritedFlag{arity: 1, handle: settingFlag(s.Name, s.Kind)}, true
	}
	for _, prefix := range []string{"no-", "relaxed-", "extra-"} {
		s, ok := sched.LookupSetting(strings.TrimPrefix(name, prefix), false)
		if !ok || !strings.HasPrefix(name, prefix) {
			continue
		}
		switch {
		case prefix == "no-" && (s.Kind == sched.SettingBool || s.Kind == sched.SettingSandbox),
			prefix == "relaxed-" && s.Kind == sched.SettingSandbox:
			return inheritedFlag{arity: 0, handle: noop}, true
		case prefix == "extra-" && s.Appendable():
			return inheritedFlag{arity: 1, handle: settingFlag(s.Name, s.Kind)}, true
		}
	}
	return inheritedFlag{}, false
}

// settingFlag checks a setting's value given as a flag: a bad one is a
// usage error.
func settingFlag(name string, kind sched.SettingKind) func(*CopyClosure, []string) error {
	return func(c *CopyClosure, v []string) error {
		warn, err := sched.CheckSetting(name, kind, v[0])
		if err != nil {
			return &UsageError{err.Error()}
		}
		if warn != "" {
			c.warnf("warning: %s", warn)
		}
		return nil
	}
}

// optionFlag is --option NAME VALUE: a bad value only warns, an unknown
// name is warned about once the flags are processed.
func (c *CopyClosure) optionFlag(name, value string, unknownSettings *[]string) {
	s, ok := sched.LookupSetting(name, true)
	if !ok {
		if base, found := sched.LookupSetting(strings.TrimPrefix(name, "extra-"), true); found && strings.HasPrefix(name, "extra-") && base.Appendable() {
			s, ok = base, true
		}
	}
	if !ok {
		*unknownSettings = append(*unknownSettings, name)
		return
	}
	if s.Name == "store" {
		c.Store = value
	}
	warn, err := sched.CheckSetting(s.Name, s.Kind, value)
	switch {
	case err != nil:
		c.warnf("warning: error: %s", err)
	case warn != "":
		c.warnf("warning: %s", warn)
	}
}

// checkUnitInt is sched.CheckUnitInt as a usage error.
func checkUnitInt(s string) error {
	if err := sched.CheckUnitInt(s); err != nil {
		return &UsageError{err.Error()}
	}
	return nil
}
