package main

import (
	"context"

	"github.com/nbuild/nbuild/eval/installable"
	"github.com/nbuild/nbuild/store"
	"github.com/nbuild/nbuild/store/location"
)

// storeRoot is where a command reads store files: "" for the real
// /nix/store, or the root directory of a chroot store (whose files live
// under ROOT/nix/store), as given by --store DIR.
type storeRoot string

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

// resolveInstallables turns command-line installables into .drv paths
// (installable.Resolve).
func resolveInstallables(ctx context.Context, root storeRoot, args, attrs []string) ([]store.Path, error) {
	return installable.Resolve(ctx, args, installable.Options{Root: string(root), Attrs: attrs})
}
