package location

// LocalDaemonSocket is the socket of the local nix-daemon: the default
// store's (NIX_REMOTE, through opts.Getenv) when that is a daemon, else
// the machine's (NIX_DAEMON_SOCKET_PATH, or store.DaemonSocket).
func LocalDaemonSocket(opts Options) string {
	loc, err := Parse("", opts)
	if err != nil || loc.Kind != Daemon {
		loc, _ = Parse("daemon", opts)
	}
	return loc.Socket
}
