package sched

import (
	"errors"
	"io/fs"
	"reflect"
	"strings"
	"testing"
)

const testSystem = "TEST_ARCH-TEST_OS"

// validMachinesFile is 2.8's src/libstore/tests/test-data/machines.valid,
// re-typed: three machines, the last with every column.
const validMachinesFile = "nix@scratchy.labs.cs.uu.nl  i686-linux      /home/nix/.ssh/id_scratchy_auto        8 1 kvm\n" +
	"nix@itchy.labs.cs.uu.nl     i686-linux      /home/nix/.ssh/id_scratchy_auto        8 2\n" +
	"nix@poochie.labs.cs.uu.nl   i686-linux      /home/nix/.ssh/id_scratchy_auto        1 2 kvm benchmark c3NoLXJzYSBBQUFBQjNOemFDMXljMkVBQUFBREFRQUJBQUFDQVFDWWV5R1laNTNzd1VjMUZNSHBWL1BCcXlKaFR5S1JoRkpWWVRpRHlQN2h5c1JGa0w4VDlLOGdhL2Y2L3c3QjN2SjNHSFRIUFkybENiUEdZbGNLd2h6M2ZRbFNNOEViNi95b3ZLajdvM1FsMEx5Y0dzdGJvRmcwWkZKNldncUxsR0ltS0NobUlxOGZ3TW5ZTWUxbnRQeTBUZFZjSU1tOTV3YzF3SjBMd2c3cEVMRmtHazdkeTVvYnM4a3lGZ0pORDVRSmFwQWJjeWp4Z1QzdzdMcktNZ2xzeWhhd01JNVpkMGZsQTVudW5OZ3pid3plYVhLaUsyTW0vdGJXYTU1YTd4QmNYdHpIZGlPSWdSajJlRWxaMGh5bk10YjBmcklsdmxIcEtLaVFaZ3pQdCtIVXQ2bXpRMkRVME52MGYyYnNSU0krOGpJU2pQcmdlcVVHRldMUzVIUTg2N2xSMlpiaWtyclhZNTdqbVFEZk5DRHY1VFBHZU9UekFEd2pjMDc2aFZ3VFJCd3VTZFhtaWNxTS95b3lrWitkV1dnZ25MenE5QU1tdlNZcDhmZkZDcS9CSDBZNUFXWTFHay9vS3hMVTNaOWt3ZDd2UWNFQWFCQ2dxdnVZRGdTaHE1RlhndDM3OVZESWtEL05ZSTg2QXVvajVDRmVNTzlRM2pJSlRadlh6c1VldjVoSnA2djcxSVh5ODVtbTY5R20zcXdicVE1SjVQZDU1Um56SitpaW5BNjZxTEFSc0Y4amNsSnd5ekFXclBoYU9DRVY2bjVMeVhVazhzMW9EVVR4V1pWN25rVkFTbHJ0MllGcjN5dzdjRTRXQVhsemhHcDhocmdLMVVkMUlyeDVnZWRaSnBWcy9uNWVybmJFMUxmb2x5UHUvRUFIWlh6VGd4dHVDUFNobXc9PQo=\n"

// testFiles is the file system @includes read in these tests.
var testFiles = map[string]string{
	"/machines.valid":      validMachinesFile,
	"/machines.bad_format": "nix@scratchy.labs.cs.uu.nl - - eight\n",
	"/dev/null":            "",
	"/nested":              "a.example x86_64-linux\n@/machines.valid\n@/missing\n",
	"/loop":                "@/loop\n",
}

func testReadFile(path string) ([]byte, error) {
	if s, ok := testFiles[path]; ok {
		return []byte(s), nil
	}
	return nil, &fs.PathError{Op: "open", Path: path, Err: fs.ErrNotExist}
}

func testParse(spec string) ([]Machine, error) {
	return ParseMachines(spec, ParseOptions{ThisSystem: testSystem, ReadFile: testReadFile})
}

func defaultMachine(uri string) Machine {
	return Machine{URI: uri, Systems: []string{testSystem}, MaxJobs: 1, SpeedFactor: 1}
}

func TestParseMachines(t *testing.T) {
	complete := Machine{
		URI: "ssh://nix@scratchy.labs.cs.uu.nl", Systems: []string{"i686-linux"},
		SSHKey: "/home/nix/.ssh/id_scratchy_auto", MaxJobs: 8, SpeedFactor: 3,
		SupportedFeatures: []string{"kvm"}, MandatoryFeatures: []string{"benchmark"},
		PublicHostKey: "SSH+HOST+PUBLIC+KEY+BASE64+ENCODED==",
	}
	tests := []struct {
		name string
		spec string
		want []Machine
	}{
		// The cases of 2.8 src/libstore/tests/machines.cc.
		{"EmptyBuilders", "", []Machine{}},
		{"UriOnly", "nix@scratchy.labs.cs.uu.nl", []Machine{defaultMachine("ssh://nix@scratchy.labs.cs.uu.nl")}},
		{"Defaults", "nix@scratchy.labs.cs.uu.nl - - - - - - -", []Machine{defaultMachine("ssh://nix@scratchy.labs.cs.uu.nl")}},
		{"NewLineSeparator", "nix@scratchy.labs.cs.uu.nl\nnix@itchy.labs.cs.uu.nl",
			[]Machine{defaultMachine("ssh://nix@scratchy.labs.cs.uu.nl"), defaultMachine("ssh://nix@itchy.labs.cs.uu.nl")}},
		{"SemicolonSeparator", "nix@scratchy.labs.cs.uu.nl ; nix@itchy.labs.cs.uu.nl",
			[]Machine{defaultMachine("ssh://nix@scratchy.labs.cs.uu.nl"), defaultMachine("ssh://nix@itchy.labs.cs.uu.nl")}},
		{"CompleteSingleBuilder", "nix@scratchy.labs.cs.uu.nl     i686-linux      /home/nix/.ssh/id_scratchy_auto        8 3 kvm benchmark SSH+HOST+PUBLIC+KEY+BASE64+ENCODED==",
			[]Machine{complete}},
		{"TabColumnDelimiter", "nix@scratchy.labs.cs.uu.nl\ti686-linux\t/home/nix/.ssh/id_scratchy_auto\t8\t3\tkvm\tbenchmark\tSSH+HOST+PUBLIC+KEY+BASE64+ENCODED==",
			[]Machine{complete}},
		{"MultiOptions", "nix@scratchy.labs.cs.uu.nl Arch1,Arch2 - - - SupportedFeature1,SupportedFeature2 MandatoryFeature1,MandatoryFeature2",
			[]Machine{{URI: "ssh://nix@scratchy.labs.cs.uu.nl", Systems: []string{"Arch1", "Arch2"}, MaxJobs: 1, SpeedFactor: 1,
				SupportedFeatures: []string{"SupportedFeature1", "SupportedFeature2"},
				MandatoryFeatures: []string{"MandatoryFeature1", "MandatoryFeature2"}}}},
		{"EmptyFile", "@/dev/null", []Machine{}},
		{"MissingFile", "@/not/a/file", []Machine{}},

		// Behaviour of the real 2.8 binary, checked with nix-build --builders.
		{"Comment", "a # b c d", []Machine{defaultMachine("ssh://a")}},
		{"CommentCutsOnlyItsPiece", "a #x;b", []Machine{defaultMachine("ssh://a"), defaultMachine("ssh://b")}},
		{"UntrimmedAtIsAMachine", "a #x;  @/nonexist",
			[]Machine{defaultMachine("ssh://a"), defaultMachine("@/nonexist")}},
		{"IncludePathTrimmed", "@ /dev/null \t", []Machine{}},
		{"PlusSign", "a - - +4 0", []Machine{{URI: "ssh://a", Systems: []string{testSystem}, MaxJobs: 4, SpeedFactor: 1}}},
		{"SpeedZeroIsOne", "a - - 0 0", []Machine{{URI: "ssh://a", Systems: []string{testSystem}, MaxJobs: 0, SpeedFactor: 1}}},
		{"Base64StopsAtPad", "a - - 4 1 - - QUJD=_", []Machine{{URI: "ssh://a", Systems: []string{testSystem}, MaxJobs: 4, SpeedFactor: 1, PublicHostKey: "QUJD=_"}}},
		{"DuplicateSystemsKept", "a x,y,x,,", []Machine{{URI: "ssh://a", Systems: []string{"x", "y", "x"}, MaxJobs: 1, SpeedFactor: 1}}},
		{"FeaturesAreSets", "a - - - - b,a,b c,c", []Machine{{URI: "ssh://a", Systems: []string{testSystem}, MaxJobs: 1, SpeedFactor: 1,
			SupportedFeatures: []string{"a", "b"}, MandatoryFeatures: []string{"c"}}}},
		{"SystemsOnlyCommas", "a ,, - 2", []Machine{{URI: "ssh://a", Systems: []string{}, MaxJobs: 2, SpeedFactor: 1}}},
		{"ExtraColumnsIgnored", "a - - - - - - - extra", []Machine{defaultMachine("ssh://a")}},
		{"TrailingSeparators", ";\n;a;\n", []Machine{defaultMachine("ssh://a")}},
		{"SchemeKept", "ssh-ng://b", []Machine{defaultMachine("ssh-ng://b")}},
		{"SpecialWordsKept", "local;daemon;auto;local?root=/x;?x=1;/some/path",
			[]Machine{defaultMachine("local"), defaultMachine("daemon"), defaultMachine("auto"), defaultMachine("local?root=/x"), defaultMachine("?x=1"), defaultMachine("/some/path")}},
		{"Nested", "@/nested", nil}, // filled below
	}
	valid, err := testParse("@/machines.valid")
	if err != nil {
		t.Fatal(err)
	}
	tests[len(tests)-1].want = append([]Machine{{URI: "ssh://a.example", Systems: []string{"x86_64-linux"}, MaxJobs: 1, SpeedFactor: 1}}, valid...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := testParse(tt.spec)
			if err != nil {
				t.Fatalf("ParseMachines(%q): %v", tt.spec, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseMachines(%q)\n got %+v\nwant %+v", tt.spec, got, tt.want)
			}
		})
	}
}

func TestParseMachinesValidFile(t *testing.T) {
	got, err := testParse("@/machines.valid")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("got %d machines, want 3", len(got))
	}
	for i, uri := range []string{"ssh://nix@scratchy.labs.cs.uu.nl", "ssh://nix@itchy.labs.cs.uu.nl", "ssh://nix@poochie.labs.cs.uu.nl"} {
		if got[i].URI != uri {
			t.Errorf("machine %d: URI %q, want %q", i, got[i].URI, uri)
		}
	}
	if p := got[2]; p.MaxJobs != 1 || p.SpeedFactor != 2 || !strings.HasPrefix(p.PublicHostKey, "c3NoLXJzYSBB") ||
		!reflect.DeepEqual(p.MandatoryFeatures, []string{"benchmark"}) {
		t.Errorf("poochie parsed as %+v", p)
	}
}

func TestParseMachinesErrors(t *testing.T) {
	tests := []struct {
		name string
		spec string
		want string // the whole message, as Nix 2.8 prints it after "error: "
	}{
		// 2.8 src/libstore/tests/machines.cc getMachinesWithIncorrectFormat.
		{"MaxJobsWord", "nix@scratchy.labs.cs.uu.nl - - eight",
			"bad machine specification: failed to convert column #3 in a row: 'nix@scratchy.labs.cs.uu.nl - - eight' to 'unsigned int'"},
		{"MaxJobsNegative", "nix@scratchy.labs.cs.uu.nl - - -1",
			"bad machine specification: failed to convert column #3 in a row: 'nix@scratchy.labs.cs.uu.nl - - -1' to 'unsigned int'"},
		{"SpeedWord", "nix@scratchy.labs.cs.uu.nl - - 8 three",
			"bad machine specification: failed to convert column #4 in a row: 'nix@scratchy.labs.cs.uu.nl - - 8 three' to 'unsigned int'"},
		{"SpeedNegative", "nix@scratchy.labs.cs.uu.nl - - 8 -3",
			"bad machine specification: failed to convert column #4 in a row: 'nix@scratchy.labs.cs.uu.nl - - 8 -3' to 'unsigned int'"},
		{"BadBase64", "nix@scratchy.labs.cs.uu.nl - - 8 3 - - BAD_BASE64",
			"bad machine specification: a column #7 in a row: 'nix@scratchy.labs.cs.uu.nl - - 8 3 - - BAD_BASE64' is not valid base64 string: error: invalid character in Base64 string: '_'"},
		{"FileWithBadFormat", "@/machines.bad_format",
			"bad machine specification: failed to convert column #3 in a row: 'nix@scratchy.labs.cs.uu.nl - - eight' to 'unsigned int'"},
		// Checked against the real 2.8 binary.
		{"BlankPiece", "a.example ;  ",
			"bad machine specification: store URL was not found at the first column of a row: '  '"},
		{"IndentedComment", "a.example\n  # comment\n",
			"bad machine specification: store URL was not found at the first column of a row: '  '"},
		{"Overflow", "a - - 4294967296",
			"bad machine specification: failed to convert column #3 in a row: 'a - - 4294967296' to 'unsigned int'"},
		{"PlusOnly", "a - - +",
			"bad machine specification: failed to convert column #3 in a row: 'a - - +' to 'unsigned int'"},
		{"Hex", "a - - 0x10",
			"bad machine specification: failed to convert column #3 in a row: 'a - - 0x10' to 'unsigned int'"},
		{"DashURI", "- x86_64-linux",
			"bad machine specification: store URL was not found at the first column of a row: '- x86_64-linux'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := testParse(tt.spec)
			if err == nil {
				t.Fatalf("ParseMachines(%q) succeeded", tt.spec)
			}
			if !errors.Is(err, ErrBadMachine) {
				t.Errorf("error %v does not wrap ErrBadMachine", err)
			}
			if err.Error() != tt.want {
				t.Errorf("error\n got %s\nwant %s", err, tt.want)
			}
		})
	}
	if _, err := testParse("@/loop"); !errors.Is(err, ErrIncludeDepth) {
		t.Errorf("self-include: got %v, want ErrIncludeDepth", err)
	}
	readErr := errors.New("permission denied")
	_, err := ParseMachines("@/x", ParseOptions{ReadFile: func(string) ([]byte, error) { return nil, readErr }})
	if !errors.Is(err, readErr) {
		t.Errorf("unreadable include: got %v, want the read error", err)
	}
}

func TestParseMachinesDefaultSystem(t *testing.T) {
	got, err := ParseMachines("a", ParseOptions{})
	if err != nil || len(got) != 1 || got[0].Systems[0] != "x86_64-linux" {
		t.Fatalf("got %+v, %v", got, err)
	}
}

func FuzzParseMachines(f *testing.F) {
	f.Add("nix@scratchy.labs.cs.uu.nl i686-linux /k 8 3 kvm benchmark SSH+HOST==")
	f.Add(validMachinesFile)
	f.Add("a #x;  @/nonexist\n@/nested")
	f.Add("a - - +4 0 - - QUJD=_")
	f.Add("a - - 4294967296")
	f.Fuzz(func(t *testing.T, spec string) {
		ms, err := testParse(spec)
		if err != nil {
			if !errors.Is(err, ErrBadMachine) && !errors.Is(err, ErrIncludeDepth) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		for _, m := range ms {
			// Systems may be empty: "," is a set column naming no system
			// (such a machine builds only "builtin"), as in Nix.
			if m.URI == "" || m.URI == "-" || m.SpeedFactor == 0 {
				t.Fatalf("bad machine %+v from %q", m, spec)
			}
			for _, s := range m.Systems {
				if s == "" || strings.ContainsAny(s, ", \t\n\r;#") {
					t.Fatalf("bad system %q from %q", s, spec)
				}
			}
			for _, fs := range [][]string{m.SupportedFeatures, m.MandatoryFeatures} {
				if _, err := NewPlatform("x", fs...); err != nil {
					t.Fatalf("features %q do not make a platform: %v", fs, err)
				}
				for i := 1; i < len(fs); i++ {
					if fs[i-1] >= fs[i] {
						t.Fatalf("features not a sorted set: %q", fs)
					}
				}
			}
		}
	})
}
