package explain

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nbuild/nbuild/store"
)

func TestFind(t *testing.T) {
	root := filepath.Join(t.TempDir(), "store")
	sys := instantiateFile(t, root, "explain-v2.nix", "system")
	roots := []store.Path{sys}
	load := DirLoader(root)
	cases := []struct {
		name string
		want []string // names of the matches; one means Find answers it
		from []string // names of the derivations that use them
	}{
		{"perl-5.36.0", []string{"perl-5.36.0.drv"}, nil},
		{"perl-5.36.0.drv", []string{"perl-5.36.0.drv"}, nil},
		{"libpng", []string{"libpng-1.6.40.drv"}, nil},
		// The tarball's package name is "perl" too; the cross perl's is
		// "perl-aarch64-unknown-linux-gnu".
		{"perl", []string{"perl-5.36.0.tar.xz.drv", "perl-5.36.0.drv"}, nil},
		{"perl-aarch64-unknown-linux-gnu", []string{"perl-aarch64-unknown-linux-gnu-5.36.0.drv"}, nil},
		// An exact name wins over package names.
		{"source", []string{"source.drv", "source.drv", "source.drv", "source.drv"},
			[]string{"coreutils-9.1.drv", "freetype-2.13.0.drv", "libpng-1.6.40.drv", "zlib-1.2.13.drv"}},
		{"explain-builder.sh", []string{"explain-builder.sh"}, nil},
		{"nixos-system-box", []string{"nixos-system-box-23.05.drv"}, nil},
		{"libpng-1.6.39", nil, nil},
		{"png", nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ms, err := Matches(roots, tc.name, load)
			if err != nil {
				t.Fatal(err)
			}
			var got, from []string
			for _, m := range ms {
				got = append(got, m.Path.Name())
				if !m.From.IsZero() {
					from = append(from, m.From.Name())
				}
			}
			if strings.Join(sorted(got), " ") != strings.Join(sorted(tc.want), " ") {
				t.Errorf("matches %v, want %v", got, tc.want)
			}
			if tc.from != nil && strings.Join(sorted(from), " ") != strings.Join(tc.from, " ") {
				t.Errorf("used by %v, want %v", from, tc.from)
			}
			p, err := Find(roots, tc.name, load)
			var amb *AmbiguousError
			switch len(tc.want) {
			case 0:
				if !errors.Is(err, ErrNoMatch) {
					t.Errorf("Find: %v, want ErrNoMatch", err)
				}
			case 1:
				if err != nil || p.Name() != tc.want[0] {
					t.Errorf("Find: %s, %v", p, err)
				}
			default:
				if !errors.As(err, &amb) || len(amb.Matches) != len(tc.want) {
					t.Errorf("Find: %v, want an AmbiguousError with %d matches", err, len(tc.want))
				} else if !strings.Contains(err.Error(), "pick one") {
					t.Errorf("message %q does not ask to pick one", err)
				}
			}
		})
	}
}
