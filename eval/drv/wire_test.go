package drv

import (
	"bytes"
	"strings"
	"testing"

	"github.com/nbuild/nbuild/nar/wire"
	"github.com/nbuild/nbuild/store"
)

func TestAppendBasicWire(t *testing.T) {
	d := &Derivation{
		Outputs:   []Output{{Name: "dev", Path: store.MustParsePath("/nix/store/00000000000000000000000000000000-x-dev")}, {Name: "out", Path: store.MustParsePath("/nix/store/11111111111111111111111111111111-x")}},
		InputDrvs: []InputDrv{{Path: store.MustParsePath("/nix/store/22222222222222222222222222222222-y.drv"), Outputs: []string{"out"}}},
		InputSrcs: []string{"/nix/store/d-src"},
		Platform:  "x86_64-linux", Builder: "/bin/sh", Args: []string{"-c", "echo \"hi\"\n"},
		Env: []EnvVar{{Key: "a", Value: "1"}, {Key: "b", Value: ""}},
	}
	r := wire.NewReader(bytes.NewReader(d.AppendBasicWire(nil)))
	var got []string
	n, _ := r.ReadUint64()
	for i := uint64(0); i < n*4; i++ {
		s, _ := r.ReadString()
		got = append(got, s)
	}
	srcs, _ := r.ReadStrings()
	platform, _ := r.ReadString()
	builder, _ := r.ReadString()
	args, _ := r.ReadStrings()
	ne, _ := r.ReadUint64()
	for i := uint64(0); i < ne*2; i++ {
		s, _ := r.ReadString()
		got = append(got, s)
	}
	want := "dev|/nix/store/00000000000000000000000000000000-x-dev|||out|/nix/store/11111111111111111111111111111111-x|||a|1|b|"
	if strings.Join(got, "|") != want || strings.Join(srcs, ",") != "/nix/store/d-src" ||
		platform != "x86_64-linux" || builder != "/bin/sh" || len(args) != 2 || args[1] != "echo \"hi\"\n" {
		t.Errorf("decoded %q srcs %q %q %q %q", got, srcs, platform, builder, args)
	}
	if _, err := r.ReadUint64(); err == nil {
		t.Error("trailing bytes after the BasicDerivation (input derivations must not be sent)")
	}
}
