package sched

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nbuild/nbuild/store/storetest"
)

// settingsLayers writes a system nix.conf and two user files whose
// settings overlap, and returns the environment that points Nix at them
// and the --option pairs applied last.
func settingsLayers(t *testing.T) (env map[string]string, opts []Option) {
	t.Helper()
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("etc/nix.conf", "max-jobs = 3\nsubstituters = file:///a\nsystem-features = f1\ncores = 1\n"+
		"builders = ssh://from-system x86_64-linux\ntrusted-public-keys = k1:AAAA\nbuilders-use-substitutes = false\n")
	first := write("user/first.conf", "max-jobs = 4\nextra-substituters = file:///b\n")
	second := write("user/second.conf", "max-jobs = 5\ncores = 7\nextra-trusted-public-keys = k2:BBBB\n")
	env = map[string]string{
		"NIX_CONF_DIR":        filepath.Join(dir, "etc"),
		"NIX_USER_CONF_FILES": first + ":" + second, // first wins
		"NIX_CONFIG":          "extra-system-features = f2\ncores = 6\nbuilders = ssh://from-env aarch64-linux - 2\n",
		"HOME":                dir,
	}
	opts = []Option{{"extra-substituters", "file:///c"}, {"builders-use-substitutes", "true"}, {"extra-platforms", "riscv64-linux"}}
	return env, opts
}

// TestLoadSettingsLayers: system file, user files (first listed wins),
// NIX_CONFIG, then --option, with extra- appending across layers; only
// what comes after the system file is sent to the daemon.
func TestLoadSettingsLayers(t *testing.T) {
	env, opts := settingsLayers(t)
	s, err := LoadSettings(SettingsOptions{Getenv: func(k string) string { return env[k] }, Options: opts})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"max-jobs":                 "4",
		"cores":                    "6",
		"substituters":             "file:///a file:///b file:///c",
		"system-features":          "f1 f2",
		"trusted-public-keys":      "k1:AAAA k2:BBBB",
		"builders":                 "ssh://from-env aarch64-linux - 2",
		"builders-use-substitutes": "true",
		"extra-platforms":          "riscv64-linux",
	} {
		if got := s.Value(name, ""); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	ov := s.DaemonOverrides()
	if _, ok := ov["trusted-public-keys"]; ok {
		t.Errorf("the system file's own settings are sent to the daemon: %v", ov)
	}
	if ov["max-jobs"] != "4" || ov["builders-use-substitutes"] != "true" || ov["extra-substituters"] != "file:///b file:///c" {
		t.Errorf("daemon overrides %v", ov)
	}
	ms, err := s.Machines("", LocalOptions{System: "x86_64-linux"})
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || ms[1].URI != "ssh://from-env" || ms[1].MaxJobs != 2 || !slicesEqual(ms[0].Systems, []string{"x86_64-linux", "riscv64-linux"}) {
		t.Errorf("machines %+v", ms)
	}
	if got := s.Substituters(); len(got) != 3 {
		t.Errorf("substituters %q", got)
	}
}

func slicesEqual(a, b []string) bool { return strings.Join(a, "\x00") == strings.Join(b, "\x00") }

// TestLoadSettingsAgainstNix gives the real Nix 2.8 the same layers (`nix
// show-config` with the same environment and --option flags) and requires
// the same effective value for every setting nbuild uses.
func TestLoadSettingsAgainstNix(t *testing.T) {
	storetest.RequireNix(t)
	env, opts := settingsLayers(t)
	s, err := LoadSettings(SettingsOptions{Getenv: func(k string) string { return env[k] }, Options: opts})
	if err != nil {
		t.Fatal(err)
	}
	nix := nixShowConfig(t, env, opts)
	for _, name := range []string{"max-jobs", "cores", "substituters", "system-features", "trusted-public-keys", "builders", "builders-use-substitutes"} {
		if got, want := s.Value(name, ""), nix[name]; got != want {
			t.Errorf("%s: nbuild %q, nix show-config %q", name, got, want)
		}
	}
	// Nix adds its own platforms to extra-platforms; ours must be there.
	if !strings.Contains(" "+nix["extra-platforms"]+" ", " riscv64-linux ") {
		t.Errorf("nix show-config extra-platforms = %q: the --option did not reach it", nix["extra-platforms"])
	}
}

// TestLoadSettingsErrors: a named --nix-conf must exist; a bad line says
// where it is, NIX_CONFIG included.
func TestLoadSettingsErrors(t *testing.T) {
	none := func(string) string { return "" }
	if _, err := LoadSettings(SettingsOptions{Getenv: none, ConfFile: filepath.Join(t.TempDir(), "absent.conf")}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing --nix-conf: %v", err)
	}
	bad := map[string]string{"NIX_CONFIG": "builders\n", "HOME": t.TempDir(), "NIX_CONF_DIR": t.TempDir()}
	_, err := LoadSettings(SettingsOptions{Getenv: func(k string) string { return bad[k] }})
	if !errors.Is(err, ErrBadConf) || !strings.Contains(err.Error(), "illegal configuration line 'builders' in 'NIX_CONFIG'") {
		t.Errorf("bad NIX_CONFIG: %v", err)
	}
	// With nothing anywhere, nothing is set and nothing is sent.
	empty := map[string]string{"HOME": t.TempDir(), "NIX_CONF_DIR": t.TempDir(), "XDG_CONFIG_DIRS": t.TempDir()}
	s, err := LoadSettings(SettingsOptions{Getenv: func(k string) string { return empty[k] }})
	if err != nil || len(s.Conf) != 0 || s.DaemonOverrides() != nil || len(s.Files) != 0 {
		t.Errorf("empty settings: %v %v", s, err)
	}
}

// TestLoadSettingsAliasesAgainstNix: old names count as their setting,
// with extra- forms of them, as in Nix 2.8's `nix show-config`.
func TestLoadSettingsAliasesAgainstNix(t *testing.T) {
	storetest.RequireNix(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "nix.conf"), []byte("build-max-jobs = 7\nbinary-caches = file:///a\nbuild-cores = 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"NIX_CONF_DIR": dir, "HOME": dir, "NIX_USER_CONF_FILES": filepath.Join(dir, "none"),
		"NIX_CONFIG": "extra-binary-caches = file:///b\n"}
	opts := []Option{{"build-use-substitutes", "false"}}
	s, err := LoadSettings(SettingsOptions{Getenv: func(k string) string { return env[k] }, Options: opts})
	if err != nil {
		t.Fatal(err)
	}
	nix := nixShowConfig(t, env, opts)
	for _, name := range []string{"max-jobs", "substituters", "cores", "substitute"} {
		if got, want := s.Value(name, nix[name]), nix[name]; got != want {
			t.Errorf("%s: nbuild %q, nix show-config %q", name, got, want)
		}
	}
	if s.Value("max-jobs", "") != "7" || s.Value("substituters", "") != "file:///a file:///b" {
		t.Errorf("aliases not applied: max-jobs %q, substituters %q", s.Value("max-jobs", ""), s.Value("substituters", ""))
	}
}

// nixShowConfig is what the real `nix show-config` says with only the
// environment env (and PATH) and --option opts.
func nixShowConfig(t *testing.T, env map[string]string, opts []Option) Conf {
	t.Helper()
	args := []string{"--extra-experimental-features", "nix-command", "show-config"}
	for _, o := range opts {
		args = append(args, "--option", o.Name, o.Value)
	}
	cmd := exec.Command("nix", args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("nix show-config: %v", err)
	}
	nix, err := ParseNixConf(strings.NewReader(string(out)), ConfOptions{Path: "show-config"})
	if err != nil {
		t.Fatal(err)
	}
	return nix
}
