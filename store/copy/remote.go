package copy

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os/exec"
	"strings"
	"time"

	"github.com/nbuild/nbuild/nar/compress"
	"github.com/nbuild/nbuild/nar/wire"
	"github.com/nbuild/nbuild/store"
	"github.com/nbuild/nbuild/store/daemon"
	"github.com/nbuild/nbuild/store/serve"
	"github.com/nbuild/nbuild/store/ssh"
)

// remoteScript is the command a ToHost session runs on the remote, in
// POSIX sh. One ssh session does everything, with two round trips before
// the data flows:
//
//  1. It says which protocol (nix-daemon --stdio, else nix-store --serve
//     --write) and which decompressors (zstd, xz) the remote has, and its
//     machine (uname -m), then reads "SUBSTITUTE LEN HINTS" and LEN bytes
//     of store paths, one a line, and prints those that are not valid
//     there, then ".". With SUBSTITUTE 1 it first tries to substitute each
//     invalid path (nix-copy-closure -s). With HINTS 1 it then prints the
//     entries of the store directory whose names contain the name, without
//     version, of an invalid path (candidate predecessors for a delta
//     copy, delta.go), then ".".
//  2. It reads commands, one a line, until one of them takes over the
//     session:
//     - "PROTO DECOMPRESSOR RAW" runs PROTO (daemon or serve) with its
//     input being RAW bytes as they are and then the rest through the
//     decompressor. The raw prefix carries the interactive part of the
//     protocol (the daemon handshake); everything after it is one upload
//     that the client ends by closing its side. The split is needed
//     because `zstd -dc` and `xz -dc` read their input in full blocks and
//     would hold back an interactive exchange.
//     - "bin SHA256" answers "ok FILE" if the per-user cache holds an
//     nbuild binary of that SHA-256 (checked now), else "no".
//     - "put SHA256 LEN DECOMPRESSOR" reads LEN bytes, decompressed, into
//     the cache (directories 0700), keeps them only if their SHA-256 is
//     right, and answers as bin does. Binaries no copy used for 30 days
//     (bin touches the one it finds) are removed then.
//     - "try FILE" runs `FILE __copy-receive --hello` and answers its
//     first line, or "no".
//     - "run FILE" runs `FILE __copy-receive` on the session (delta.go).
//
// `read` in sh reads a pipe one byte at a time and `head -c` never reads
// past its count, so nothing is consumed early. Only tools every NixOS and
// Debian host has are used (head, xargs, sed, grep, sha256sum; zstd and xz
// when present).
const remoteScript = `set -e
have() { command -v "$1" >/dev/null 2>&1; }
p=serve; have nix-daemon && p=daemon
z=-; have zstd && z=zstd
x=-; have xz && x=xz
echo "nbuild-copy 2 $p $z $x $(uname -m 2>/dev/null || echo unknown)"
read -r s n h
l=$(head -c "$n")
if [ "$s" = 1 ] && [ -n "$l" ]; then
  for q in $(printf '%s\n' "$l" | xargs nix-store --check-validity --print-invalid); do
    nix-store --realise "$q" >/dev/null 2>&1 || true
  done
fi
i=
[ -z "$l" ] || i=$(printf '%s\n' "$l" | xargs nix-store --check-validity --print-invalid)
[ -z "$i" ] || printf '%s\n' "$i"
echo .
if [ "$h" = 1 ]; then
  if [ -n "$i" ]; then
    d=$(printf '%s\n' "$i" | head -n 1); d=${d%/*}
    k=$(printf '%s\n' "$i" | sed -e 's|^.*/[^/-]*-||' -e 's|-[^a-zA-Z].*||' -e 's|^.|-&|' | grep -v '^-\{0,1\}$' || true)
    [ -z "$k" ] || ls -f "$d" 2>/dev/null | grep -F -e "$k" | grep -v '\.drv$' || true
  fi
  echo .
fi
c=${XDG_CACHE_HOME:-$HOME/.cache}/nbuild/bin
ok() { [ -f "$1" ] && have sha256sum && [ "$(sha256sum <"$1")" = "$2  -" ]; }
while read -r cmd a b e; do
  case $cmd in
  daemon|serve)
    case $cmd in
      daemon) set -- nix-daemon --stdio ;;
      serve) set -- nix-store --serve --write ;;
    esac
    case $a in
      zstd) { head -c "$b"; exec zstd -dcq; } | "$@" ;;
      xz) { head -c "$b"; exec xz -dcq; } | "$@" ;;
      *) exec "$@" ;;
    esac
    exit ;;
  bin)
    if ok "$c/$a/nbuild" "$a"; then touch "$c/$a"; echo "ok $c/$a/nbuild"; else echo no; fi ;;
  put)
    t=$c/$a/nbuild.$$
    head -c "$b" | {
      if (umask 077; mkdir -p "$c/$a") 2>/dev/null; then
        if [ "$e" = zstd ]; then zstd -dcq >"$t" 2>/dev/null || cat >/dev/null
        else cat >"$t" 2>/dev/null || cat >/dev/null; fi
      else cat >/dev/null; fi
    }
    if ok "$t" "$a" && chmod 700 "$t" && mv -f "$t" "$c/$a/nbuild"; then
      find "$c" -mindepth 1 -maxdepth 1 -type d -mtime +30 ! -name "$a" -exec rm -rf {} + 2>/dev/null || true
      echo "ok $c/$a/nbuild"
    else rm -f "$t"; echo no; fi ;;
  try)
    v=$("$a" __copy-receive --hello </dev/null 2>/dev/null | head -n 1) || v=
    echo "${v:-no}" ;;
  run) exec "$a" __copy-receive ;;
  *) echo "nbuild-copy: unknown command $cmd" >&2; exit 1 ;;
  esac
done`

// HostOptions tune ToHost. The zero value compresses with zstd when the
// remote can decompress it and reads NARs from the local file system.
type HostOptions struct {
	// SSH configures the transport (NIX_SSHOPTS through Getenv, -C, -v).
	SSH ssh.Options
	// Compress is "auto" (or ""), "none", "zstd" or "xz". Auto means zstd
	// when the remote has it, else none, deciding per chunk whether
	// compressing pays (compress.Options.Adaptive): chunks that barely
	// shrink, and chunks the link would take faster than the compressor
	// makes them, go as stored zstd frames. An explicit algorithm the
	// remote cannot decompress is an error.
	Compress string
	// Level is the compression level; 0 means the algorithm's default
	// (zstd 3, xz 6).
	Level int
	// Jobs is the compressor's parallelism; 0 means GOMAXPROCS.
	Jobs int
	// UseSubstitutes lets the remote substitute missing paths first.
	UseSubstitutes bool
	// NoDaemon uses nix-store --serve --write even when the remote has
	// nix-daemon (uncompressed, one acknowledgement window).
	NoDaemon bool
	// Source reads NARs; nil dumps them from the local file system.
	Source store.NarReader
	// Progress is called as in Options.
	Progress func(Progress)
	// Missing, when set, is called once what the destination lacks is
	// known and before anything is sent: closure is every path of the
	// copy, missing those to send (possibly none), both references first.
	Missing func(closure, missing []*store.PathInfo)
	// Sending, when set, is called as each missing path's NAR starts to
	// go, in order (nix-copy-closure prints "copying path ..." then).
	Sending func(info *store.PathInfo)
	// Delta tunes delta copies: when the remote holds likely predecessors
	// of the paths to send, only file contents it cannot make from its
	// own files are sent (delta.go). Needs Source nil and the daemon
	// protocol; without a usable nbuild on the remote the copy goes on the
	// plain way.
	Delta DeltaOptions
}

// HostResult says what ToHost did.
type HostResult struct {
	// Sent are the paths the remote lacked, now valid there.
	Sent []*store.PathInfo
	// Protocol is "daemon" or "serve"; Compression what the NARs went as.
	Protocol, Compression string
	// StoredChunks of Chunks went as stored zstd frames (--compress auto:
	// compressing them did not pay).
	StoredChunks, Chunks int
	// Delta says what the delta copy did, or why there was none; nil when
	// none was tried (nothing to send, or HostOptions.Delta.Off).
	Delta *DeltaStats
}

// ErrNotTrusted is wrapped when the remote daemon refused paths for lack
// of a trusted signature, which means the ssh user is not in its
// trusted-users.
var ErrNotTrusted = errors.New("copy: remote refused paths without a trusted signature")

// ToHost copies the paths of closure (references first, e.g. from Closure)
// that host lacks, over one ssh session. The remote's own Nix registers
// each path after verifying its NAR hash, so an interrupted copy leaves
// only complete paths valid and a rerun sends the rest.
func ToHost(ctx context.Context, host string, closure []*store.PathInfo, opts HostOptions) (*HostResult, error) {
	sc, done, err := dialScript(ctx, host, remoteScript, opts.SSH)
	if err != nil {
		return nil, err
	}
	defer done()
	res, err := toHost(ctx, sc, closure, opts)
	var df *deltaFailure
	if errors.As(err, &df) && ctx.Err() == nil {
		// The paths the remote nbuild acknowledged are valid there; the
		// plain way sends the rest (it asks again what is missing).
		o := opts
		o.Delta.Off = true
		o.Missing = nil
		st := res.Delta
		st.Why = explain(host, sc, df.err, opts.SSH.Stderr != nil).Error()
		more, err := ToHost(ctx, host, closure, o)
		if more != nil {
			more.Sent = append(res.Sent, more.Sent...)
			more.Delta = st
		}
		return more, err
	}
	if err != nil {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		return res, explain(host, sc, err, opts.SSH.Stderr != nil)
	}
	return res, nil
}

// dialScript runs a POSIX sh script on host, ending the session at once
// when ctx is done; done ends it cleanly.
func dialScript(ctx context.Context, host, script string, opts ssh.Options) (sc *ssh.Conn, done func(), err error) {
	sc, err = ssh.Dial(ctx, host, []string{"sh", "-c", script}, opts)
	if err != nil {
		return nil, nil, err
	}
	stop := context.AfterFunc(ctx, sc.Kill)
	return sc, func() { stop(); sc.Close() }, nil
}

// HostLacks returns those of closure (order kept) that host does not
// hold, with one ssh session and one round trip: what ToHost would send.
// After an interrupted ToHost it tells how far the copy got.
func HostLacks(ctx context.Context, host string, closure []*store.PathInfo, opts HostOptions) ([]*store.PathInfo, error) {
	sc, done, err := dialScript(ctx, host, remoteScript, opts.SSH)
	if err != nil {
		return nil, err
	}
	defer done()
	q, err := queryMissing(sc, closure, false, false)
	if err == nil {
		err = sc.CloseWrite()
	}
	if err == nil {
		err = sc.Wait(ctx)
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, explain(host, sc, err, opts.SSH.Stderr != nil)
	}
	return q.missing, nil
}

// hostState is what the first round trip of remoteScript tells.
type hostState struct {
	br             *bufio.Reader
	proto          string
	hasZstd, hasXz bool
	machine        string // uname -m
	missing        []*store.PathInfo
	// hints are the store entries (base names) that may be predecessors
	// of missing paths, when asked for.
	hints []string
}

// queryMissing runs remoteScript's first round trip: the query goes out
// before the greeting is read. With hints it also asks for candidate
// predecessors of the missing paths.
func queryMissing(sc *ssh.Conn, closure []*store.PathInfo, substitute, hints bool) (*hostState, error) {
	var list strings.Builder
	for _, info := range closure {
		list.WriteString(info.Path.String())
		list.WriteByte('\n')
	}
	subst := 0
	if substitute {
		subst = 1
	}
	hint := 0
	if hints {
		hint = 1
	}
	if _, err := fmt.Fprintf(sc, "%d %d %d\n%s", subst, list.Len(), hint, list.String()); err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(sc, 64<<10)
	greeting, err := readLine(br)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoAnswer, err)
	}
	f := strings.Fields(greeting)
	if len(f) != 6 || f[0] != "nbuild-copy" || f[1] != "2" {
		return nil, fmt.Errorf("unexpected answer from the remote shell: %q", greeting)
	}
	q := &hostState{br: br, proto: f[2], hasZstd: f[3] == "zstd", hasXz: f[4] == "xz", machine: f[5]}
	invalid := map[store.Path]bool{}
	for {
		line, err := readLine(br)
		if err != nil {
			return nil, fmt.Errorf("reading the remote's invalid paths: %w", err)
		}
		if line == "." {
			break
		}
		p, err := store.ParsePath(line)
		if err != nil {
			return nil, fmt.Errorf("remote listed %q as invalid: %w", line, err)
		}
		invalid[p] = true
	}
	for hints {
		line, err := readLine(br)
		if err != nil {
			return nil, fmt.Errorf("reading the remote's store entries: %w", err)
		}
		if line == "." {
			break
		}
		q.hints = append(q.hints, line)
	}
	for _, info := range closure {
		if invalid[info.Path] {
			// A copy is not the source's ultimate trust (2.8 copyStorePath).
			c := *info
			c.Ultimate = false
			q.missing = append(q.missing, &c)
		}
	}
	return q, nil
}

// ErrNoAnswer is wrapped when the remote command never answered: ssh did
// not connect, or the remote could not run the command. SessionError
// makes it a ConnectError when ssh itself failed.
var ErrNoAnswer = errors.New("no answer from the remote shell")

func toHost(ctx context.Context, sc *ssh.Conn, closure []*store.PathInfo, opts HostOptions) (*HostResult, error) {
	// Round trip 1: what the remote has and lacks.
	q, err := queryMissing(sc, closure, opts.UseSubstitutes, deltaWanted(opts))
	if err != nil {
		return nil, err
	}
	br, proto, hasZstd, hasXz, missing := q.br, q.proto, q.hasZstd, q.hasXz, q.missing
	res := &HostResult{Protocol: proto, Compression: "none"}
	if opts.Missing != nil {
		opts.Missing(closure, missing)
	}
	if len(missing) == 0 {
		if err := sc.CloseWrite(); err != nil {
			return res, err
		}
		return res, sc.Wait(ctx)
	}
	if opts.NoDaemon {
		proto = "serve"
	}
	res.Protocol = proto
	if deltaWanted(opts) {
		if done, err := sendDelta(ctx, sc, q, missing, opts, res); done || err != nil {
			return res, err
		}
	}
	algo, err := chooseCompression(opts.Compress, proto, hasZstd, hasXz, isLocal(sc.Host()))
	if err != nil {
		return res, err
	}
	res.Compression = algo
	t := newTracker(missing, opts.Progress, opts.Sending)
	writeNar := func(info *store.PathInfo, w io.Writer) error {
		t.pathStart(info)
		cw := &countWriter{w: w, t: t}
		src := opts.Source
		if src == nil {
			src = FileSystem{}
		}
		err := src.NarFromPath(ctx, info.Path, cw)
		if err == nil {
			t.pathDone()
		}
		return err
	}
	switch proto {
	case "daemon":
		err = sendDaemon(ctx, sc, br, algo, missing, writeNar, opts, res)
		if errors.Is(err, errDone) {
			res.Sent = missing
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			sc.Wait(wctx)
			return res, nil
		}
	case "serve":
		err = sendServe(ctx, sc, br, missing, writeNar)
	default:
		err = fmt.Errorf("remote offered unknown protocol %q", proto)
	}
	if err != nil {
		return res, err
	}
	res.Sent = missing
	return res, sc.Wait(ctx)
}

func readLine(br *bufio.Reader) (string, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return "", err
	}
	return strings.TrimSuffix(line, "\n"), nil
}

// isLocal reports whether an ssh destination ([USER@]HOST) names this
// machine by a loopback address: "localhost", 127.0.0.0/8 or ::1. There
// the link is memory, and the remote's decompressor and import share this
// machine's CPUs with the compressor, so compressing only slows a copy
// (bench/NOTES-copy.md: 2.8 s compressed, 2.1 s not). A name that ssh's
// configuration maps to a loopback address is not recognised.
func isLocal(host string) bool {
	if i := strings.LastIndexByte(host, '@'); i >= 0 {
		host = host[i+1:]
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// chooseCompression picks what the upload is compressed with: want
// (HostOptions.Compress) as far as the remote can decompress it; auto is
// zstd, or none when the remote has no zstd or is this machine (local).
func chooseCompression(want, proto string, hasZstd, hasXz, local bool) (string, error) {
	if proto == "serve" {
		if want == "zstd" || want == "xz" {
			return "", fmt.Errorf("--compress %s needs nix-daemon on the remote; use --compress none", want)
		}
		return "none", nil
	}
	switch want {
	case "", "auto":
		if hasZstd && !local {
			return "zstd", nil
		}
		return "none", nil
	case "none":
		return "none", nil
	case "zstd":
		if !hasZstd {
			return "", errors.New("the remote has no zstd to decompress with; use --compress xz or none")
		}
		return "zstd", nil
	case "xz":
		if !hasXz {
			return "", errors.New("the remote has no xz to decompress with; use --compress zstd or none")
		}
		return "xz", nil
	}
	return "", fmt.Errorf("unknown compression %q (want auto, none, zstd or xz)", want)
}

// sendDaemon runs the daemon protocol: the handshake raw, then one
// AddMultipleToStore whose bytes go through the compressor. It counts the
// stored chunks into res.
func sendDaemon(ctx context.Context, sc *ssh.Conn, br *bufio.Reader, algo string, missing []*store.PathInfo,
	writeNar daemon.NarWriterFunc, opts HostOptions, res *HostResult) error {
	raw := daemon.GreetingLen(daemon.DefaultVersion)
	dec := algo
	if algo == "none" {
		dec = "-"
	}
	if _, err := fmt.Fprintf(sc, "daemon %s %d\n", dec, raw); err != nil {
		return err
	}
	tr := &splitConn{sc: sc, br: br, raw: raw, algo: algo, padOp: padOp(missing[0].Path)}
	if algo != "none" {
		adaptive := algo == "zstd" && (opts.Compress == "" || opts.Compress == "auto")
		cw, err := compress.NewWriter(sc, algo, compress.Options{Level: opts.Level, Concurrency: opts.Jobs, Context: ctx, Adaptive: adaptive})
		if err != nil {
			return err
		}
		tr.cw = cw
	}
	conn, err := daemon.NewConn(ctx, tr, daemon.Options{Version: daemon.DefaultVersion, SkipSetOptions: true})
	if err != nil {
		return err
	}
	if err := conn.AddMultipleToStore(ctx, missing, writeNar,
		daemon.AddFlags{NoCheckSigs: true, KnownMissing: true, EndStream: true}); err != nil {
		return err
	}
	if tr.cw != nil {
		res.StoredChunks, res.Chunks = tr.cw.Stored()
	}
	// Every path is registered. Ending the input ends the daemon; with a
	// decompressor in between, it may still be answering the padding
	// request when its input hangs up, which 2.8 reports as an interrupt,
	// so its exit status no longer matters.
	if err := sc.CloseWrite(); err != nil {
		return err
	}
	if algo != "none" {
		return errDone
	}
	return nil
}

// errDone tells toHost that the copy succeeded and the session's exit
// status is not to be checked.
var errDone = errors.New("copy: done")

// sendServe uploads through nix-store --serve --write, uncompressed.
func sendServe(ctx context.Context, sc *ssh.Conn, br *bufio.Reader, missing []*store.PathInfo, writeNar daemon.NarWriterFunc) error {
	if _, err := fmt.Fprintf(sc, "serve - 0\n"); err != nil {
		return err
	}
	c, err := serve.NewClient(ctx, &splitConn{sc: sc, br: br}, serve.Options{Remote: "ssh://" + sc.Host()})
	if err != nil {
		return err
	}
	srcs := make([]serve.NarSource, len(missing))
	for i, info := range missing {
		srcs[i] = serve.NarSource{Info: info, WriteNAR: func(w io.Writer) error { return writeNar(info, w) }}
	}
	if err := c.AddToStoreNars(ctx, srcs, serve.AddOptions{}); err != nil {
		return err
	}
	return sc.CloseWrite()
}

// splitConn is the session as the protocol clients see it: reads come
// through the buffered reader that read the script's greeting; the first
// raw bytes written go as they are, the rest through the compressor cw (if
// any). EndStream ends the compressed stream.
type splitConn struct {
	sc    *ssh.Conn
	br    *bufio.Reader
	raw   int
	algo  string
	cw    *compress.Writer
	padOp []byte
}

func (s *splitConn) Read(p []byte) (int, error) { return s.br.Read(p) }

func (s *splitConn) Write(p []byte) (int, error) {
	n := 0
	if s.raw > 0 || s.cw == nil {
		k := len(p)
		if s.cw != nil {
			k = min(k, s.raw)
		}
		m, err := s.sc.Write(p[:k])
		n += m
		s.raw -= m
		if err != nil {
			return n, err
		}
		p = p[k:]
	}
	if len(p) > 0 {
		m, err := s.cw.Write(p)
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// rawPadding follows a compressed upload so that the remote decompressor,
// which reads its input in whole blocks (zstd 1.5 reads ahead 128 KiB jobs,
// xz 8 KiB), reaches the last real byte without seeing the end of its
// input.
const rawPadding = 512 << 10

// opPadding is how many decompressed bytes of a harmless request follow
// the upload inside the compressed stream: the decompressors write through
// a buffer (glibc's stdio buffer of 4 KiB on a pipe for zstd, 8 KiB for
// xz) that only a full buffer or the end of input flushes, so the upload's
// tail reaches the daemon only when more output follows it.
const opPadding = 64 << 10

// EndStream finishes the compressed stream: a harmless request (see
// padOp) pushes the upload's tail out of the decompressor's output buffer,
// and bytes the decompressor reads and discards (a zstd skippable frame,
// or xz stream padding: zero bytes, a multiple of four) push the stream's
// end through its input buffer.
func (s *splitConn) EndStream() error {
	if s.cw == nil {
		return nil
	}
	if _, err := s.cw.Write(s.padOp); err != nil {
		return err
	}
	if err := s.cw.Close(); err != nil {
		return err
	}
	pad := make([]byte, rawPadding)
	if s.algo == "zstd" {
		// Skippable frame: magic 0x184D2A50, u32 LE length, content
		// (RFC 8878 section 3.1.2).
		binary.LittleEndian.PutUint32(pad[0:], 0x184D2A50)
		binary.LittleEndian.PutUint32(pad[4:], rawPadding-8)
	}
	_, err := s.sc.Write(pad)
	return err
}

// padOp returns a QueryValidPaths request (op 31: string list, substitute
// flag) of at least opPadding bytes asking about p again and again: the
// daemon answers it after the upload, and nobody reads the answer.
func padOp(p store.Path) []byte {
	b := wire.AppendUint64(nil, uint64(daemon.OpQueryValidPaths))
	entry := len(wire.AppendString(nil, p.String()))
	n := opPadding/entry + 1
	b = wire.AppendUint64(b, uint64(n))
	for range n {
		b = wire.AppendString(b, p.String())
	}
	return wire.AppendBool(b, false)
}

func (s *splitConn) Close() error { return s.sc.Close() }

// ConnectError is a session that never started because ssh itself failed
// (exit status 255: connection refused, unknown host, host key mismatch,
// authentication) before the remote command said anything. SSH is the
// tail of ssh's own stderr.
type ConnectError struct {
	Host, SSH string
}

func (e *ConnectError) Error() string {
	if e.SSH == "" {
		return fmt.Sprintf("cannot connect to '%s'", e.Host)
	}
	return fmt.Sprintf("cannot connect to '%s'; ssh said: %s", e.Host, e.SSH)
}

// SessionError explains err, the failure of a session sc to host that the
// caller started with ssh options opts, as ToHost explains its own: ssh's
// failures as ssh's (a ConnectError if the remote command never answered:
// wrap ErrNoAnswer then), the remote's stderr as the remote's.
func SessionError(host string, sc *ssh.Conn, opts ssh.Options, err error) error {
	return explain(host, sc, err, opts.Stderr != nil)
}

// explain turns a failure into what the user must know, attributed to
// whoever said it: ssh's own failures (it exits 255) to ssh, the remote
// command's stderr to the remote, and trust problems named as such. When
// the stderr went to the user as it came (live), it is not repeated.
func explain(host string, sc *ssh.Conn, err error, live bool) error {
	const refused = "lacks a valid signature"
	var msg string
	var de *daemon.Error
	if errors.As(err, &de) && strings.Contains(de.Message, refused) {
		msg = de.Message
	}
	var tail string
	if sc != nil {
		tail = strings.TrimSpace(sc.StderrTail())
	}
	if msg == "" {
		// nix-store --serve dies of the daemon's refusal, which only its
		// stderr tells: "error: cannot add path '...' because it lacks ...".
		for _, line := range strings.Split(tail, "\n") {
			if strings.Contains(line, refused) {
				msg = strings.TrimPrefix(strings.TrimSpace(line), "error: ")
			}
		}
	}
	if msg != "" {
		return fmt.Errorf("%w: %s: %s\n(the ssh user is not in trusted-users on %s, and the paths carry no signature it trusts: "+
			"add the user to trusted-users there, or sign the paths with a key in its trusted-public-keys)",
			ErrNotTrusted, host, msg, host)
	}
	if sc != nil && sshFailed(sc) {
		if errors.Is(err, ErrNoAnswer) {
			return &ConnectError{Host: host, SSH: tail}
		}
		if tail != "" && !live {
			return fmt.Errorf("%s: %w\nssh said: %s", host, err, tail)
		}
	}
	if tail != "" && !live && !strings.Contains(err.Error(), tail) {
		return fmt.Errorf("%s: %w\nremote said: %s", host, err, tail)
	}
	return fmt.Errorf("%s: %w", host, err)
}

// sshFailed reports whether the ssh client itself failed: it exits 255 for
// its own errors, and with the remote command's status otherwise. It waits
// briefly for ssh to exit (the caller has seen the session end).
func sshFailed(sc *ssh.Conn) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var ee *exec.ExitError
	return errors.As(sc.Wait(ctx), &ee) && ee.ExitCode() == 255
}
