package plan_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nbuild/nbuild/eval/graph"
	"github.com/nbuild/nbuild/sched"
	"github.com/nbuild/nbuild/sched/plan"
	"github.com/nbuild/nbuild/store"
	"github.com/nbuild/nbuild/store/metacache"
	"github.com/nbuild/nbuild/store/storetest"
)

// daemonClosure instantiates a three-derivation chain a <- b <- c in the
// machine's store (nothing built) and loads it.
func daemonClosure(t *testing.T) (*graph.Graph, string) {
	t.Helper()
	nonce := fmt.Sprint(time.Now().UnixNano())
	expr := `let mk = name: deps: derivation { inherit name; system = builtins.currentSystem; builder = "/bin/sh"; args = ["-c" "echo ${name} ${toString deps} > $out"]; };
  a = mk "nbuild-subst-a-` + nonce + `" [];
  b = mk "nbuild-subst-b-` + nonce + `" [ a ];
in { inherit a; c = mk "nbuild-subst-c-` + nonce + `" [ b ]; }`
	f := filepath.Join(t.TempDir(), "e.nix")
	if err := os.WriteFile(f, []byte(expr), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("nix-instantiate", f, "-A", "c").Output()
	if err != nil {
		t.Fatalf("nix-instantiate: %v", err)
	}
	g, err := graph.Load(context.Background(), "", []store.Path{store.MustParsePath(strings.TrimSpace(string(out)))}, graph.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return g, f
}

func openCache(t *testing.T, dir string) *metacache.Cache {
	t.Helper()
	c, err := metacache.Open(dir, metacache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestSubstitutesSilentSubstituter: a substituter that accepts and never
// answers makes the daemon wait; the plan waits at most the timeout,
// reports substitutes as unknown with the reason, and the next plan does
// not ask again while the failure is remembered.
func TestSubstitutesSilentSubstituter(t *testing.T) {
	storetest.RequireTrusted(t) // the daemon takes substituters from trusted users only
	silent := storetest.SilentServer(t)
	g, _ := daemonClosure(t)
	cache := openCache(t, filepath.Join(t.TempDir(), "meta"))
	opts := plan.ValidityOptions{
		Options:      map[string]string{"substituters": silent, "connect-timeout": "0"},
		Substituters: []string{silent}, Cache: cache, SubstituteTimeout: time.Second,
	}
	vi, err := plan.QueryValidity(context.Background(), g, g.Roots(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(vi.SubstitutesUnknown, "did not answer within 1s") || !vi.HasNewAnswers() {
		t.Fatalf("substitutes unknown = %q", vi.SubstitutesUnknown)
	}
	if err := vi.Remember(cache); err != nil {
		t.Fatal(err)
	}
	again, err := plan.QueryValidity(context.Background(), g, g.Roots(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(again.SubstitutesUnknown, "did not answer") || !strings.Contains(again.SubstitutesUnknown, "ago") || again.Asked != 0 {
		t.Errorf("second plan: unknown %q, asked %d", again.SubstitutesUnknown, again.Asked)
	}
	p, err := plan.New(g, vi, plan.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if p.SubstitutesUnknown == "" {
		t.Error("the plan does not carry why substitutes are unknown")
	}
}

// TestSubstitutesFileCache: a file:// binary cache holding one output
// makes it substitutable; answers are remembered, so the next plan asks
// the daemon nothing; a missing cache directory answers "no" for all.
func TestSubstitutesFileCache(t *testing.T) {
	storetest.RequireDaemon(t)
	storetest.RequireRoot(t)
	g, f := daemonClosure(t)
	out, err := exec.Command("nix-build", "--no-out-link", "--option", "substituters", "", f, "-A", "a").Output()
	if err != nil {
		t.Fatalf("nix-build: %v", err)
	}
	aOut := strings.TrimSpace(string(out))
	bin := "file://" + filepath.Join(t.TempDir(), "bin")
	if out, err := exec.Command("nix", "--extra-experimental-features", "nix-command", "copy", "--to", bin, aOut).CombinedOutput(); err != nil {
		t.Fatalf("nix copy: %v\n%s", err, out)
	}
	if out, err := exec.Command("nix-store", "--delete", aOut).CombinedOutput(); err != nil {
		t.Fatalf("nix-store --delete: %v\n%s", err, out)
	}
	cache := openCache(t, filepath.Join(t.TempDir(), "meta"))
	opts := plan.ValidityOptions{Options: map[string]string{"substituters": bin}, Substituters: []string{bin}, Cache: cache}
	vi, err := plan.QueryValidity(context.Background(), g, g.Roots(), opts)
	if err != nil {
		t.Fatal(err)
	}
	a := store.MustParsePath(aOut)
	if vi.SubstitutesUnknown != "" || !vi.Substitutable[a] || len(vi.Substitutable) != 1 || vi.Asked != 3 {
		t.Fatalf("unknown %q, substitutable %v, asked %d; want only %s of 3", vi.SubstitutesUnknown, vi.Substitutable, vi.Asked, a)
	}
	if err := vi.Remember(cache); err != nil {
		t.Fatal(err)
	}
	again, err := plan.QueryValidity(context.Background(), g, g.Roots(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if again.Asked != 0 || again.Remembered != 3 || !again.Substitutable[a] {
		t.Errorf("second plan asked %d, remembered %d, substitutable %v", again.Asked, again.Remembered, again.Substitutable)
	}
	local, err := sched.LocalMachine(sched.Conf{}, sched.LocalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := plan.New(g, again, plan.Options{Machines: []sched.Machine{local}})
	if err != nil {
		t.Fatal(err)
	}
	for id := range g.Len() {
		n := graph.NodeID(id)
		want := plan.Build
		if g.Node(n).Outputs[0].Path == a {
			want = plan.Substitutable
		}
		if p.State(n) != want {
			t.Errorf("%s: %s, want %s", g.Node(n).Name(), p.State(n), want)
		}
	}

	missing := "file://" + filepath.Join(t.TempDir(), "absent")
	vi, err = plan.QueryValidity(context.Background(), g, g.Roots(), plan.ValidityOptions{
		Options: map[string]string{"substituters": missing}, Substituters: []string{missing}})
	if err != nil || vi.SubstitutesUnknown != "" || len(vi.Substitutable) != 0 {
		t.Errorf("missing cache directory: %v, unknown %q, substitutable %v", err, vi.SubstitutesUnknown, vi.Substitutable)
	}
}
