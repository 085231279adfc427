package sched

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"
)

// SettingsOptions says where LoadSettings looks. The zero value reads what
// Nix 2.8 reads, from this process's environment.
type SettingsOptions struct {
	// Getenv looks up NIX_CONF_DIR, NIX_USER_CONF_FILES, XDG_CONFIG_HOME,
	// XDG_CONFIG_DIRS, HOME and NIX_CONFIG. Default os.Getenv.
	Getenv func(string) string
	// ConfFile, when set, is read instead of $NIX_CONF_DIR/nix.conf and
	// must exist (nbuild's --nix-conf).
	ConfFile string
	// Options are `--option NAME VALUE` pairs, applied last, in order.
	Options []Option
	// ReadFile reads configuration files. Default os.ReadFile.
	ReadFile func(path string) ([]byte, error)
}

// Option is one `--option NAME VALUE`.
type Option struct{ Name, Value string }

// Settings are Nix's settings as a Nix 2.8 client sees them, in its order
// [2.8 src/libstore/globals.cc loadConfFile]: the system nix.conf
// ($NIX_CONF_DIR/nix.conf, default /etc/nix/nix.conf); then the user's
// files ($NIX_USER_CONF_FILES, ':'-separated, else
// $XDG_CONFIG_HOME/nix/nix.conf and each $XDG_CONFIG_DIRS/nix/nix.conf),
// read last to first so the first wins; then $NIX_CONFIG as the text of
// a file; then --option. A later value replaces an earlier one and
// "extra-NAME" appends to NAME (Conf.Value); old aliases count as their
// setting ("build-max-jobs" is "max-jobs").
type Settings struct {
	// Conf holds every layer.
	Conf Conf
	// Overrides are the settings made after the system nix.conf: what a
	// Nix client sends its daemon (the daemon has read nix.conf itself).
	Overrides Conf
	// Files lists the configuration files read, in order.
	Files []string
}

// LoadSettings reads Nix's settings as a Nix 2.8 client does. A missing
// system or user file is no error (a missing ConfFile is); a malformed
// line is, naming its file ("NIX_CONFIG" for the variable).
func LoadSettings(opts SettingsOptions) (*Settings, error) {
	getenv := opts.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	if opts.ReadFile == nil {
		opts.ReadFile = os.ReadFile
	}
	s := &Settings{Conf: Conf{}, Overrides: Conf{}}
	popts := &ConfOptions{ReadFile: opts.ReadFile, Aliases: true}
	readFile := func(path string, must bool, layers ...Conf) error {
		text, err := opts.ReadFile(path)
		if err != nil {
			if !must && errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return fmt.Errorf("reading Nix settings: %w", err)
		}
		s.Files = append(s.Files, path)
		for _, c := range layers {
			if err := c.apply(string(text), path, popts, 0); err != nil {
				return err
			}
		}
		return nil
	}
	system := opts.ConfFile
	if system == "" {
		dir := getenv("NIX_CONF_DIR")
		if dir == "" {
			dir = "/etc/nix"
		}
		system = filepath.Join(dir, "nix.conf")
	}
	if err := readFile(system, opts.ConfFile != "", s.Conf); err != nil {
		return nil, err
	}
	user := userConfFiles(getenv)
	for i := len(user) - 1; i >= 0; i-- {
		if err := readFile(user[i], false, s.Conf, s.Overrides); err != nil {
			return nil, err
		}
	}
	if text := getenv("NIX_CONFIG"); text != "" {
		for _, c := range []Conf{s.Conf, s.Overrides} {
			if err := c.apply(text, "NIX_CONFIG", popts, 0); err != nil {
				return nil, err
			}
		}
	}
	for _, o := range opts.Options {
		name := canonicalSetting(o.Name)
		s.Conf.set(name, o.Value)
		s.Overrides.set(name, o.Value)
	}
	return s, nil
}

// userConfFiles lists the user's nix.conf files, highest precedence first
// [2.8 src/libstore/globals.cc getUserConfigFiles, src/libutil/util.cc
// getConfigDirs].
func userConfFiles(getenv func(string) string) []string {
	if v := getenv("NIX_USER_CONF_FILES"); v != "" {
		return strings.FieldsFunc(v, func(r rune) bool { return r == ':' })
	}
	home := getenv("XDG_CONFIG_HOME")
	if home == "" {
		home = filepath.Join(getenv("HOME"), ".config")
	}
	dirs := []string{home}
	xdg := getenv("XDG_CONFIG_DIRS")
	if xdg == "" {
		xdg = "/etc/xdg"
	}
	dirs = append(dirs, strings.FieldsFunc(xdg, func(r rune) bool { return r == ':' })...)
	files := make([]string, len(dirs))
	for i, d := range dirs {
		files[i] = filepath.Join(d, "nix", "nix.conf")
	}
	return files
}

// Value is the effective value of a setting, def when nothing sets it.
func (s *Settings) Value(name, def string) string { return s.Conf.Value(name, def) }

// LocalMachine describes the local nix-daemon as a builder (the
// package-level LocalMachine over these settings).
func (s *Settings) LocalMachine(opts LocalOptions) (Machine, error) {
	return LocalMachine(s.Conf, opts)
}

// Machines are the local machine, then the builders of the `builders`
// setting (or of spec, when not empty, as `--builders SPEC`), parsed as
// Nix 2.8 parses them.
func (s *Settings) Machines(spec string, opts LocalOptions) ([]Machine, error) {
	local, err := s.LocalMachine(opts)
	if err != nil {
		return nil, err
	}
	if spec == "" {
		spec = s.Value("builders", "")
	}
	remote, err := ParseMachines(spec, ParseOptions{ThisSystem: local.Systems[0]})
	if err != nil {
		return nil, err
	}
	return append([]Machine{local}, remote...), nil
}

// Substituters are the binary caches the daemon would ask, from
// `substituters` (Nix 2.8's default https://cache.nixos.org/) plus
// `extra-substituters`.
func (s *Settings) Substituters() []string {
	return strings.Fields(s.Value("substituters", "https://cache.nixos.org/"))
}

// DaemonOverrides is what a client sends its daemon with SetOptions: the
// settings made after the system nix.conf, as Nix's own clients send
// them (a daemon that does not trust the user ignores most of them); nil
// when there are none.
func (s *Settings) DaemonOverrides() map[string]string {
	if len(s.Overrides) == 0 {
		return nil
	}
	return maps.Clone(s.Overrides)
}
