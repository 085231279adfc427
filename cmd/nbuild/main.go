// Command nbuild inspects, schedules and copies Nix builds. See README.md
// and `nbuild help`.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/nbuild/nbuild/store/copy"
)

// command is one subcommand. run receives the arguments after the
// subcommand's name and the streams to use; tests call it directly.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, env *cmdEnv, args []string) error
}

// cmdEnv carries the process' streams and environment, so tests can run a
// subcommand in-process.
type cmdEnv struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
}

// usageError marks a bad command line; main exits 2 for it.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }

// exitError carries an exit status chosen by a subcommand (e.g. a check that
// found mismatches) when the message has already been printed.
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// commands lists every subcommand; each lives in its own file.
func commands() []command {
	return []command{
		buildCommand(),
		graphCommand(),
		copyCommand(),
		narCommand(),
		versionCommand(),
		drvCommand(),
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	env := &cmdEnv{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}
	var code int
	if len(os.Args) > 1 && os.Args[1] == copy.ReceiveCommand {
		// The remote end of a delta copy, run by another nbuild over ssh.
		code = copy.ReceiveMain(ctx, os.Args[2:], os.Stdin, os.Stdout, os.Stderr)
	} else if filepath.Base(os.Args[0]) == nixCopyClosureName {
		code = runNixCopyClosure(ctx, env, os.Args[0], os.Args[1:]) // a symlink of that name: nixcopyclosure.go
	} else {
		code = runMain(ctx, env, os.Args[1:])
	}
	stop()
	os.Exit(code)
}

// runMain dispatches to a subcommand and maps its error to an exit status:
// 0 success, 1 a failure the user must act on, 2 bad usage.
func runMain(ctx context.Context, env *cmdEnv, args []string) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		if len(args) > 1 {
			return runMain(ctx, env, []string{args[1], "--help"})
		}
		printUsage(env.stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	if args[0] == "--version" {
		args[0] = "version"
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, env, args[1:])
		return exitCode(env.stderr, err)
	}
	fmt.Fprintf(env.stderr, "nbuild: unknown command %q\nRun 'nbuild help' for the list of commands.\n", args[0])
	return 2
}

func exitCode(stderr io.Writer, err error) int {
	var ue *usageError
	var ee *exitError
	switch {
	case err == nil, errors.Is(err, pflag.ErrHelp):
		return 0
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "nbuild: %s\n", ue.msg)
		return 2
	default:
		fmt.Fprintf(stderr, "error: %s\n", err)
		return 1
	}
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, `nbuild: inspect, schedule and copy Nix builds.

Usage: nbuild COMMAND [flags] [args]

Commands:
`)
	cs := commands()
	sort.Slice(cs, func(i, j int) bool { return cs[i].name < cs[j].name })
	for _, c := range cs {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, "\nRun 'nbuild COMMAND --help' for a command's flags and an example.\n")
}

// newFlagSet returns a FlagSet whose --help prints usage, the flags and an
// example, and whose errors are reported as usage errors.
func newFlagSet(env *cmdEnv, name, usage, example string) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(env.stderr)
	fs.SortFlags = false
	fs.Usage = func() {
		fmt.Fprintf(env.stdout, "Usage: nbuild %s\n\nFlags:\n%s\nExample:\n%s\n", usage, fs.FlagUsages(), example)
	}
	return fs
}

// parseFlags parses args, turning a flag error into a usage error (exit 2)
// and --help into pflag.ErrHelp (exit 0).
func parseFlags(fs *pflag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	if fs.Lookup("option") != nil {
		args = joinOptionArgs(args)
	}
	err := fs.Parse(args)
	if errors.Is(err, pflag.ErrHelp) {
		return err // pflag has already printed fs.Usage
	}
	if err != nil {
		return usagef("%s: %v (see 'nbuild %s --help')", fs.Name(), err, fs.Name())
	}
	return nil
}
