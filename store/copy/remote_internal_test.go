package copy

import "testing"

func TestChooseCompression(t *testing.T) {
	for _, c := range []struct {
		want, proto    string
		zstd, xz, here bool
		got            string // "" for an error
	}{
		{"auto", "daemon", true, true, false, "zstd"},
		{"", "daemon", true, true, false, "zstd"},
		{"auto", "daemon", false, true, false, "none"},
		{"auto", "daemon", true, true, true, "none"},
		{"zstd", "daemon", true, true, true, "zstd"},
		{"zstd", "daemon", false, true, false, ""},
		{"xz", "daemon", true, false, false, ""},
		{"xz", "daemon", true, true, false, "xz"},
		{"none", "daemon", true, true, false, "none"},
		{"auto", "serve", true, true, false, "none"},
		{"zstd", "serve", true, true, false, ""},
		{"gzip", "daemon", true, true, false, ""},
	} {
		got, err := chooseCompression(c.want, c.proto, c.zstd, c.xz, c.here)
		if (err != nil) != (c.got == "") || got != c.got {
			t.Errorf("chooseCompression(%q, %q, zstd %v, xz %v, local %v) = %q, %v; want %q",
				c.want, c.proto, c.zstd, c.xz, c.here, got, err, c.got)
		}
	}
}

func TestIsLocal(t *testing.T) {
	for host, want := range map[string]bool{
		"localhost": true, "root@localhost": true, "127.0.0.1": true, "root@127.0.0.1": true,
		"127.1.2.3": true, "::1": true, "me@[::1]": true,
		"board": false, "root@board.lan": false, "10.0.0.2": false, "pi@192.168.1.20": false,
		"fe80::1": false, "localhost.example.org": false,
	} {
		if got := isLocal(host); got != want {
			t.Errorf("isLocal(%q) = %v, want %v", host, got, want)
		}
	}
}
