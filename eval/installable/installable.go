// Package installable turns what users type after `nix-build`, `nix
// build` or `nix-store` into the store derivations nbuild plans and
// builds. Evaluation of the Nix language stays with Nix: a .nix file or a
// flake is handed to the real nix-instantiate or nix, and only the .drv
// path comes back.
//
// Vocabulary:
//
//   - Installable: a .drv store path; an output path (or a symlink into
//     the store such as ./result), mapped to its deriver; FILE.nix or a
//     directory without flake.nix with attributes (-A), as nix-build; a
//     flake reference (FLAKEREF#ATTR, FLAKEREF, or a directory holding
//     flake.nix such as "."), as nix build.
//   - Root: the root directory of a chroot store (files under
//     ROOT/nix/store), or "" for the machine's store.
package installable

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/nbuild/nbuild/store"
)

// Options configures Resolve. The zero value resolves against the
// machine's store with no attributes.
type Options struct {
	// Root is the root directory of a chroot store, "" for the machine's.
	Root string
	// Attrs are the -A attributes for .nix files and directories without
	// flake.nix.
	Attrs []string
}

// Resolve turns installables into .drv paths, in order: a .drv store path
// (or a file inside the chroot store given as a path under Root) as is; an
// output path through `nix-store -q --deriver`; FILE.nix, or a directory
// without flake.nix, through `nix-instantiate` with opts.Attrs; a flake
// reference through `nix path-info --derivation`, which applies Nix's own
// default attributes (packages.SYSTEM.default, ...). Errors carry Nix's
// own message.
func Resolve(ctx context.Context, args []string, opts Options) ([]store.Path, error) {
	var out []store.Path
	for _, a := range args {
		switch {
		case isFlakeRef(a):
			p, err := flakeDrvPath(ctx, opts.Root, a)
			if err != nil {
				return nil, err
			}
			out = append(out, p)
		case strings.HasSuffix(a, ".nix") || (isDir(a) && !strings.HasPrefix(a, store.StoreDir)):
			ps, err := instantiate(ctx, opts.Root, a, opts.Attrs)
			if err != nil {
				return nil, err
			}
			out = append(out, ps...)
		default:
			p, err := storePathArg(ctx, opts.Root, a)
			if err != nil {
				return nil, err
			}
			out = append(out, p)
		}
	}
	return out, nil
}

// flakeScheme matches the flake reference forms that name a scheme
// (path:, git+file:, github:, flake:, ...).
var flakeScheme = regexp.MustCompile(`^[a-z][a-z0-9+.-]*:`)

// isFlakeRef tells flake references from paths: "REF#ATTR", a scheme
// ("path:…", "git+file:…", "github:…"), or a directory holding flake.nix
// (as `nix build .`; nix-build would read default.nix instead).
func isFlakeRef(a string) bool {
	if strings.Contains(a, "#") || flakeScheme.MatchString(a) {
		return true
	}
	if strings.HasPrefix(a, store.StoreDir+"/") || !isDir(a) {
		return false
	}
	_, err := os.Stat(filepath.Join(a, "flake.nix"))
	return err == nil
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// storePathArg accepts a store path (following a symlink such as ./result
// into the store), or a path inside a chroot store root, and returns the
// .drv to inspect.
func storePathArg(ctx context.Context, root, a string) (store.Path, error) {
	s := a
	if root != "" {
		abs, err := filepath.Abs(a)
		if err == nil {
			if rel, ok := strings.CutPrefix(abs, root); ok {
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
		if _, err := os.Stat(filepath.Join(root, p.String())); err != nil {
			return store.Path{}, fmt.Errorf("derivation '%s' does not exist in the store", p)
		}
		return p, nil
	}
	if root != "" {
		// nix-store would create a database in a chroot store without one.
		if _, err := os.Stat(filepath.Join(root, "nix", "var", "nix", "db", "db.sqlite")); err != nil {
			return store.Path{}, fmt.Errorf("path '%s' is not a derivation, and the store at %s has no Nix database to find its deriver in; give its .drv instead", p, root)
		}
	}
	out, err := runNix(ctx, "nix-store", append(storeArg(root), "-q", "--deriver", p.String())...)
	if err != nil {
		return store.Path{}, err
	}
	d := strings.TrimSpace(out)
	if d == "" || d == "unknown-deriver" {
		return store.Path{}, fmt.Errorf("path '%s' has no known deriver; give its .drv instead", p)
	}
	return store.ParsePath(d)
}

// storeArg is the --store argument for Nix commands, none for the
// machine's store.
func storeArg(root string) []string {
	if root == "" {
		return nil
	}
	return []string{"--store", root}
}

func instantiate(ctx context.Context, root, file string, attrs []string) ([]store.Path, error) {
	args := append(storeArg(root), file)
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

// flakeDrvPath asks Nix for the .drv of a flake installable; Nix applies
// its default attribute paths and names the installable in its errors as
// the user wrote it.
func flakeDrvPath(ctx context.Context, root, ref string) (store.Path, error) {
	args := append([]string{"--extra-experimental-features", "nix-command flakes"}, storeArg(root)...)
	args = append(args, "path-info", "--derivation", ref)
	out, err := runNix(ctx, "nix", args...)
	if err != nil {
		return store.Path{}, err
	}
	fields := strings.Fields(out)
	if len(fields) != 1 {
		return store.Path{}, fmt.Errorf("%s: nix path-info --derivation printed %q, want one .drv path", ref, strings.TrimSpace(out))
	}
	return store.ParsePath(fields[0])
}

// runNix runs a Nix command and returns its stdout; on failure the error
// is Nix's own message, prefixed with the command.
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
		return "", fmt.Errorf("%s: %s", name, msg)
	}
	return stdout.String(), nil
}
