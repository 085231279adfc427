package main

import "github.com/nbuild/nbuild/store/location"

// LocalDaemonSocket is the socket of the local nix-daemon: the default
// store's (NIX_REMOTE, through opts.Getenv) when that is a daemon, else
// the machine's (NIX_DAEMON_SOCKET_PATH, or store.DaemonSocket).
func LocalDaemonSocket(opts location.Options) string {
	loc, err := location.Parse("", opts)
	if err != nil || loc.Kind != location.Daemon {
		loc, _ = location.Parse("daemon", opts)
	}
	return loc.Socket
}
