package daemon_test

import (
	"context"
	"fmt"
	"os"

	"github.com/nbuild/nbuild/store"
	"github.com/nbuild/nbuild/store/daemon"
	"github.com/nbuild/nbuild/store/ssh"
)

// Query the local daemon, with build logs printed as they arrive.
func Example() {
	ctx := context.Background()
	logger := daemon.LogFuncs{OnResult: func(r daemon.Result) {
		if r.Type == daemon.ResBuildLogLine && len(r.Fields) > 0 {
			fmt.Fprintln(os.Stderr, r.Fields[0].String)
		}
	}}
	c, err := daemon.Dial(ctx, "/nix/var/nix/daemon-socket/socket", daemon.Options{Logger: logger})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	p := store.MustParsePath("/nix/store/7xb3pd8wiv2nh8gdfvs4y3z9kcn0b6p4-hello-2.12")
	info, err := c.QueryPathInfo(ctx, p)
	if err != nil {
		fmt.Println(err) // wraps store.ErrNotValid when p is not valid
		return
	}
	fmt.Println(info.NarHashString(), info.NarSize)
}

// Talk to a remote store as ssh-ng:// does: nix-daemon --stdio over ssh.
func ExampleNewConn_ssh() {
	ctx := context.Background()
	sc, err := ssh.Dial(ctx, "root@builder.example", []string{"nix-daemon", "--stdio"}, ssh.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	c, err := daemon.NewConn(ctx, sc, daemon.Options{}) // c owns sc now
	if err != nil {
		fmt.Println(err, sc.StderrTail())
		return
	}
	defer c.Close()
	fmt.Println("remote Nix", c.NixVersion())
}

// A pool of four connections to the local daemon, usable wherever a
// store.PathInfoQuerier (or the other store interfaces) is wanted.
func ExampleNewPool() {
	pool := daemon.NewPool(4, func(ctx context.Context) (*daemon.Conn, error) {
		return daemon.Dial(ctx, "/nix/var/nix/daemon-socket/socket", daemon.Options{})
	})
	defer pool.Close()
	var q store.PathInfoQuerier = pool
	_ = q
}
