package sched

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// ErrBadConf is wrapped by nix.conf syntax errors.
var ErrBadConf = errors.New("sched: bad nix.conf")

// ConfOptions configures ParseNixConf. The zero value resolves includes
// against the working directory with os.ReadFile.
type ConfOptions struct {
	// Path names the file being parsed: relative includes are resolved
	// against its directory, and errors mention it.
	Path string
	// ReadFile reads included files. Default os.ReadFile.
	ReadFile func(path string) ([]byte, error)
	// Aliases stores settings under their current names, as Nix does:
	// "build-max-jobs" as "max-jobs", "extra-binary-caches" as
	// "extra-substituters" (LookupSetting).
	Aliases bool
}

// Conf is a parsed nix.conf: setting name → value, in the shape Nix's
// Config::set leaves them [2.8 src/libutil/config.cc applyConfig, set].
// "extra-NAME = v" appends to NAME; since the default of NAME is not known
// here, the appended words are kept under "extra-NAME" (and an explicit
// "NAME = ..." clears them). Value(name, default) combines the two.
type Conf map[string]string

// settingsNamedExtra are real settings whose names start with "extra-";
// Nix looks a name up before treating "extra-" as "append".
var settingsNamedExtra = map[string]bool{"extra-platforms": true, "extra-sandbox-paths": true}

// Value returns the effective value of a setting: its explicit value (or
// def when unset) followed by anything "extra-NAME" lines appended.
func (c Conf) Value(name, def string) string {
	v, ok := c[name]
	if !ok {
		v = def
	}
	if extra := c["extra-"+name]; extra != "" && !settingsNamedExtra["extra-"+name] {
		if v != "" {
			v += " "
		}
		v += extra
	}
	return v
}

// ParseNixConf reads nix.conf syntax: "name = value" lines, '#' comments,
// "include FILE" (error when missing) and "!include FILE" (ignored when
// missing). Values are the remaining words joined by single spaces.
func ParseNixConf(r io.Reader, opts ConfOptions) (Conf, error) {
	if opts.ReadFile == nil {
		opts.ReadFile = os.ReadFile
	}
	c := Conf{}
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	if err := c.apply(string(data), opts.Path, &opts, 0); err != nil {
		return nil, err
	}
	return c, nil
}

func (c Conf) apply(contents, path string, opts *ConfOptions, depth int) error {
	if depth > 32 {
		return fmt.Errorf("%w: includes nested too deeply in '%s'", ErrBadConf, path)
	}
	for _, line := range strings.Split(contents, "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		tokens := tokenize(line, " \t\n\r")
		if len(tokens) == 0 {
			continue
		}
		if len(tokens) < 2 {
			return fmt.Errorf("%w: illegal configuration line '%s' in '%s'", ErrBadConf, line, path)
		}
		if tokens[0] == "include" || tokens[0] == "!include" {
			if len(tokens) != 2 {
				return fmt.Errorf("%w: illegal configuration line '%s' in '%s'", ErrBadConf, line, path)
			}
			p := tokens[1]
			if !filepath.IsAbs(p) {
				p = filepath.Join(filepath.Dir(path), p)
			}
			text, err := opts.ReadFile(p)
			switch {
			case err == nil:
				if err := c.apply(string(text), p, opts, depth+1); err != nil {
					return err
				}
			case errors.Is(err, fs.ErrNotExist) && tokens[0] == "!include":
			case errors.Is(err, fs.ErrNotExist):
				return fmt.Errorf("%w: file '%s' included from '%s' not found", ErrBadConf, p, path)
			default:
				return err
			}
			continue
		}
		if tokens[1] != "=" {
			return fmt.Errorf("%w: illegal configuration line '%s' in '%s'", ErrBadConf, line, path)
		}
		name := tokens[0]
		if opts.Aliases {
			name = canonicalSetting(name)
		}
		c.set(name, strings.Join(tokens[2:], " "))
	}
	return nil
}

// canonicalSetting is the current name of a setting or of its extra-
// form; an unknown name is kept.
func canonicalSetting(name string) string {
	if s, ok := LookupSetting(name, true); ok {
		return s.Name
	}
	if base, ok := strings.CutPrefix(name, "extra-"); ok {
		if s, ok := LookupSetting(base, true); ok && s.Appendable() {
			return "extra-" + s.Name
		}
	}
	return name
}

// set applies one "name = value": "extra-NAME" appends to what earlier
// extra- lines gave, anything else replaces the value and drops them.
func (c Conf) set(name, value string) {
	if strings.HasPrefix(name, "extra-") && !settingsNamedExtra[name] {
		if old := c[name]; old != "" && value != "" {
			value = old + " " + value
		} else if value == "" {
			value = old
		}
	} else {
		delete(c, "extra-"+name)
	}
	c[name] = value
}

// LocalOptions describes the host for LocalMachine where nix.conf is
// silent. The zero value describes this Go process's host with Nix 2.8's
// defaults.
type LocalOptions struct {
	// System is the default `system` (default: from runtime.GOARCH/GOOS,
	// e.g. "x86_64-linux").
	System string
	// Cores is what max-jobs = auto means (default runtime.NumCPU()).
	Cores int
	// KVM says whether "kvm" is a default system feature (Nix adds it when
	// /dev/kvm is readable and writable). Nil: probe /dev/kvm.
	KVM *bool
}

// LocalMachine describes the local nix-daemon as a builder from nix.conf
// settings: `system` and `extra-platforms` give its systems, `system-
// features` its supported features (Nix 2.8 default: nixos-test,
// benchmark, big-parallel, and kvm when /dev/kvm is usable), `max-jobs`
// its slots (default 1, "auto" = cores). Nix has no speed factor for the
// local machine; it is 1 here. Local builds have no mandatory features.
//
// Unlike Nix, the default extra-platforms is empty: 2.8 adds i686-linux
// and the x86-64-vN levels on x86_64-linux, which a daemon's `nix
// show-config` reports when it matters.
func LocalMachine(c Conf, opts LocalOptions) (Machine, error) {
	if opts.System == "" {
		opts.System = hostSystem()
	}
	if opts.Cores <= 0 {
		opts.Cores = runtime.NumCPU()
	}
	system := c.Value("system", opts.System)
	if strings.TrimSpace(system) == "" || len(tokenize(system, " \t\n\r")) != 1 {
		return Machine{}, fmt.Errorf("%w: bad value for 'system': '%s'", ErrBadConf, system)
	}
	m := Machine{URI: "daemon", Local: true, SpeedFactor: 1, Systems: []string{strings.TrimSpace(system)}}
	for _, p := range sortedSet(tokenize(c.Value("extra-platforms", ""), " \t\n\r")) {
		if p != m.Systems[0] {
			m.Systems = append(m.Systems, p)
		}
	}
	defFeatures := "nixos-test benchmark big-parallel"
	kvm := false
	if opts.KVM != nil {
		kvm = *opts.KVM
	} else if f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0); err == nil {
		f.Close()
		kvm = true
	}
	if kvm {
		defFeatures += " kvm"
	}
	m.SupportedFeatures = sortedSet(tokenize(c.Value("system-features", defFeatures), " \t\n\r"))
	switch jobs := strings.TrimSpace(c.Value("max-jobs", "1")); jobs {
	case "auto":
		m.MaxJobs = uint(opts.Cores)
	default:
		n, ok := parseUnsigned(jobs)
		if !ok {
			return Machine{}, fmt.Errorf("%w: configuration setting 'max-jobs' should be 'auto' or an integer", ErrBadConf)
		}
		m.MaxJobs = n
	}
	return m, nil
}

// hostSystem maps Go's GOARCH/GOOS to a Nix system type.
func hostSystem() string {
	arch := map[string]string{
		"amd64": "x86_64", "386": "i686", "arm64": "aarch64", "arm": "armv7l",
		"riscv64": "riscv64", "ppc64le": "powerpc64le", "s390x": "s390x",
	}[runtime.GOARCH]
	if arch == "" {
		arch = runtime.GOARCH
	}
	return arch + "-" + runtime.GOOS
}
