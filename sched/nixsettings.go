package sched

import (
	"fmt"
	"slices"
	"strings"
)

// CheckSetting checks value for a setting as 2.8's Setting::set does; it
// returns a warning to print, or an error.
func CheckSetting(name string, kind SettingKind, value string) (string, error) {
	switch kind {
	case SettingBool:
		switch value {
		case "true", "yes", "1", "false", "no", "0":
			return "", nil
		}
		return "", fmt.Errorf("Boolean setting '%s' has invalid value '%s'", name, value)
	case SettingSandbox:
		switch value {
		case "true", "false", "relaxed":
			return "", nil
		}
		return "", fmt.Errorf("option '%s' has invalid value '%s'", name, value)
	case SettingUint, SettingInt:
		if !isInteger(value, kind == SettingInt) {
			return "", fmt.Errorf("setting '%s' has invalid value '%s'", name, value)
		}
	case SettingMaxJobs:
		if value != "auto" && !isInteger(value, false) {
			return "", fmt.Errorf("configuration setting '%s' should be 'auto' or an integer", name)
		}
	case SettingFeatures:
		for _, f := range strings.Fields(value) {
			if !slices.Contains(experimentalFeatures, f) {
				return fmt.Sprintf("unknown experimental feature '%s'", f), nil
			}
		}
	}
	return "", nil
}

// CheckUnitInt checks a number with an optional K, M, G or T suffix
// (2.8 util.hh string2IntWithUnitPrefix, for --cores, --timeout and
// --max-silent-time), with Nix's messages.
func CheckUnitInt(s string) error {
	if s != "" {
		if u := s[len(s)-1]; isASCIILetter(u) {
			u &^= 0x20 // upper case
			if !strings.ContainsRune("KMGT", rune(u)) {
				return fmt.Errorf("invalid unit specifier '%c'", u)
			}
			s = s[:len(s)-1]
		}
	}
	if !isInteger(s, false) {
		return fmt.Errorf("'%s' is not an integer", s)
	}
	return nil
}

// experimentalFeatures are 2.8's (src/libutil/experimental-features.cc).
var experimentalFeatures = []string{"ca-derivations", "impure-derivations", "flakes", "nix-command", "recursive-nix", "no-url-literals", "fetch-closure"}

func isInteger(s string, signed bool) bool {
	if signed {
		s = strings.TrimPrefix(s, "-")
	}
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// SettingKind is the type of a Nix setting's value, which decides how
// its values are checked and whether extra- appends to it.
type SettingKind int

const (
	SettingBool SettingKind = iota
	SettingUint
	SettingInt
	SettingString
	SettingList
	SettingMap
	SettingSandbox
	SettingMaxJobs
	SettingFeatures
)

type Setting struct {
	Name    string
	Kind    SettingKind
	Aliases string // space-separated old names; --option and nix.conf take them, flags do not
}

// Appendable reports whether "extra-NAME" appends to the setting.
func (s Setting) Appendable() bool {
	return s.Kind == SettingList || s.Kind == SettingMap || s.Kind == SettingFeatures
}

// LookupSetting finds Nix 2.8's setting called name, or, with aliases,
// the one that has name as an old alias.
func LookupSetting(name string, aliases bool) (Setting, bool) {
	for _, s := range nixSettings {
		if s.Name == name || aliases && slices.Contains(strings.Fields(s.Aliases), name) {
			return s, true
		}
	}
	return Setting{}, false
}

// nixSettings are Nix 2.8.0's settings as `nix show-config --json` lists
// them with Debian's nix-bin 2.8.0 (the kind from each value's type and
// globals.hh), each a flag of every legacy command.
var nixSettings = []Setting{
	{"accept-flake-config", SettingBool, ""},
	{"access-tokens", SettingMap, ""},
	{"allow-dirty", SettingBool, ""},
	{"allow-import-from-derivation", SettingBool, ""},
	{"allow-new-privileges", SettingBool, ""},
	{"allow-symlinked-store", SettingBool, ""},
	{"allow-unsafe-native-code-during-evaluation", SettingBool, ""},
	{"allowed-impure-host-deps", SettingList, ""},
	{"allowed-uris", SettingList, ""},
	{"allowed-users", SettingList, ""},
	{"auto-optimise-store", SettingBool, ""},
	{"bash-prompt", SettingString, ""},
	{"bash-prompt-suffix", SettingString, ""},
	{"build-hook", SettingString, ""},
	{"build-poll-interval", SettingUint, ""},
	{"build-users-group", SettingString, ""},
	{"builders", SettingString, ""},
	{"builders-use-substitutes", SettingBool, ""},
	{"commit-lockfile-summary", SettingString, ""},
	{"compress-build-log", SettingBool, "build-compress-log"},
	{"connect-timeout", SettingUint, ""},
	{"cores", SettingUint, "build-cores"},
	{"diff-hook", SettingString, ""},
	{"download-attempts", SettingUint, ""},
	{"enforce-determinism", SettingBool, ""},
	{"eval-cache", SettingBool, ""},
	{"experimental-features", SettingFeatures, ""},
	{"extra-platforms", SettingList, ""},
	{"fallback", SettingBool, "build-fallback"},
	{"filter-syscalls", SettingBool, ""},
	{"flake-registry", SettingString, ""},
	{"fsync-metadata", SettingBool, ""},
	{"gc-reserved-space", SettingInt, ""},
	{"hashed-mirrors", SettingList, ""},
	{"http-connections", SettingUint, "binary-caches-parallel-connections"},
	{"http2", SettingBool, ""},
	{"ignored-acls", SettingList, ""},
	{"impersonate-linux-26", SettingBool, "build-impersonate-linux-26"},
	{"keep-build-log", SettingBool, "build-keep-log"},
	{"keep-derivations", SettingBool, "gc-keep-derivations"},
	{"keep-env-derivations", SettingBool, "env-keep-derivations"},
	{"keep-failed", SettingBool, ""},
	{"keep-going", SettingBool, ""},
	{"keep-outputs", SettingBool, "gc-keep-outputs"},
	{"log-lines", SettingUint, ""},
	{"max-build-log-size", SettingUint, "build-max-log-size"},
	{"max-free", SettingUint, ""},
	{"max-jobs", SettingMaxJobs, "build-max-jobs"},
	{"max-silent-time", SettingInt, "build-max-silent-time"},
	{"min-free", SettingUint, ""},
	{"min-free-check-interval", SettingUint, ""},
	{"nar-buffer-size", SettingUint, ""},
	{"narinfo-cache-negative-ttl", SettingUint, ""},
	{"narinfo-cache-positive-ttl", SettingUint, ""},
	{"netrc-file", SettingString, ""},
	{"nix-path", SettingList, ""},
	{"plugin-files", SettingList, ""},
	{"post-build-hook", SettingString, ""},
	{"pre-build-hook", SettingString, ""},
	{"preallocate-contents", SettingBool, ""},
	{"print-missing", SettingBool, ""},
	{"pure-eval", SettingBool, ""},
	{"repeat", SettingUint, "build-repeat"},
	{"require-sigs", SettingBool, ""},
	{"restrict-eval", SettingBool, ""},
	{"run-diff-hook", SettingBool, ""},
	{"sandbox", SettingSandbox, "build-use-chroot build-use-sandbox"},
	{"sandbox-build-dir", SettingString, ""},
	{"sandbox-dev-shm-size", SettingString, ""},
	{"sandbox-fallback", SettingBool, ""},
	{"sandbox-paths", SettingList, "build-chroot-dirs build-sandbox-paths"},
	{"secret-key-files", SettingList, ""},
	{"show-trace", SettingBool, ""},
	{"stalled-download-timeout", SettingUint, ""},
	{"store", SettingString, ""},
	{"substitute", SettingBool, "build-use-substitutes"},
	{"substituters", SettingList, "binary-caches"},
	{"sync-before-registering", SettingBool, ""},
	{"system", SettingString, ""},
	{"system-features", SettingList, ""},
	{"tarball-ttl", SettingUint, ""},
	{"timeout", SettingInt, "build-timeout"},
	{"trace-function-calls", SettingBool, ""},
	{"trusted-public-keys", SettingList, "binary-cache-public-keys"},
	{"trusted-substituters", SettingList, "trusted-binary-caches"},
	{"trusted-users", SettingList, ""},
	{"use-case-hack", SettingBool, ""},
	{"use-registries", SettingBool, ""},
	{"use-sqlite-wal", SettingBool, ""},
	{"user-agent-suffix", SettingString, ""},
	{"warn-dirty", SettingBool, ""},
}
