package sched

import (
	"errors"
	"io/fs"
	"reflect"
	"strings"
	"testing"
)

func TestParseNixConf(t *testing.T) {
	files := map[string]string{
		"/etc/nix/extra.conf": "extra-system-features = kvm\nmax-jobs = auto # comment\n",
		"/etc/nix/override":   "system-features = only\n",
	}
	read := func(p string) ([]byte, error) {
		if s, ok := files[p]; ok {
			return []byte(s), nil
		}
		return nil, &fs.PathError{Op: "open", Path: p, Err: fs.ErrNotExist}
	}
	conf := `# nix.conf
system = aarch64-linux
extra-platforms = armv7l-linux   armv6l-linux
builders = a.example x86_64-linux ; b.example
include extra.conf
!include /etc/nix/absent
extra-system-features = benchmark
`
	c, err := ParseNixConf(strings.NewReader(conf), ConfOptions{Path: "/etc/nix/nix.conf", ReadFile: read})
	if err != nil {
		t.Fatal(err)
	}
	want := Conf{
		"system": "aarch64-linux", "extra-platforms": "armv7l-linux armv6l-linux",
		"builders": "a.example x86_64-linux ; b.example", "max-jobs": "auto",
		"extra-system-features": "kvm benchmark",
	}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("got %q\nwant %q", c, want)
	}
	if got := c.Value("system-features", "big-parallel"); got != "big-parallel kvm benchmark" {
		t.Errorf("system-features = %q", got)
	}
	kvm := false
	m, err := LocalMachine(c, LocalOptions{Cores: 6, KVM: &kvm})
	if err != nil {
		t.Fatal(err)
	}
	wantM := Machine{URI: "daemon", Local: true, Systems: []string{"aarch64-linux", "armv6l-linux", "armv7l-linux"},
		MaxJobs: 6, SpeedFactor: 1, SupportedFeatures: []string{"benchmark", "big-parallel", "kvm", "nixos-test"}}
	if !reflect.DeepEqual(m, wantM) {
		t.Errorf("LocalMachine\n got %+v\nwant %+v", m, wantM)
	}

	// An explicit setting after extra- lines replaces them, as in Nix.
	c, err = ParseNixConf(strings.NewReader("extra-system-features = a\ninclude override\nmax-jobs = 0\n"),
		ConfOptions{Path: "/etc/nix/nix.conf", ReadFile: read})
	if err != nil {
		t.Fatal(err)
	}
	m, err = LocalMachine(c, LocalOptions{System: "x86_64-linux", KVM: &kvm})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(m.SupportedFeatures, []string{"only"}) || m.MaxJobs != 0 || m.Systems[0] != "x86_64-linux" {
		t.Errorf("got %+v", m)
	}
}

func TestParseNixConfErrors(t *testing.T) {
	for _, tt := range []struct{ name, conf, want string }{
		{"OneWord", "system\n", "illegal configuration line 'system' in '/nix.conf'"},
		{"NoEquals", "system x86_64-linux\n", "illegal configuration line 'system x86_64-linux' in '/nix.conf'"},
		{"IncludeTwoArgs", "include a b\n", "illegal configuration line 'include a b' in '/nix.conf'"},
		{"IncludeMissing", "include absent\n", "file '/absent' included from '/nix.conf' not found"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseNixConf(strings.NewReader(tt.conf), ConfOptions{Path: "/nix.conf", ReadFile: testReadFile})
			if !errors.Is(err, ErrBadConf) || !strings.HasSuffix(err.Error(), tt.want) {
				t.Errorf("got %v, want ...%s", err, tt.want)
			}
		})
	}
	c, _ := ParseNixConf(strings.NewReader("max-jobs = many\n"), ConfOptions{})
	if _, err := LocalMachine(c, LocalOptions{}); !errors.Is(err, ErrBadConf) {
		t.Errorf("max-jobs = many: got %v", err)
	}
}

func TestPlatform(t *testing.T) {
	a := MustPlatform("x86_64-linux", "kvm", "big-parallel", "kvm", "")
	b := MustPlatform("x86_64-linux", "big-parallel", "kvm")
	if a != b {
		t.Fatalf("%v != %v", a, b)
	}
	m := map[Platform]int{a: 1}
	if m[b] != 1 {
		t.Fatal("platform is not a usable map key")
	}
	if a.String() != "x86_64-linux[big-parallel,kvm]" || !a.HasFeature("kvm") || a.HasFeature("k") {
		t.Errorf("String/HasFeature wrong: %s", a)
	}
	if !reflect.DeepEqual(MustPlatform("x").Features(), []string(nil)) {
		t.Error("featureless platform has features")
	}
	for _, bad := range [][]string{{""}, {"x y"}, {"x", "a b"}, {"x", "a\tb"}} {
		if _, err := NewPlatform(bad[0], bad[1:]...); !errors.Is(err, ErrInvalidPlatform) {
			t.Errorf("NewPlatform(%q): got %v", bad, err)
		}
	}
}

func FuzzParseNixConf(f *testing.F) {
	f.Add("system = x86_64-linux\nextra-platforms = i686-linux\n")
	f.Add("include extra.conf\n!include /absent\nmax-jobs = auto # c\n")
	f.Add("extra-system-features = kvm\nsystem-features = a b\nextra-extra-platforms = x\n")
	f.Add("x\n")
	f.Fuzz(func(t *testing.T, text string) {
		files := map[string]string{"/etc/extra.conf": text}
		read := func(p string) ([]byte, error) {
			if s, ok := files[p]; ok {
				return []byte(s), nil
			}
			return nil, &fs.PathError{Op: "open", Path: p, Err: fs.ErrNotExist}
		}
		c, err := ParseNixConf(strings.NewReader(text), ConfOptions{Path: "/etc/nix.conf", ReadFile: read})
		if err != nil {
			if !errors.Is(err, ErrBadConf) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		for k, v := range c {
			if k == "" || strings.ContainsAny(k, " \t\r\n#") || strings.ContainsAny(v, "\t\r\n#") {
				t.Fatalf("bad setting %q = %q", k, v)
			}
		}
		kvm := false
		if m, err := LocalMachine(c, LocalOptions{System: "x86_64-linux", Cores: 2, KVM: &kvm}); err == nil {
			if len(m.Systems) == 0 || !m.Local {
				t.Fatalf("bad local machine %+v", m)
			}
		} else if !errors.Is(err, ErrBadConf) {
			t.Fatalf("LocalMachine: %v", err)
		}
	})
}
