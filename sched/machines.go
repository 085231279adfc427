package sched

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
)

// ErrBadMachine is wrapped by every machines-specification error. Its text
// is the prefix Nix 2.8 puts on the same errors.
var ErrBadMachine = errors.New("bad machine specification")

// ErrIncludeDepth is returned when "@file" includes nest deeper than
// ParseOptions.MaxIncludeDepth (Nix 2.8 recurses until its stack overflows).
var ErrIncludeDepth = errors.New("sched: machines file includes nested too deeply")

// Machine is one builder: a line of a machines file, or the local daemon
// (Local set, made by LocalMachine). Field names follow Nix's Machine
// [2.8 src/libstore/machines.hh].
type Machine struct {
	// URI is the store URI; a schemeless host ("user@host") has had
	// "ssh://" prepended, as Nix does.
	URI string
	// Systems the machine builds for, in file order (duplicates kept, as
	// Nix keeps them).
	Systems []string
	// SSHKey is the identity file for ssh:// and ssh-ng:// URIs, or "".
	SSHKey string
	// MaxJobs is the number of builds it runs at once (0: none).
	MaxJobs uint
	// SpeedFactor is its relative speed, at least 1 (Nix 2.8: an unsigned
	// integer, 0 read as 1).
	SpeedFactor uint
	// SupportedFeatures and MandatoryFeatures are sorted sets.
	SupportedFeatures []string
	MandatoryFeatures []string
	// PublicHostKey is the base64 of the host's public key line, or "".
	PublicHostKey string
	// Local marks the machine that stands for the local nix-daemon.
	Local bool
}

// Name is how messages refer to the machine: its URI, or "local".
func (m *Machine) Name() string {
	if m.Local {
		return "local"
	}
	return m.URI
}

// ParseOptions configures ParseMachines. The zero value reads include files
// with os.ReadFile and uses "x86_64-linux" as the default system.
type ParseOptions struct {
	// ThisSystem is the system of a machine whose systems column is
	// missing or "-" (Nix: the `system` setting). Default "x86_64-linux".
	ThisSystem string
	// ReadFile reads an "@file" include. A returned error that wraps
	// fs.ErrNotExist makes the include empty, as in Nix; others fail the
	// parse. Default os.ReadFile.
	ReadFile func(path string) ([]byte, error)
	// MaxIncludeDepth bounds "@file" nesting. Default 32.
	MaxIncludeDepth int
}

// ParseMachines parses the value of Nix's `builders` setting (an inline
// specification, or "@/etc/nix/machines", or a mix) exactly as Nix 2.8
// does [2.8 src/libstore/machines.cc expandBuilderLines, parseBuilderLine]:
//
//   - The text is split at every '\n' and ';' (empty pieces dropped); each
//     piece is cut at its first '#'. 2.8 does not trim pieces (its trim()
//     result is discarded), so a piece of only blanks is an error, and
//     " @file" (with a leading blank) is a machine named "@file", not an
//     include.
//   - "@path" includes the file at the trimmed path, recursively; a missing
//     file is ignored.
//   - Columns are separated by blanks; "-" or a missing column means the
//     default: URI, systems (comma-separated, default ThisSystem), SSH
//     key, max jobs (default 1), speed factor (default 1, 0 read as 1),
//     supported features, mandatory features (comma-separated sets), and
//     the base64 public host key.
//
// Errors wrap ErrBadMachine and are worded as Nix words them.
func ParseMachines(spec string, opts ParseOptions) ([]Machine, error) {
	if opts.ThisSystem == "" {
		opts.ThisSystem = "x86_64-linux"
	}
	if opts.ReadFile == nil {
		opts.ReadFile = os.ReadFile
	}
	if opts.MaxIncludeDepth <= 0 {
		opts.MaxIncludeDepth = 32
	}
	var lines []string
	if err := expandBuilderLines(spec, &opts, 0, &lines); err != nil {
		return nil, err
	}
	machines := make([]Machine, 0, len(lines))
	for _, line := range lines {
		m, err := parseBuilderLine(line, opts.ThisSystem)
		if err != nil {
			return nil, err
		}
		machines = append(machines, m)
	}
	return machines, nil
}

func expandBuilderLines(spec string, opts *ParseOptions, depth int, out *[]string) error {
	if depth > opts.MaxIncludeDepth {
		return ErrIncludeDepth
	}
	for _, line := range tokenize(spec, "\n;") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		if line == "" {
			continue
		}
		if line[0] != '@' {
			*out = append(*out, line)
			continue
		}
		path := strings.Trim(line[1:], " \n\r\t")
		text, err := opts.ReadFile(path)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return fmt.Errorf("sched: reading machines file %q: %w", path, err)
		}
		if err := expandBuilderLines(string(text), opts, depth+1, out); err != nil {
			return err
		}
	}
	return nil
}

func parseBuilderLine(line, thisSystem string) (Machine, error) {
	tokens := tokenize(line, " \t\n\r")
	isSet := func(i int) bool {
		return len(tokens) > i && tokens[i] != "" && tokens[i] != "-"
	}
	if !isSet(0) {
		return Machine{}, fmt.Errorf("%w: store URL was not found at the first column of a row: '%s'", ErrBadMachine, line)
	}
	m := Machine{URI: machineURI(tokens[0]), MaxJobs: 1, SpeedFactor: 1}
	if isSet(1) {
		m.Systems = tokenize(tokens[1], ",")
	} else {
		m.Systems = []string{thisSystem}
	}
	if isSet(2) {
		m.SSHKey = tokens[2]
	}
	for i, dst := range []*uint{3: &m.MaxJobs, 4: &m.SpeedFactor} {
		if dst == nil || !isSet(i) {
			continue
		}
		n, ok := parseUnsigned(tokens[i])
		if !ok {
			return Machine{}, fmt.Errorf("%w: failed to convert column #%d in a row: '%s' to 'unsigned int'", ErrBadMachine, i, line)
		}
		*dst = n
	}
	if m.SpeedFactor == 0 {
		m.SpeedFactor = 1
	}
	if isSet(5) {
		m.SupportedFeatures = sortedSet(tokenize(tokens[5], ","))
	}
	if isSet(6) {
		m.MandatoryFeatures = sortedSet(tokenize(tokens[6], ","))
	}
	if isSet(7) {
		if c, ok := checkBase64(tokens[7]); !ok {
			return Machine{}, fmt.Errorf("%w: a column #7 in a row: '%s' is not valid base64 string: error: invalid character in Base64 string: '%c'", ErrBadMachine, line, c)
		}
		m.PublicHostKey = tokens[7]
	}
	return m, nil
}

// machineURI prepends "ssh://" to a schemeless host, as the Machine
// constructor does [2.8 src/libstore/machines.cc Machine::Machine].
func machineURI(s string) string {
	if strings.Contains(s, "://") || strings.Contains(s, "/") ||
		s == "auto" || s == "daemon" || s == "local" ||
		strings.HasPrefix(s, "auto?") || strings.HasPrefix(s, "daemon?") ||
		strings.HasPrefix(s, "local?") || strings.HasPrefix(s, "?") {
		return s
	}
	return "ssh://" + s
}

// tokenize splits s at any byte of seps, dropping empty tokens, like Nix's
// tokenizeString [2.8 src/libutil/util.cc].
func tokenize(s, seps string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return strings.ContainsRune(seps, r) })
}

// parseUnsigned mirrors string2Int<unsigned int> [2.8 src/libutil/util.hh]:
// no leading '-', then boost::lexical_cast, which takes an optional '+'
// and decimal digits that fit 32 bits.
func parseUnsigned(s string) (uint, bool) {
	s = strings.TrimPrefix(s, "+")
	if s == "" || s[0] < '0' || s[0] > '9' {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, false
	}
	return uint(n), true
}

// checkBase64 mirrors 2.8's lenient base64Decode [src/libutil/util.cc]:
// decoding stops at the first '=', newlines are skipped, and any other
// byte outside the alphabet is an error. It returns the offending byte.
func checkBase64(s string) (byte, bool) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '=':
			return 0, true
		case c == '\n', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '+', c == '/':
		default:
			return c, false
		}
	}
	return 0, true
}
