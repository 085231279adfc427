package copy

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/nix-community/go-nix/pkg/nixbase32"

	"github.com/nbuild/nbuild/nar"
	"github.com/nbuild/nbuild/nar/compress"
	"github.com/nbuild/nbuild/store"
	"github.com/nbuild/nbuild/store/ssh"
)

// fromScript is the command a FromHost session runs on the remote, in
// POSIX sh, with one round trip before the data flows:
//
//  1. It says which compressors the remote has, reads "LEN" and LEN bytes
//     of root paths, one a line, and prints the path infos of their
//     closure as `nix path-info --json -r` prints them (one JSON array per
//     xargs batch), then a line ".".
//  2. It reads "COMPRESSOR LEVEL LEN" and LEN bytes of paths, and writes
//     their NARs back to back, in that order, through the compressor (at
//     its default level when LEVEL is 0). The
//     client knows each NAR's path from the order and its end from the
//     NAR itself; nothing interactive follows, so the compressor's
//     buffering holds nothing back (the stream ends with the output).
const fromScript = `set -e
have() { command -v "$1" >/dev/null 2>&1; }
z=-; have zstd && z=zstd
x=-; have xz && x=xz
echo "nbuild-copy-from 1 $z $x"
read -r n
l=$(head -c "$n")
printf '%s\n' "$l" | xargs nix --extra-experimental-features nix-command path-info --json -r
echo
echo .
read -r c lvl n || exit 0
m=$(head -c "$n")
dump() { printf '%s\n' "$m" | while read -r p; do nix-store --dump "$p"; done; }
set -- -cq -T0; [ "$lvl" = 0 ] || set -- "$@" "-$lvl"
case $c in
  zstd) dump | zstd "$@" ;;
  xz) dump | xz "$@" ;;
  *) dump ;;
esac`

// ErrNoPathInfo is wrapped when the remote could not list the closure's
// path infos with `nix path-info --json` (no nix command there, or a Nix
// older than 2.4): a caller may fall back to the worker protocol.
var ErrNoPathInfo = errors.New("copy: the remote cannot list path infos")

// FromHost copies the closure of roots from host into dst (the local
// store) over one ssh session: the remote lists the closure's path infos
// in one reply, local lacks (Missing) decides what is sent, and the
// missing NARs come back to back, compressed by the remote's own zstd or
// xz when the remote has it (opts.Compress as for ToHost). Each NAR is
// added as it arrives, references first; dst verifies its hash, so an
// interrupted copy leaves only complete paths and a rerun fetches the
// rest. Signatures and content addresses come with the infos.
func FromHost(ctx context.Context, host string, roots []store.Path, local store.ValidPathQuerier, dst store.NarAdder, opts HostOptions) (*HostResult, error) {
	sc, done, err := dialScript(ctx, host, fromScript, opts.SSH)
	if err != nil {
		return nil, err
	}
	defer done()
	res, err := fromHost(ctx, sc, roots, local, dst, opts)
	if err != nil {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		return res, explain(host, sc, err, opts.SSH.Stderr != nil)
	}
	return res, nil
}

func fromHost(ctx context.Context, sc *ssh.Conn, roots []store.Path, local store.ValidPathQuerier, dst store.NarAdder, opts HostOptions) (*HostResult, error) {
	res := &HostResult{Protocol: "dump", Compression: "none"}
	var list strings.Builder
	for _, p := range roots {
		list.WriteString(p.String())
		list.WriteByte('\n')
	}
	if _, err := fmt.Fprintf(sc, "%d\n%s", list.Len(), list.String()); err != nil {
		return res, err
	}
	br := bufio.NewReaderSize(sc, 64<<10)
	greeting, err := readLine(br)
	if err != nil {
		return res, fmt.Errorf("%w: %w", ErrNoAnswer, err)
	}
	f := strings.Fields(greeting)
	if len(f) != 4 || f[0] != "nbuild-copy-from" || f[1] != "1" {
		return res, fmt.Errorf("unexpected answer from the remote shell: %q", greeting)
	}
	hasZstd, hasXz := f[2] == "zstd", f[3] == "xz"
	var js strings.Builder
	for {
		line, err := readLine(br)
		if err != nil {
			return res, fmt.Errorf("%w: %w", ErrNoPathInfo, err)
		}
		if line == "." {
			break
		}
		js.WriteString(line)
	}
	closure, err := parsePathInfosJSON(js.String())
	if err != nil {
		return res, err
	}
	missing, err := Missing(ctx, local, closure, opts.UseSubstitutes)
	if err != nil {
		return res, err
	}
	if opts.Missing != nil {
		opts.Missing(closure, missing)
	}
	if len(missing) == 0 {
		if err := sc.CloseWrite(); err != nil {
			return res, err
		}
		return res, sc.Wait(ctx)
	}
	algo, err := chooseCompression(opts.Compress, "daemon", hasZstd, hasXz, isLocal(sc.Host()))
	if err != nil {
		return res, err
	}
	res.Compression = algo
	list.Reset()
	for _, info := range missing {
		list.WriteString(info.Path.String())
		list.WriteByte('\n')
	}
	level := max(opts.Level, 0)
	if algo == "none" {
		level = 0
	}
	if _, err := fmt.Fprintf(sc, "%s %d %d\n%s", algo, level, list.Len(), list.String()); err != nil {
		return res, err
	}
	if err := sc.CloseWrite(); err != nil {
		return res, err
	}
	zr, err := compress.NewReader(br, algo)
	if err != nil {
		return res, err
	}
	defer zr.Close()
	t := newTracker(missing, opts.Progress, opts.Sending)
	err = stream(ctx, dumpStream{bufio.NewReaderSize(zr, 64<<10)}, dst, missing, t)
	if err != nil {
		return res, err
	}
	res.Sent = missing
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return res, sc.Wait(wctx)
}

// dumpStream reads NARs back to back from r, in the order asked for.
type dumpStream struct{ r *bufio.Reader }

func (d dumpStream) NarsFromPaths(ctx context.Context, paths []store.Path, each func(i int, r io.Reader) error) error {
	for i, p := range paths {
		if err := ctx.Err(); err != nil {
			return err
		}
		err, cerr := nar.Hand(d.r, func(r io.Reader) error { return each(i, r) })
		if err != nil {
			return err
		}
		if cerr != nil {
			return fmt.Errorf("reading the NAR of %s: %w", p, cerr)
		}
	}
	return nil
}

// pathInfoJSON is one object of `nix path-info --json` (Nix 2.8).
type pathInfoJSON struct {
	Path             string   `json:"path"`
	NarHash          string   `json:"narHash"`
	NarSize          uint64   `json:"narSize"`
	References       []string `json:"references"`
	Deriver          string   `json:"deriver"`
	RegistrationTime int64    `json:"registrationTime"`
	Signatures       []string `json:"signatures"`
	CA               string   `json:"ca"`
}

// parsePathInfosJSON reads the arrays `nix path-info --json` printed (one
// per xargs batch) and returns the infos references first, ties broken by
// path, as Closure does.
func parsePathInfosJSON(s string) ([]*store.PathInfo, error) {
	dec := json.NewDecoder(strings.NewReader(s))
	byPath := map[store.Path]*store.PathInfo{}
	for {
		var batch []pathInfoJSON
		if err := dec.Decode(&batch); err == io.EOF {
			break
		} else if err != nil {
			return nil, fmt.Errorf("path infos from the remote: %w", err)
		}
		for _, j := range batch {
			info, err := j.pathInfo()
			if err != nil {
				return nil, fmt.Errorf("path info of %q from the remote: %w", j.Path, err)
			}
			byPath[info.Path] = info
		}
	}
	if len(byPath) == 0 {
		return nil, errors.New("the remote listed no path infos")
	}
	return referencesFirst(byPath)
}

func (j pathInfoJSON) pathInfo() (*store.PathInfo, error) {
	p, err := store.ParsePath(j.Path)
	if err != nil {
		return nil, err
	}
	info := &store.PathInfo{Path: p, NarSize: j.NarSize, RegistrationTime: j.RegistrationTime, Sigs: j.Signatures, CA: j.CA}
	if info.NarHash, err = parseNarHash(j.NarHash); err != nil {
		return nil, err
	}
	if j.Deriver != "" {
		if info.Deriver, err = store.ParsePath(j.Deriver); err != nil {
			return nil, fmt.Errorf("deriver: %w", err)
		}
	}
	for _, r := range j.References {
		rp, err := store.ParsePath(r)
		if err != nil {
			return nil, fmt.Errorf("reference: %w", err)
		}
		info.References = append(info.References, rp)
	}
	slices.SortFunc(info.References, store.Path.Compare)
	return info, nil
}

// parseNarHash reads a SHA-256 NAR hash as Nix prints it: SRI
// ("sha256-<base64>", 2.8's JSON), or "sha256:" and nix32 or hex.
func parseNarHash(s string) (h [32]byte, err error) {
	var b []byte
	switch {
	case strings.HasPrefix(s, "sha256-"):
		b, err = base64.StdEncoding.DecodeString(s[len("sha256-"):])
	case strings.HasPrefix(s, "sha256:") && len(s) == len("sha256:")+52:
		b, err = nixbase32.DecodeString(s[len("sha256:"):])
	case strings.HasPrefix(s, "sha256:") && len(s) == len("sha256:")+64:
		b, err = hex.DecodeString(s[len("sha256:"):])
	default:
		return h, fmt.Errorf("NAR hash %q is not a SHA-256 hash", s)
	}
	if err != nil || len(b) != len(h) {
		return h, fmt.Errorf("NAR hash %q: bad encoding", s)
	}
	copy(h[:], b)
	return h, nil
}

// referencesFirst orders infos so that every path comes after the paths it
// references (within the set), ties broken by path.
func referencesFirst(infos map[store.Path]*store.PathInfo) ([]*store.PathInfo, error) {
	paths := make([]store.Path, 0, len(infos))
	for p := range infos {
		paths = append(paths, p)
	}
	slices.SortFunc(paths, store.Path.Compare)
	out := make([]*store.PathInfo, 0, len(infos))
	state := map[store.Path]int8{} // 1 visiting, 2 done
	var visit func(p store.Path) error
	visit = func(p store.Path) error {
		switch state[p] {
		case 1:
			return fmt.Errorf("reference cycle through %s", p)
		case 2:
			return nil
		}
		state[p] = 1
		for _, r := range infos[p].References {
			if _, ok := infos[r]; ok && r != p {
				if err := visit(r); err != nil {
					return err
				}
			}
		}
		state[p] = 2
		out = append(out, infos[p])
		return nil
	}
	for _, p := range paths {
		if err := visit(p); err != nil {
			return nil, err
		}
	}
	return out, nil
}
