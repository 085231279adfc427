package copy

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/nbuild/nbuild/store"
)

// RootArg turns a command-line argument into the store path to copy, as
// nix-copy-closure does: in the local store (local) it follows symlinks
// such as ./result, and a path inside a store path names that store path.
func RootArg(arg string, local bool) (store.Path, error) {
	s := arg
	if local && !strings.HasPrefix(arg, store.StoreDir+"/") {
		if t, err := filepath.EvalSymlinks(arg); err == nil {
			s = t
		}
	}
	p, _, err := store.SplitPath(s)
	if err != nil {
		return store.Path{}, fmt.Errorf("path '%s' is not in the Nix store", arg)
	}
	return p, nil
}

// StoreNames are the names Nix's messages give the two stores of a copy
// to or from remote ("[USER@]HOST" or a file:// URL): from is "" for the
// local store, as PrinterOptions.From wants it.
func StoreNames(remote string, fromRemote bool) (from, to string) {
	switch cache := strings.HasPrefix(remote, "file://"); {
	case cache && fromRemote:
		return remote, "local store"
	case cache:
		return "", remote
	case fromRemote:
		return "ssh://" + remote, "local store"
	default:
		return "", "ssh://" + remote
	}
}

// ReportInterrupt says how far the interrupted j, which p reported, got:
// how many paths of the closure the destination holds now, asked afresh
// with j.Lacking until ctx is done, and that a rerun copies the rest.
func (p *Printer) ReportInterrupt(ctx context.Context, j *Job) {
	closure, missing := p.Plan()
	w := p.w
	where, verb := "on "+j.Remote, "send"
	if j.From {
		where, verb = "in the local store", "fetch"
	}
	switch {
	case strings.HasPrefix(j.Remote, "file://"):
		fmt.Fprintf(w, "interrupted: run the same command again to copy the rest\n")
		return
	case missing == nil || len(closure) == 0:
		fmt.Fprintf(w, "interrupted before any path was sent; run the same command again\n")
		return
	}
	lacking, err := j.Lacking(ctx, closure, missing)
	if err != nil {
		fmt.Fprintf(w, "interrupted: at least %d of %d paths are %s (asking for more failed: %v); run the same command again to %s the rest\n",
			len(closure)-len(missing), len(closure), where, err, verb)
		return
	}
	fmt.Fprintf(w, "interrupted: %d of %d paths are %s; run the same command again to %s the rest\n",
		len(closure)-lacking, len(closure), where, verb)
}
