package executor_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nbuild/nbuild/sched"
	"github.com/nbuild/nbuild/sched/executor"
	"github.com/nbuild/nbuild/store/testhost"
)

// TestBuildersLineHostKey builds on a test host whose host key is given
// only by the builders line's 8th field, with strict host-key checking
// (no known_hosts knows the host); a wrong key there fails the run with
// ssh's own message, attributed to ssh.
func TestBuildersLineHostKey(t *testing.T) {
	h := testhost.New(t, testhost.Options{Daemon: true})
	pub, err := os.ReadFile(filepath.Join(h.Dir, "ssh", "host_ed25519.pub"))
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "other")
	if b, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", other).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, b)
	}
	wrong, err := os.ReadFile(other + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	// The known-hosts entry names the host as the URI does (host-0); the
	// port is not 22, so ssh is told to look the key up under that name.
	getenv := sshConfig(t, []string{"-p", fmt.Sprint(h.Port), "-i", h.Key, "-o", "IdentitiesOnly=yes",
		"-o", "UserKnownHostsFile=/dev/null", "-o", "GlobalKnownHostsFile=/dev/null", "-o", "HostKeyAlias=host-0",
		"-o", "StrictHostKeyChecking=yes", "-o", "CheckHostIP=no", "-o", "BatchMode=yes"})
	g := &dag{names: []string{"keyed"}, deps: [][]int{nil}, roots: []int{0}}
	drvs := g.instantiate(t)
	ej, sj := g.jobs(t, drvs)
	for _, tc := range []struct {
		name string
		key  []byte
		ok   bool
	}{{"right key", pub, true}, {"wrong key", wrong, false}} {
		t.Run(tc.name, func(t *testing.T) {
			line := "ssh-ng://root@host-0 x86_64-linux - 1 1 - - " + base64.StdEncoding.EncodeToString(tc.key)
			machines, err := sched.ParseMachines(line, sched.ParseOptions{})
			if err != nil {
				t.Fatal(err)
			}
			plan, err := sched.NewPlan(sj, machines)
			if err != nil {
				t.Fatal(err)
			}
			route, closeAll := wire(machines, ej, getenv, &executor.LocalPoolOptions{Options: noSubstituters}, executor.Events{})
			defer closeAll()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			err = sched.NewScheduler(plan, sched.Options{}).Run(ctx, route, sched.RunOptions{})
			if tc.ok {
				if err != nil {
					t.Fatalf("strict checking with the key in the builders line: %v", err)
				}
				verifyLocal(t, ej[0].Outputs...)
				return
			}
			if !errors.Is(err, sched.ErrBuildFailed) || !strings.Contains(err.Error(), "ssh to root@host-0: ") ||
				!strings.Contains(err.Error(), "Host key verification failed.") {
				t.Fatalf("a wrong key: %v, want ssh's host key verification failure", err)
			}
			t.Logf("%v", err)
		})
	}
}
