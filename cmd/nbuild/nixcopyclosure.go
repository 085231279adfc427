package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"regexp"

	"github.com/nbuild/nbuild/sched/nixflags"
	"github.com/nbuild/nbuild/store"
	"github.com/nbuild/nbuild/store/copy"
	"github.com/nbuild/nbuild/store/ssh"
)

// Run by the name nix-copy-closure (a symlink to nbuild), nbuild is Nix
// 2.8's nix-copy-closure for the scripts that call it: the same command
// line (its own flags and those every 2.8 legacy command inherits), the
// same output, errors and exit codes, and nbuild's copy underneath. The
// command line is parsed by nixflags.ParseCopyClosure; the error handling
// mirrors 2.8's src/libmain/shared.cc handleExceptions.

// storePathRE finds the path an error wrapping store.ErrNotValid is about.
var storePathRE = regexp.MustCompile(`/nix/store/[0-9a-df-np-sv-z]{32}-[^\s:'"]+`)

// nixCopyClosureName is the name that makes nbuild nix-copy-closure.
const nixCopyClosureName = "nix-copy-closure"

// runNixCopyClosure runs nix-copy-closure with args (argv without the
// program name) and returns its exit status. prog is argv[0] as given,
// which 2.8's usage errors repeat.
func runNixCopyClosure(ctx context.Context, env *cmdEnv, prog string, args []string) int {
	a, err := nixflags.ParseCopyClosure(args)
	for _, w := range a.Warnings {
		fmt.Fprintln(env.stderr, w)
	}
	if err == nil {
		err = runCopyClosure(ctx, env, a)
	}
	var ue *nixflags.UsageError
	var ee *exitError
	var ce *copy.ConnectError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &ue):
		fmt.Fprintf(env.stderr, "error: %s\nTry '%s --help' for more information.\n", ue.Msg, prog)
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

func runCopyClosure(ctx context.Context, env *cmdEnv, a *nixflags.CopyClosure) error {
	switch {
	case a.Help:
		return nccHelp(env)
	case a.Version:
		fmt.Fprintf(env.stdout, "%s (Nix) 2.8.0\n", nixCopyClosureName)
		if a.Verbosity > nixflags.LvlInfo {
			fmt.Fprintf(env.stdout, "Implementation: nbuild %s\n", buildVersion())
		}
		return nil
	case a.Host == "":
		return &nixflags.UsageError{Msg: "no host name specified"}
	}
	if _, err := ssh.Args(a.Host, []string{"true"}, ssh.Options{Getenv: env.getenv}); errors.Is(err, ssh.ErrInvalidHost) {
		return fmt.Errorf("invalid SSH host name '%s'", a.Host)
	}
	switch a.Store {
	case "", "auto", "daemon":
	default:
		return fmt.Errorf("nbuild as nix-copy-closure copies to and from the local nix-daemon's store only, not --store '%s'", a.Store)
	}
	// --dry-run is parsed and ignored, as 2.8 does (it copies).
	// --include-outputs does what 2.8's manual says, which 2.8 ignores.
	o := copyOptions{
		from:           !a.To,
		includeOutputs: a.IncludeOutputs,
		useSubstitutes: a.UseSubstitutes,
		gzip:           a.Gzip,
		compress:       "auto",
		nixCompat:      true,
		noLog:          a.Verbosity < nixflags.LvlInfo,
		sshVerbose:     a.Verbosity >= nixflags.LvlChatty,
	}
	return runCopy(ctx, env, o, a.Host, a.Paths)
}

// nccHelp shows nix-copy-closure's manual page as 2.8 does (man
// nix-copy-closure), or a summary when man cannot.
func nccHelp(env *cmdEnv) error {
	cmd := exec.Command("man", nixCopyClosureName)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = env.stdin, env.stdout, io.Discard
	if err := cmd.Run(); err != nil {
		fmt.Fprint(env.stdout, nccSummary)
	}
	return nil
}

const nccSummary = `Usage: nix-copy-closure [--to | --from] [--gzip] [--include-outputs] [--use-substitutes | -s] [-v] [user@]machine paths...

nbuild run as nix-copy-closure: copies the closure of paths to (default) or
from machine over ssh, sending only what the other side lacks, with Nix
2.8's command line, messages and exit codes. NIX_SSHOPTS is passed to ssh.
See 'nbuild copy --help' for nbuild's own flags.
`
