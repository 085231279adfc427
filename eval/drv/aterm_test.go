package drv

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/nbuild/nbuild/store"
)

const (
	outPath = "/nix/store/6fpsx5wb2pxm5zxl9671lmqzry2llqaq-ia-simple"
	inDrv   = "/nix/store/z6vaqjzj9mpicympmc4f01miam897myr-ia-simple.drv"
	inSrc   = "/nix/store/6yay9dzxlynd4bj64c38awbbr0ay74gw-kinds-builder.sh"
	sha256a = "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"
)

// drvText builds a small derivation from its pieces, in ATerm syntax.
func drvText(outputs, inputs, srcs, platform, builder, args, env string) string {
	return "Derive([" + outputs + "],[" + inputs + "],[" + srcs + "]," + platform + "," + builder + ",[" + args + "],[" + env + "])"
}

var goodText = drvText(`("out","`+outPath+`","","")`, `("`+inDrv+`",["out"])`, `"`+inSrc+`"`,
	`"x86_64-linux"`, `"/bin/sh"`, `"-e","a\tb"`, `("name","x"),("out","`+outPath+`")`)

func TestParseGood(t *testing.T) {
	d, err := Parse([]byte(goodText))
	if err != nil {
		t.Fatal(err)
	}
	if d.Args[1] != "a\tb" || d.Platform != "x86_64-linux" || d.InputDrvs[0].Outputs[0] != "out" {
		t.Errorf("parsed %+v", d)
	}
	if got := string(d.AppendATerm(nil)); got != goodText {
		t.Errorf("round trip:\n got %s\nwant %s", got, goodText)
	}
}

// TestEscapes: only the five characters printString escapes are escaped,
// only in builder, args and env; every other byte (control, DEL, non-ASCII,
// invalid UTF-8) is written raw; the platform is never escaped.
func TestEscapes(t *testing.T) {
	weird := "\" \\ \n \r \t \x00\x01\x1b\x7f é \xff\xfe"
	d := &Derivation{
		Outputs:  []Output{{Name: "out", Path: store.MustParsePath(outPath)}},
		Platform: "x86_64-linux\x01é",
		Builder:  weird,
		Args:     []string{weird, ""},
		Env:      []EnvVar{{Key: weird, Value: weird}},
	}
	esc := `"\" \\ \n \r \t ` + "\x00\x01\x1b\x7f é \xff\xfe" + `"`
	want := drvText(`("out","`+outPath+`","","")`, "", "", "\"x86_64-linux\x01é\"", esc, esc+`,""`, "("+esc+","+esc+")")
	got := d.AppendATerm(nil)
	if string(got) != want {
		t.Fatalf("AppendATerm:\n got %q\nwant %q", got, want)
	}
	back, err := Parse(got)
	if err != nil {
		t.Fatal(err)
	}
	if back.Builder != weird || back.Args[0] != weird || back.Env[0].Key != weird || back.Platform != d.Platform {
		t.Errorf("parsed back %q", back)
	}
}

// TestParseErrors: every malformed input gives a *ParseError wrapping
// ErrSyntax at the offset of the fault.
func TestParseErrors(t *testing.T) {
	out := `("out","` + outPath + `","","")`
	env := `("name","x")`
	fod := func(algo, hash string) string {
		return drvText(`("out","`+outPath+`","`+algo+`","`+hash+`")`, "", "", `"s"`, `"b"`, "", env)
	}
	tests := []struct {
		name string
		in   string
		at   string // the error's offset is the first index of at in in; "" = end of input
		msg  string
	}{
		{"empty", "", "", "end of input"},
		{"not a derivation", "Derivation(", "Derivation(", `expected "Derive(["`},
		{"dynamic derivation", `DrvWithVersion("xp-dyn-drv",[])`, "DrvWithVersion", "not supported"},
		{"truncated in string", goodText[:40], `"/nix`, "unterminated string"},
		{"truncated after list", "Derive([" + out, "", "end of input"},
		{"truncated before env", strings.TrimSuffix(drvText(out, "", "", `"s"`, `"b"`, "", env), env+"])"), "", "end of input"},
		{"missing env", "Derive([" + out + `],[],[],"s","b",[]END`, "END", `expected ",["`},
		{"missing platform", "Derive([" + out + `],[],[],"b",[],[])`, `[],[])`, "expected a string"},
		{"trailing data", goodText + "\n", "\n", "trailing data"},
		{"bad escape", drvText(out, "", "", `"s"`, `"a\qb"`, "", env), `\q`, `invalid escape sequence \q`},
		{"escape at end", `Derive([("out","` + outPath + `","","")],[],[],"s","\`, `"\`, "unterminated string"},
		{"raw newline", drvText(out, "", "", `"s"`, "\"a\nb\"", "", env), "\n", "raw control character"},
		{"raw tab in env", drvText(out, "", "", `"s"`, `"b"`, "", "(\"k\",\"\t\")"), "\t", "raw control character"},
		{"escape in platform", drvText(out, "", "", `"x\"y"`, `"b"`, "", env), `\"y`, "escape sequence in a field"},
		{"unknown hash algo", fod("sha3", sha256a), `"sha3"`, `unknown hash algorithm "sha3"`},
		{"unknown recursive algo", fod("r:blake3", sha256a), `"r:blake3"`, `unknown hash algorithm "blake3"`},
		{"hash wrong length", fod("sha256", sha256a[:63]), `"` + sha256a[:63], "wrong length"},
		{"hash not hex", fod("sha256", "x"+sha256a[1:]), `"x` + sha256a[1:], "invalid base16"},
		{"hash bad base32", fod("sha1", "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"), `"eeee`, "base32"},
		{"text with sha1", fod("text:sha1", "da39a3ee5e6b4b0d3255bfef95601890afd80709"), `"text:sha1"`, "requires sha256"},
		{"hash without algo", drvText(`("out","`+outPath+`","","`+sha256a+`")`, "", "", `"s"`, `"b"`, "", env), `"` + sha256a, "hash without a hash algorithm"},
		{"duplicate output", drvText(out+","+out, "", "", `"s"`, `"b"`, "", env), `"out",` + `"` + outPath + `","","")]`, `duplicate output "out"`},
		{"unsorted outputs", drvText(`("out","`+outPath+`","",""),("dev","`+outPath+`","","")`, "", "", `"s"`, `"b"`, "", env), `"dev"`, "out of order"},
		{"empty output name", drvText(`("","`+outPath+`","","")`, "", "", `"s"`, `"b"`, "", env), `"",`, "empty output name"},
		{"no outputs", drvText("", "", "", `"s"`, `"b"`, "", env), "]", "at least one output"},
		{"bad output path", drvText(`("out","/tmp/x","","")`, "", "", `"s"`, `"b"`, "", env), `"/tmp/x"`, "not in /nix/store"},
		{"mixed kinds", drvText(`("dev","","",""),`+out, "", "", `"s"`, `"b"`, "", env), `("out"`, "can't mix"},
		{"two fixed outputs", drvText(`("out","`+outPath+`","sha256","`+sha256a+`"),("out2","`+outPath+`","sha256","`+sha256a+`")`, "", "", `"s"`, `"b"`, "", env), `("out2"`, "only one fixed output"},
		{"fixed output not out", drvText(`("bin","`+outPath+`","sha256","`+sha256a+`")`, "", "", `"s"`, `"b"`, "", env), `"bin"`, `named "out"`},
		{"floating with path", fod("r:sha256", ""), `"` + outPath, "floating content-addressed output with a path"},
		{"impure with path", fod("r:sha256", "impure"), `"` + outPath, "impure output with a path"},
		{"floating algos differ", drvText(`("dev","","r:sha256",""),("out","","r:sha512","")`, "", "", `"s"`, `"b"`, "", env), `"r:sha512"`, "same hash type"},
		{"duplicate input drv", drvText(out, `("`+inDrv+`",["out"]),("`+inDrv+`",["out"])`, "", `"s"`, `"b"`, "", env), `"` + inDrv + `",["out"])]`, "duplicate input derivation"},
		{"duplicate input output", drvText(out, `("`+inDrv+`",["out","out"])`, "", `"s"`, `"b"`, "", env), `"out"]`, `duplicate entry "out"`},
		{"input drv without outputs", drvText(out, `("`+inDrv+`",[])`, "", `"s"`, `"b"`, "", env), `])]`, "no outputs"},
		{"bad input drv path", drvText(out, `("/nix/store/short.drv",["out"])`, "", `"s"`, `"b"`, "", env), `"/nix/store/short`, "too short"},
		{"duplicate input src", drvText(out, "", `"`+inSrc+`","`+inSrc+`"`, `"s"`, `"b"`, "", env), `"` + inSrc + `"]`, "duplicate entry"},
		{"duplicate env", drvText(out, "", "", `"s"`, `"b"`, "", env+","+env), `"name","x")]`, `duplicate environment variable "name"`},
		{"unsorted env", drvText(out, "", "", `"s"`, `"b"`, "", `("z",""),("a","")`), `"a"`, "out of order"},
		{"stray comma", drvText(out, "", "", `"s"`, `"b"`, `"a",`, env), `],[(`, "expected a string"},
		{"missing comma", drvText(out, "", "", `"s"`, `"b"`, `"a""b"`, env), `"b"]`, "expected ',' or ']'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := len(tt.in)
			if tt.at != "" {
				want = strings.Index(tt.in, tt.at)
				if want < 0 {
					t.Fatalf("bad test: %q not in input", tt.at)
				}
			}
			checkParseError(t, []byte(tt.in), want, tt.msg)
		})
	}
}

func checkParseError(t *testing.T, in []byte, offset int, msg string) {
	t.Helper()
	d, err := Parse(in)
	if err == nil {
		t.Fatalf("Parse succeeded: %+v", d)
	}
	var pe *ParseError
	if !errors.As(err, &pe) || !errors.Is(err, ErrSyntax) {
		t.Fatalf("error %v is not a *ParseError wrapping ErrSyntax", err)
	}
	if pe.Offset != offset {
		t.Errorf("offset %d, want %d (%v)", pe.Offset, offset, err)
	}
	if !strings.Contains(err.Error(), msg) {
		t.Errorf("error %q does not say %q", err, msg)
	}
}

// TestParseEveryPrefix: no prefix of a real derivation parses, and none
// makes the parser panic.
func TestParseEveryPrefix(t *testing.T) {
	data := []byte(goodText)
	for i := range data {
		if _, err := Parse(data[:i]); err == nil {
			t.Fatalf("prefix of %d bytes parsed", i)
		}
	}
}

// TestHugeStrings: a 100 MB string is an error (unterminated) or parses,
// never a panic or a copy explosion.
func TestHugeStrings(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates 200 MB")
	}
	big := bytes.Repeat([]byte("x"), 100<<20)
	prefix := `Derive([("out","` + outPath + `","","")],[],[],"s","b",[],[("k","`

	unterminated := append([]byte(prefix), big...)
	checkParseError(t, unterminated, len(prefix)-1, "unterminated string")

	badTail := append(append([]byte(prefix), big...), `"),("a","")])`...)
	checkParseError(t, badTail, len(badTail)-len(`"a","")])`), "out of order")

	ok := append(append([]byte(prefix), big...), `")])`...)
	d, err := Parse(ok)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Env[0].Value) != len(big) {
		t.Errorf("value of %d bytes", len(d.Env[0].Value))
	}
	escaped := append(append([]byte(prefix), bytes.Repeat([]byte(`a\n`), 1<<20)...), `\q")])`...)
	checkParseError(t, escaped, len(prefix)+3<<20, `invalid escape`)
}

// TestHashSpellings: a fixed output's hash may be spelled in base16, Nix
// base32 or base64 (as 2.8 Hash::parseNonSRIUnprefixed accepts); all give
// the same output path and hash modulo.
func TestHashSpellings(t *testing.T) {
	spellings := []string{
		"72955a2f3f19f0fe5c743bf44a957f603eb6a3c4323b00588a125141bf061685",
		"72955A2F3F19F0FE5C743BF44A957F603EB6A3C4323B00588A125141BF061685",
		"118n0szl2l8ji9c00frjqjivcgk0gyalmx1vfifgxw0r7wpmm5bj",
		"cpVaLz8Z8P5cdDv0SpV/YD62o8QyOwBYihJRQb8GFoU=",
	}
	h := NewHasher(nil)
	var firstPath, firstHash string
	for _, algo := range []string{"sha256", "r:sha256", "text:sha256"} {
		firstPath = ""
		for _, s := range spellings {
			d, err := Parse([]byte(drvText(`("out","`+outPath+`","`+algo+`","`+s+`")`, "", "", `"s"`, `"b"`, "", `("name","x")`)))
			if err != nil {
				t.Fatalf("%s %s: %v", algo, s, err)
			}
			ops, err := h.OutputPaths(d)
			if err != nil {
				t.Fatal(err)
			}
			mh, err := h.Modulo(d, "x", false)
			if err != nil {
				t.Fatal(err)
			}
			if firstPath == "" {
				firstPath, firstHash = ops[0].Path.String(), mh.Hex()
			} else if ops[0].Path.String() != firstPath || mh.Hex() != firstHash {
				t.Errorf("%s %s: path %s hash %s, want %s %s", algo, s, ops[0].Path, mh.Hex(), firstPath, firstHash)
			}
		}
	}
	for _, s := range []string{"sha256-cpVaLz8Z8P5cdDv0SpV/YD62o8QyOwBYihJRQb8GFoU=", "sha256:" + spellings[0]} {
		_, err := Parse([]byte(drvText(`("out","`+outPath+`","sha256","`+s+`")`, "", "", `"s"`, `"b"`, "", "")))
		if err == nil {
			t.Errorf("prefixed hash %q accepted (Nix 2.8 rejects it in a .drv)", s)
		}
	}
}

func TestKindErrors(t *testing.T) {
	tests := []struct {
		name string
		outs []Output
	}{
		{"none", nil},
		{"mixed", []Output{{Name: "a", Path: store.MustParsePath(outPath)}, {Name: "b"}}},
		{"fixed not out", []Output{{Name: "a", Path: store.MustParsePath(outPath), HashAlgo: "sha256", Hash: sha256a}}},
		{"unknown algo", []Output{{Name: "out", HashAlgo: "crc32"}}},
	}
	for _, tt := range tests {
		d := &Derivation{Outputs: tt.outs}
		if _, err := d.Kind(); !errors.Is(err, ErrKind) {
			t.Errorf("%s: Kind() error %v", tt.name, err)
		}
	}
}

func TestStructuredAttrsErrors(t *testing.T) {
	d := &Derivation{Env: []EnvVar{{Key: "__json", Value: `{"preferLocalBuild":"yes","name":"n"}`}}}
	if _, err := d.Scheduling(); err == nil {
		t.Error("a string preferLocalBuild was accepted")
	}
	if d.Name() != "n" || d.PreferLocalBuild() || !d.AllowSubstitutes() {
		t.Error("defaults not kept for malformed attrs")
	}
	d.Env[0].Value = "{"
	if d.RequiredSystemFeatures() != nil || d.Name() != "" {
		t.Error("broken JSON gave values")
	}
}

// TestParseShared parses every fixture with one Parser's ParseShared: the
// same derivations as Parse, inputs untouched, and earlier results intact
// after later parses (they share the Parser's blocks).
func TestParseShared(t *testing.T) {
	var p Parser
	type parsed struct {
		data []byte
		d    *Derivation
	}
	var all []parsed
	files := [][]byte{[]byte(goodText)}
	for _, f := range fixtureDrvs(t) {
		files = append(files, readFixture(t, f))
	}
	for range 3 { // enough to fill several blocks
		for _, data := range files {
			in := bytes.Clone(data)
			d, err := p.ParseShared(in)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(in, data) {
				t.Fatal("ParseShared modified its input")
			}
			all = append(all, parsed{data, d})
			if _, err := p.ParseShared([]byte(`Derive([("out","/nix/store/x","",""`)); err == nil {
				t.Fatal("truncated input accepted")
			}
		}
	}
	for _, r := range all {
		want, err := Parse(r.data)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(r.d, want) {
			t.Fatalf("ParseShared result changed or differs from Parse:\n%+v\n%+v", r.d, want)
		}
		if got := r.d.AppendATerm(nil); !bytes.Equal(got, r.data) {
			t.Fatal("round trip of a shared result differs")
		}
	}
}

// TestParseSharedManyStrings parses a derivation with more strings than a
// slab holds: it grows out of the slab and stays intact.
func TestParseSharedManyStrings(t *testing.T) {
	d := &Derivation{Outputs: []Output{{Name: "out", Path: store.MustParsePath(outPath)}}, Platform: "p", Builder: "b"}
	for i := range 40000 {
		d.Args = append(d.Args, fmt.Sprint("a\n", i))
	}
	data := d.AppendATerm(nil)
	var p Parser
	got, err := p.ParseShared(data)
	if err != nil {
		t.Fatal(err)
	}
	next, err := p.ParseShared([]byte(goodText))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := Parse([]byte(goodText))
	if !reflect.DeepEqual(got, d) || !reflect.DeepEqual(next, want) {
		t.Fatal("results differ")
	}
}

// TestRecycle reuses a Parser's memory between ParseShared calls: each
// result is right until the next Recycle.
func TestRecycle(t *testing.T) {
	var p Parser
	for _, f := range fixtureDrvs(t) {
		data := readFixture(t, f)
		p.Recycle()
		d, err := p.ParseShared(data)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := Parse(data)
		if !reflect.DeepEqual(d, want) {
			t.Fatalf("%s: differs after Recycle", f)
		}
	}
}

// TestIsHex agrees with hex.DecodeString on every byte.
func TestIsHex(t *testing.T) {
	for c := 0; c < 256; c++ {
		s := "0a" + string([]byte{byte(c)}) + "F"
		_, err := hex.DecodeString(s)
		if got := isHex(s); got != (err == nil) {
			t.Errorf("isHex(%q) = %v, hex.DecodeString error %v", s, got, err)
		}
	}
}

// TestCheckStorePath: the fast check agrees with the precise one.
func TestCheckStorePath(t *testing.T) {
	good := "/nix/store/6fpsx5wb2pxm5zxl9671lmqzry2llqaq-ia-simple"
	cases := []string{good, good[:len(good)-1] + "!", "/nix/store/6fpsx5wb2pxm5zxl9671lmqzry2llqaq", "/nix/store/6fpsx5wb2pxm5zxl9671lmqzry2llqaqxia",
		"/nix/store/6fpsx5wb2pxm5zxl9671lmqzry2llqae-ia", "/nix/stor/6fpsx5wb2pxm5zxl9671lmqzry2llqaq-ia", "/nix/store/" + strings.Repeat("a", 32) + "-" + strings.Repeat("n", 211),
		"/nix/store/" + strings.Repeat("a", 32) + "-" + strings.Repeat("n", 212), "/nix/store/6fpsx5wb2pxm5zxl9671lmqzry2llqaq-a\x00b", ""}
	for c := 0; c < 256; c++ {
		cases = append(cases, good[:15]+string([]byte{byte(c)})+good[16:], good+string([]byte{byte(c)}))
	}
	for _, s := range cases {
		if got, want := checkStorePath(s), checkStorePathSlow(s); got != want {
			t.Errorf("checkStorePath(%q) = %q, want %q", s, got, want)
		}
	}
}

// TestCheckStorePathNames: names of every length up to two steps of the
// four-byte loop and its tail, with every byte value at every position.
func TestCheckStorePathNames(t *testing.T) {
	const base = "/nix/store/6fpsx5wb2pxm5zxl9671lmqzry2llqaq-"
	for n := 1; n <= 13; n++ {
		name := []byte(strings.Repeat("a", n))
		for i := range name {
			for c := 0; c < 256; c++ {
				name[i] = byte(c)
				s := base + string(name)
				if got, want := checkStorePath(s), checkStorePathSlow(s); got != want {
					t.Fatalf("checkStorePath(%q) = %q, want %q", s, got, want)
				}
			}
			name[i] = 'a'
		}
	}
}

// TestStorePath: the one-pass store path parser returns what rawString
// and checkStorePath return, value, offset and error, for paths with
// every byte value at every position, names of every length around the
// limit, and input ending anywhere after the path.
func TestStorePath(t *testing.T) {
	const hash = "6fpsx5wb2pxm5zxl9671lmqzry2llqaq"
	var cases []string
	for n := 1; n <= 20; n++ {
		cases = append(cases, `"/nix/store/`+hash+"-"+strings.Repeat("n", n)+`"`)
	}
	for _, n := range []int{200, 210, 211, 212, 213, 220} {
		cases = append(cases, `"/nix/store/`+hash+"-"+strings.Repeat("n", n)+`"`)
	}
	good := `"/nix/store/` + hash + `-ia-simple"`
	for i := range good {
		for c := 0; c < 256; c++ {
			cases = append(cases, good[:i]+string([]byte{byte(c)})+good[i+1:])
		}
	}
	cases = append(cases, `"/nix/store/`+hash+`-a\"b"`, `"/nix/store/`+hash+`-a\\"`, "x"+good, "")
	for _, c := range cases {
		for _, tail := range []string{"", ",", `,["out"])`, strings.Repeat(" ", 20)} {
			data := []byte(c + tail)
			for _, pre := range []int{0, 3} {
				in := append(bytes.Repeat([]byte{'['}, pre), data...)
				p := &Parser{data: in, pos: pre, views: true}
				s, off, err := p.storePath()
				q := &Parser{data: in, pos: pre, views: true}
				ws, woff, werr := q.rawString()
				if werr == nil {
					if reason := checkStorePath(ws); reason != "" {
						ws, werr = "", q.fail(woff, "invalid store path %q: %s", ws, reason)
					}
				}
				if fmt.Sprint(err) != fmt.Sprint(werr) || werr == nil && (s != ws || off != woff || p.pos != q.pos) {
					t.Fatalf("storePath(%q) = %q, %d, %v (pos %d); want %q, %d, %v (pos %d)", in, s, off, err, p.pos, ws, woff, werr, q.pos)
				}
			}
		}
	}
}

// TestOutputPaths: an output's path, checked as it is scanned when valid,
// gets the verdict checkStorePath gives, for every byte value at every
// position, input-addressed and fixed.
func TestOutputPaths(t *testing.T) {
	env := `("name","x")`
	for c := 0; c < 256; c++ {
		if c == '"' || c == '\\' {
			continue // another string syntax, tested elsewhere
		}
		for i := range outPath {
			path := outPath[:i] + string([]byte{byte(c)}) + outPath[i+1:]
			reason := checkStorePath(path)
			for _, fields := range []string{`"",""`, `"sha256","` + sha256a + `"`} {
				text := drvText(`("out","`+path+`",`+fields+`)`, `("`+inDrv+`",["out"])`, "", `"s"`, `"b"`, "", env)
				d, err := Parse([]byte(text))
				var pe *ParseError
				switch {
				case reason == "" && (err != nil || d.Outputs[0].Path.String() != path):
					t.Fatalf("%q: %v", text, err)
				case reason != "" && (!errors.As(err, &pe) || pe.Offset != 15 || !strings.HasSuffix(pe.Msg, "invalid store path: "+reason)):
					t.Fatalf("%q: got %v, want %q at 15", text, err, reason)
				}
			}
		}
	}
}
