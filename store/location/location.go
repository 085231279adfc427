// Package location turns Nix store URIs, as `--store`, `nix copy --to`
// and the machines file take them, into the stores nbuild talks to. It is
// the one place that reads NIX_REMOTE and NIX_DAEMON_SOCKET_PATH
// (NIX_SSHOPTS is read by store/ssh, the one place that runs ssh).
//
// Vocabulary:
//
//   - Location: a parsed store URI: its Kind and what that kind needs (a
//     socket, a root directory, an ssh host, a cache directory) plus the
//     URI's query parameters.
//   - Daemon: a nix-daemon on a unix socket. nbuild never writes a store
//     itself, so "auto" and "local" (which Nix 2.8 opens directly when it
//     may write /nix/var/nix) are the machine's daemon here too.
//   - Chroot: a store under a root directory (ROOT/nix/store), read
//     directly: any path with a slash ("/DIR", "./DIR", "dir/store"), or
//     "local?root=DIR".
//   - SSH and SSHNG: a remote store over ssh, spoken to with `nix-store
//     --serve` (ssh://) or `nix-daemon --stdio` (ssh-ng://).
//   - BinaryCache: a file:// binary cache directory.
package location

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/nbuild/nbuild/store"
	"github.com/nbuild/nbuild/store/daemon"
)

// Kind says how a store is reached.
type Kind uint8

const (
	Daemon Kind = iota + 1
	Chroot
	SSH
	SSHNG
	BinaryCache
)

func (k Kind) String() string {
	switch k {
	case Daemon:
		return "daemon"
	case Chroot:
		return "chroot"
	case SSH:
		return "ssh"
	case SSHNG:
		return "ssh-ng"
	case BinaryCache:
		return "file"
	}
	return fmt.Sprintf("Kind(%d)", k)
}

// DefaultSocket is where the machine's nix-daemon listens unless
// NIX_DAEMON_SOCKET_PATH says otherwise.
const DefaultSocket = store.DaemonSocket

// Accepted lists the forms Parse accepts, for messages.
const Accepted = "auto, daemon, unix://PATH, local, local?root=DIR, a directory path with a slash (DIR/, /DIR, ./DIR), " +
	"ssh://[USER@]HOST, ssh-ng://[USER@]HOST, file:///DIR"

// ErrUnknownStore is wrapped by the error for a URI Parse cannot open.
var ErrUnknownStore = errors.New("don't know how to open Nix store")

// Location is a parsed store URI.
type Location struct {
	Kind Kind
	// URI is the URI as given (NIX_REMOTE's value when that was used).
	URI string
	// Socket is the daemon's unix socket (Daemon).
	Socket string
	// Root is the chroot store's root directory, absolute (Chroot).
	Root string
	// Host is "[USER@]HOST" (SSH, SSHNG).
	Host string
	// Dir is the binary cache directory (BinaryCache).
	Dir string
	// Params are the URI's query parameters (e.g. remote-store,
	// compression, secret-key).
	Params url.Values
}

// Options configures Parse. The zero value reads this process's
// environment.
type Options struct {
	// Getenv looks up NIX_REMOTE and NIX_DAEMON_SOCKET_PATH. Default
	// os.Getenv.
	Getenv func(string) string
}

// Parse parses a store URI [2.8 src/libstore/store-api.cc openStore,
// uds-remote-store.cc, local-store.cc]. "" means the default store:
// $NIX_REMOTE, or "auto". A malformed or unknown URI is an error naming
// it and the accepted forms.
func Parse(uri string, opts Options) (Location, error) {
	getenv := opts.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	if uri == "" {
		uri = getenv("NIX_REMOTE")
	}
	if uri == "" {
		uri = "auto"
	}
	loc := Location{URI: uri}
	bad := func(why string) (Location, error) {
		return Location{}, fmt.Errorf("%w '%s': %s (nbuild accepts %s)", ErrUnknownStore, uri, why, Accepted)
	}
	rest, query, _ := strings.Cut(uri, "?")
	params, err := url.ParseQuery(query)
	if err != nil {
		return bad("bad query parameters")
	}
	loc.Params = params
	scheme, target, hasScheme := strings.Cut(rest, "://")
	if !hasScheme {
		switch {
		case rest == "auto" || rest == "daemon" || (rest == "local" && params.Get("root") == ""):
			loc.Kind, loc.Socket = Daemon, socket(getenv)
			return loc, nil
		case rest == "local":
			return chroot(loc, params.Get("root"))
		case strings.Contains(rest, "/"):
			// Nix's isNonUriPath: no scheme and a slash (testdata/store).
			return chroot(loc, rest)
		}
		return bad("not a store URI")
	}
	switch scheme {
	case "unix":
		if target == "" {
			loc.Kind, loc.Socket = Daemon, socket(getenv)
		} else {
			loc.Kind, loc.Socket = Daemon, target
		}
		return loc, nil
	case "ssh", "ssh-ng":
		if target == "" || strings.ContainsAny(target, "/ ") {
			return bad(fmt.Sprintf("invalid SSH host name '%s'", target))
		}
		loc.Kind, loc.Host = SSH, target
		if scheme == "ssh-ng" {
			loc.Kind = SSHNG
		}
		return loc, nil
	case "file":
		if !strings.HasPrefix(target, "/") {
			return bad("want file:///ABSOLUTE/DIR")
		}
		loc.Kind, loc.Dir = BinaryCache, filepath.Clean(target)
		return loc, nil
	case "http", "https", "s3":
		return bad("nbuild does not speak to " + scheme + ":// stores")
	}
	return bad("unknown scheme " + scheme + "://")
}

func socket(getenv func(string) string) string {
	if s := getenv("NIX_DAEMON_SOCKET_PATH"); s != "" {
		return s
	}
	return DefaultSocket
}

// chroot is a store under root: it must hold a nix/store directory, as
// nbuild only reads it.
func chroot(loc Location, root string) (Location, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return Location{}, fmt.Errorf("store '%s': %w", loc.URI, err)
	}
	if fi, err := os.Stat(filepath.Join(abs, "nix", "store")); err != nil || !fi.IsDir() {
		return Location{}, fmt.Errorf("store '%s': no nix/store directory under %s", loc.URI, abs)
	}
	loc.Kind, loc.Root = Chroot, abs
	return loc, nil
}

// String is the URI as given.
func (l Location) String() string { return l.URI }

// Dial connects to a Daemon store's nix-daemon (retrying while its listen
// backlog is full, as daemon.Dial does). Other kinds are an error: ssh
// stores are reached through store/ssh and store/copy, chroot stores and
// caches have no daemon.
func (l Location) Dial(ctx context.Context, opts daemon.Options) (*daemon.Conn, error) {
	if l.Kind != Daemon {
		return nil, fmt.Errorf("store '%s' (%s) has no local nix-daemon to connect to", l.URI, l.Kind)
	}
	c, err := daemon.Dial(ctx, l.Socket, opts)
	if err != nil {
		return nil, fmt.Errorf("connecting to the nix-daemon at %s: %w", l.Socket, err)
	}
	return c, nil
}
