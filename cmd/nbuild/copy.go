package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/nbuild/nbuild/store"
	"github.com/nbuild/nbuild/store/copy"
	"github.com/nbuild/nbuild/store/daemon"
	"github.com/nbuild/nbuild/store/location"
	"github.com/nbuild/nbuild/store/ssh"
)

const copyUsage = `copy [--to|--from] [USER@]HOST PATH...
       nbuild copy --to|--from file:///DIR[?compression=zstd|xz|none&secret-key=FILE&write-nar-listing=1] PATH...

Copy the closure of PATHs to (default) or from HOST over ssh, sending only
what the other side lacks, as nix-copy-closure does and with its flags and
NIX_SSHOPTS. To a host, nbuild runs one ssh session: one round trip finds
the missing paths, then their NARs stream in one upload to the remote's
nix-daemon --stdio, compressed with zstd or xz that the remote decompresses
itself (nix-store --serve --write, uncompressed, when it has no nix-daemon).
The remote's Nix checks every NAR's hash before the path becomes valid, so
an interrupted copy leaves no partial path and a rerun sends the rest.
From a host, one session too: the closure's path infos in one reply, then
the missing NARs back to back, compressed by the remote's own zstd or xz,
each added locally as it arrives (through its nix-daemon --stdio when the
remote has no nix path-info, or with --include-outputs).

Updates go as deltas: when HOST holds paths named like those to send (the
last generation of a system), nbuild on HOST makes each new path from its
predecessor's files, with the old store hashes rewritten to the new ones,
and only what it cannot make crosses the link (changed files as zstd
patches against the old ones); HOST's Nix checks every NAR's hash as for
any import. nbuild sends itself to a HOST of this architecture once, into
~/.cache/nbuild/bin there (--remote-nbuild names one for another); both
ends keep file digests in ~/.cache/nbuild/digests. --delta off sends whole
NARs.

With file:///DIR the other side is a binary cache Nix reads (nix-cache-info,
nar/*.nar.xz|zst, *.narinfo, signed with secret-key); --from verifies each
NAR's hash and lets the local daemon check signatures (trusted-public-keys).

Output: "copying N paths..." once the missing paths are known, with -v a
"copying path ..." line as each starts, and on a terminal a status line.
Ctrl-C (SIGINT) or SIGTERM stops the copy: nbuild says how many paths of
the closure are on HOST and exits 130 or 143; a rerun sends the rest.

Run by the name nix-copy-closure (a symlink to nbuild, earlier on PATH than
Nix's), nbuild takes Nix 2.8's nix-copy-closure command line instead of
these flags and prints its messages and exit codes, for scripts written
for it: ln -s "$(command -v nbuild)" ~/bin/nix-copy-closure`

const copyExample = `  nbuild copy --to root@pi.local ./result
  NIX_SSHOPTS="-p 2222" nbuild copy --to builder --compress xz /nix/store/...-system
  nbuild copy --from builder --include-outputs /nix/store/...-hello.drv
  nbuild copy --to 'file:///srv/cache?compression=zstd&secret-key=/etc/nix/key.sec' ./result`

type copyOptions struct {
	to, from       bool
	includeOutputs bool
	useSubstitutes bool
	gzip, verbose  bool
	noCheckSigs    bool
	compress       string
	delta          string // auto or off
	remoteNbuild   string
	level          int
	jobs           int
	quiet          bool

	// As nix-copy-closure (nixcopyclosure.go): Nix 2.8's output (its
	// "copying ..." lines, even for nothing, and no progress line),
	// ssh's stderr passed through, and its error wording.
	nixCompat bool
	// noLog drops the "copying ..." lines (nix-copy-closure --quiet);
	// sshVerbose passes -v to ssh.
	noLog, sshVerbose bool
}

func copyCommand() command {
	return command{
		name:    "copy",
		summary: "copy closures to or from ssh hosts and file:// caches (nix-copy-closure)",
		run: func(ctx context.Context, env *cmdEnv, args []string) error {
			fs := newFlagSet(env, "copy", copyUsage, copyExample)
			var o copyOptions
			fs.BoolVar(&o.to, "to", false, "copy to HOST (the default)")
			fs.BoolVar(&o.from, "from", false, "copy from HOST")
			fs.BoolVar(&o.includeOutputs, "include-outputs", false, "also copy the valid outputs of every .drv in the closure")
			fs.BoolVarP(&o.useSubstitutes, "use-substitutes", "s", false, "let the receiving side substitute missing paths first")
			fs.BoolVar(&o.gzip, "gzip", false, "compress the ssh connection (ssh -C)")
			fs.BoolVarP(&o.verbose, "verbose", "v", false, "print each path as it starts and a summary, and pass -v to ssh")
			fs.StringVar(&o.compress, "compress", "auto", "NAR compression to or from a host: auto (zstd if the remote has it; to a host, each chunk only when compressing it pays), none, zstd, xz")
			fs.IntVar(&o.level, "compress-level", 0, "compression level (0: zstd 3, xz 6)")
			fs.StringVar(&o.delta, "delta", "auto", "to a host: auto (send only the file contents the host cannot make from older versions of the paths it has, when it has any), off")
			fs.StringVar(&o.remoteNbuild, "remote-nbuild", "", "the nbuild on the host that assembles delta copies (default: this nbuild, sent to a host of this architecture and kept in its ~/.cache/nbuild; else nbuild on the host's PATH)")
			fs.IntVarP(&o.jobs, "jobs", "j", 0, "parallel compression / NAR transfers (0: number of CPUs)")
			fs.BoolVar(&o.noCheckSigs, "no-check-sigs", false, "--from file://: do not require trusted signatures")
			fs.BoolVarP(&o.quiet, "quiet", "Q", false, "no progress line")
			if err := parseFlags(fs, args); err != nil {
				return err
			}
			if o.to && o.from {
				return usagef("copy: --to and --from are exclusive")
			}
			if o.delta != "auto" && o.delta != "off" {
				return usagef("copy: --delta %s: want auto or off", o.delta)
			}
			if fs.NArg() < 1 {
				return usagef("copy: no host given (see 'nbuild copy --help')")
			}
			host, paths := fs.Arg(0), fs.Args()[1:]
			if looksLikePath(host) {
				// nix-copy-closure would try to ssh to it and fail.
				return usagef("copy: no host given: '%s' is a path, not [USER@]HOST (usage: nbuild copy [--to|--from] [USER@]HOST PATH...)", host)
			}
			if len(paths) == 0 {
				return usagef("copy: no paths given after the host '%s' (see 'nbuild copy --help')", host)
			}
			o.sshVerbose = o.verbose
			return runCopy(ctx, env, o, host, paths)
		},
	}
}

// looksLikePath reports whether a copy's first argument is a file path
// rather than a host: a host name has no slash (file:// URLs aside).
func looksLikePath(host string) bool {
	return strings.Contains(host, "/") && !strings.Contains(host, "://")
}

// runCopy copies the closures of args to or from host. When a signal
// stops it, it says how far the copy got and returns an exitError (130 or
// 143); as nix-copy-closure it returns errInterrupted instead.
func runCopy(ctx context.Context, env *cmdEnv, o copyOptions, host string, args []string) error {
	var roots []store.Path
	for _, a := range args {
		p, err := copy.RootArg(a, !o.from)
		if err != nil {
			return err
		}
		roots = append(roots, p)
	}
	socket := location.LocalDaemonSocket(location.Options{Getenv: env.getenv})
	local, err := daemon.Dial(ctx, socket, daemon.Options{SkipSetOptions: true})
	if err != nil {
		return fmt.Errorf("cannot connect to the local nix-daemon: %w", err)
	}
	defer local.Close()
	po := copy.PrinterOptions{
		Terminal: !(o.quiet || o.nixCompat) && isTerminal(env.stderr),
		Quiet:    o.noLog, Verbose: o.verbose, NixCompat: o.nixCompat,
	}
	po.From, po.To = copy.StoreNames(host, o.from)
	pr := copy.NewPrinter(env.stderr, po)
	defer pr.Clear()
	job := &copy.Job{
		Local: local, LocalSocket: socket, Remote: host, From: o.from, Roots: roots,
		IncludeOutputs: o.includeOutputs, UseSubstitutes: o.useSubstitutes, NoCheckSigs: o.noCheckSigs,
		Host: o.hostOptions(env, pr),
	}
	err = copyTo(ctx, env, o, job, pr)
	if err == nil || !copy.Interrupted(ctx, err) {
		return err
	}
	pr.Clear()
	if o.nixCompat {
		return errInterrupted
	}
	reportInterrupt(ctx, job, pr)
	return &exitError{code: signalExitCode(ctx)}
}

// errInterrupted is how nix-copy-closure reports a signal (2.8
// util.cc triggerInterrupt): "error: interrupted by the user", exit 1.
var errInterrupted = errors.New("interrupted by the user")

// signalExitCode is the exit status shells give a command a signal
// stopped: 128 + the signal's number (130 for SIGINT, 143 for SIGTERM).
// The signal is the cause signal.NotifyContext gave ctx.
func signalExitCode(ctx context.Context) int {
	if c := context.Cause(ctx); c != nil && c.Error() == syscall.SIGTERM.String()+" signal received" {
		return 128 + int(syscall.SIGTERM)
	}
	return 128 + int(syscall.SIGINT)
}

// reportInterrupt says how far an interrupted copy got: how many paths of
// the closure the destination now holds, asked afresh (to a host, one more
// short ssh session; a second signal, or 10 s, gives up on it), and that
// a rerun sends the rest.
func reportInterrupt(ctx context.Context, job *copy.Job, pr *copy.Printer) {
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	qctx, stop := signal.NotifyContext(qctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	pr.ReportInterrupt(qctx, job)
}

// copyTo runs a copy for runCopy.
func copyTo(ctx context.Context, env *cmdEnv, o copyOptions, job *copy.Job, pr *copy.Printer) error {
	if o.nixCompat && !o.from {
		if err := job.CheckRootsValid(ctx); err != nil {
			return err
		}
	}
	res, err := job.Run(ctx)
	if err != nil || !o.verbose || o.nixCompat || strings.HasPrefix(job.Remote, "file://") {
		return err
	}
	pr.Clear()
	res.WriteSummary(env.stderr, job.Remote, o.from)
	return nil
}

// hostOptions are the options of a copy to or from an ssh host.
func (o copyOptions) hostOptions(env *cmdEnv, pr *copy.Printer) copy.HostOptions {
	return copy.HostOptions{
		SSH:            o.sshOptions(env),
		Compress:       o.compress,
		Level:          o.level,
		Jobs:           o.jobs,
		UseSubstitutes: o.useSubstitutes,
		Delta:          copy.DeltaOptions{Off: o.delta == "off", Remote: o.remoteNbuild},
		Progress:       pr.Progress,
		Missing:        pr.Missing,
		Sending:        pr.Sending,
	}
}

// sshOptions are the ssh options of a copy to or from a host. As
// nix-copy-closure, ssh's stderr goes straight to ours, as Nix lets it.
func (o copyOptions) sshOptions(env *cmdEnv) ssh.Options {
	so := ssh.Options{Getenv: env.getenv, Compress: o.gzip, Verbose: o.sshVerbose}
	if o.nixCompat {
		so.Stderr = env.stderr
	}
	return so
}
