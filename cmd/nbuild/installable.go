package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/nbuild/nbuild/store"
	"github.com/nbuild/nbuild/store/location"
)

// storeRoot is where a command reads store files: "" for the real
// /nix/store, or the root directory of a chroot store (whose files live
// under ROOT/nix/store), as given by --store DIR.
type storeRoot string

// file returns the file system location of a store path.
func (r storeRoot) file(p store.Path) string {
	if r == "" {
		return p.String()
	}
	return filepath.Join(string(r), p.String())
}

// nixStoreArg is the --store argument for Nix commands, "" for the default.
func (r storeRoot) nixStoreArg() []string {
	if r == "" {
		return nil
	}
	return []string{"--store", string(r)}
}

// parseStoreFlag parses --store: the machine's daemon by default
// (NIX_REMOTE), or a chroot store directory whose files are read. root is
// the chroot store's root, "" for the machine's store.
func parseStoreFlag(env *cmdEnv, s string) (loc location.Location, root storeRoot, err error) {
	loc, err = location.Parse(s, location.Options{Getenv: env.getenv})
	if err != nil {
		return loc, "", err
	}
	switch loc.Kind {
	case location.Daemon, location.Chroot:
		return loc, storeRoot(loc.Root), nil
	}
	return loc, "", usagef("--store %s: a %s store cannot be planned from here; give the local store (daemon, auto) or a chroot store directory", s, loc.Kind)
}

// resolveInstallables turns command-line installables into .drv paths:
//   - a .drv store path (or a file inside a chroot store given as a path
//     under the root) is taken as is;
//   - an output path is mapped to its deriver (nix-store -q --deriver);
//   - FILE.nix with attrs (-A) is instantiated by nix-instantiate;
//   - FLAKEREF#ATTR is asked for its drvPath by nix eval.
//
// Evaluation of the Nix language stays with Nix.
func resolveInstallables(ctx context.Context, root storeRoot, args, attrs []string) ([]store.Path, error) {
	var out []store.Path
	for _, a := range args {
		switch {
		case strings.HasSuffix(a, ".nix") || (isDir(a) && !strings.HasPrefix(a, store.StoreDir)):
			ps, err := instantiate(ctx, root, a, attrs)
			if err != nil {
				return nil, err
			}
			out = append(out, ps...)
		case strings.Contains(a, "#"):
			p, err := flakeDrvPath(ctx, root, a)
			if err != nil {
				return nil, err
			}
			out = append(out, p)
		default:
			p, err := storePathArg(ctx, root, a)
			if err != nil {
				return nil, err
			}
			out = append(out, p)
		}
	}
	return out, nil
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// storePathArg accepts a store path (following a symlink such as ./result
// into the store), or a path inside a chroot store root, and returns the
// .drv to inspect.
func storePathArg(ctx context.Context, root storeRoot, a string) (store.Path, error) {
	s := a
	if root != "" {
		abs, err := filepath.Abs(a)
		if err == nil {
			if rel, ok := strings.CutPrefix(abs, string(root)); ok {
				s = rel
			}
		}
	} else if !strings.HasPrefix(a, store.StoreDir+"/") {
		if t, err := filepath.EvalSymlinks(a); err == nil {
			s = t
		}
	}
	p, _, err := store.SplitPath(s)
	if err != nil {
		return store.Path{}, fmt.Errorf("path '%s' is not in the Nix store", a)
	}
	if p.IsDerivation() {
		if _, err := os.Stat(root.file(p)); err != nil {
			return store.Path{}, fmt.Errorf("derivation '%s' does not exist in the store", p)
		}
		return p, nil
	}
	out, err := runNix(ctx, "nix-store", append(root.nixStoreArg(), "-q", "--deriver", p.String())...)
	if err != nil {
		return store.Path{}, err
	}
	d := strings.TrimSpace(out)
	if d == "" || d == "unknown-deriver" {
		return store.Path{}, fmt.Errorf("path '%s' has no known deriver; give its .drv instead", p)
	}
	return store.ParsePath(d)
}

func instantiate(ctx context.Context, root storeRoot, file string, attrs []string) ([]store.Path, error) {
	args := append(root.nixStoreArg(), file)
	for _, a := range attrs {
		args = append(args, "-A", a)
	}
	out, err := runNix(ctx, "nix-instantiate", args...)
	if err != nil {
		return nil, err
	}
	var ps []store.Path
	for _, line := range strings.Fields(out) {
		// nix-instantiate prints "path!output" for non-default outputs.
		line, _, _ = strings.Cut(line, "!")
		p, err := store.ParsePath(line)
		if err != nil {
			return nil, fmt.Errorf("nix-instantiate printed %q: %w", line, err)
		}
		ps = append(ps, p)
	}
	if len(ps) == 0 {
		return nil, fmt.Errorf("nix-instantiate %s produced no derivation", file)
	}
	return ps, nil
}

func flakeDrvPath(ctx context.Context, root storeRoot, ref string) (store.Path, error) {
	args := append([]string{"--extra-experimental-features", "nix-command flakes"}, root.nixStoreArg()...)
	args = append(args, "eval", "--raw", ref+".drvPath")
	out, err := runNix(ctx, "nix", args...)
	if err != nil {
		return store.Path{}, err
	}
	return store.ParsePath(strings.TrimSpace(out))
}

// runNix runs a Nix command and returns its stdout; on failure the error
// carries Nix's own message.
func runNix(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		msg = strings.TrimPrefix(msg, "error: ")
		if msg == "" {
			msg = err.Error()
		}
		return "", fmt.Errorf("%s %s: %s", name, strings.Join(args, " "), msg)
	}
	return stdout.String(), nil
}
