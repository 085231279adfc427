package testhost

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// userName is what Options.User may be: a portable login name, safe in
// passwd and sshd_config lines.
var userName = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,30}$`)

// First and last uid tried for Options.User: above Debian's and NixOS's
// ranges for people and system users, below nobody (65534).
const firstUID, lastUID = 64000, 65533

// addUser prepares Options.User: copies of the machine's /etc/passwd and
// /etc/group with the user (and a group of the same name and id) added,
// and its home. It returns the bind mounts that put the copies in place
// inside the namespace; the machine's files are not changed.
func (h *Host) addUser(name string) ([]string, error) {
	if !userName.MatchString(name) {
		return nil, fmt.Errorf("user name %q is not of the form %s", name, userName)
	}
	passwd, err := os.ReadFile("/etc/passwd")
	if err != nil {
		return nil, err
	}
	group, err := os.ReadFile("/etc/group")
	if err != nil {
		return nil, err
	}
	users, uids := passwdEntries(passwd)
	groups, gids := passwdEntries(group)
	if users[name] || groups[name] {
		return nil, fmt.Errorf("the machine already has a user or group %q", name)
	}
	uid := firstUID
	for uids[uid] || gids[uid] {
		if uid++; uid > lastUID {
			return nil, fmt.Errorf("no free uid in %d-%d", firstUID, lastUID)
		}
	}
	home := filepath.Join(h.Dir, "home", name)
	if err := os.MkdirAll(home, 0o755); err != nil {
		return nil, err
	}
	if err := os.Chown(home, uid, uid); err != nil {
		return nil, err
	}
	// sshd reads the user's authorized keys, and the user's shell starts,
	// as the user: the scratch directories (0700, from t.TempDir) must let
	// others pass. Files in them keep their own modes; keys stay 0600.
	if err := allowTraversal(home, filepath.Dir(h.Dir)); err != nil {
		return nil, err
	}
	etc := filepath.Join(h.Dir, "etc")
	if err := os.MkdirAll(etc, 0o755); err != nil {
		return nil, err
	}
	passwdCopy, groupCopy := filepath.Join(etc, "passwd"), filepath.Join(etc, "group")
	line := fmt.Sprintf("%s:x:%d:%d:nbuild test host user:%s:/bin/sh\n", name, uid, uid, home)
	if err := os.WriteFile(passwdCopy, appendLine(passwd, line), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(groupCopy, appendLine(group, fmt.Sprintf("%s:x:%d:\n", name, uid)), 0o644); err != nil {
		return nil, err
	}
	h.user, h.UID, h.UserAddr = name, uid, name+"@127.0.0.1"
	return []string{passwdCopy, "/etc/passwd", groupCopy, "/etc/group"}, nil
}

// authorizeUser gives the user root's client key.
func (h *Host) authorizeUser(sshDir string) error {
	pub, err := os.ReadFile(filepath.Join(sshDir, "client_ed25519.pub"))
	if err != nil {
		return err
	}
	keys := h.userKeys()
	if err := os.MkdirAll(filepath.Dir(keys), 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(keys, pub, 0o600); err != nil {
		return err
	}
	for _, p := range []string{filepath.Dir(keys), keys} {
		if err := os.Chown(p, h.UID, h.UID); err != nil {
			return err
		}
	}
	return nil
}

// userKeys is Options.User's authorized_keys file.
func (h *Host) userKeys() string {
	return filepath.Join(h.Dir, "home", h.user, ".ssh", "authorized_keys")
}

// passwdEntries returns the names and numeric ids (third field) of an
// /etc/passwd or /etc/group file.
func passwdEntries(b []byte) (names map[string]bool, ids map[int]bool) {
	names, ids = map[string]bool{}, map[int]bool{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) < 3 {
			continue
		}
		names[f[0]] = true
		if id, err := strconv.Atoi(f[2]); err == nil {
			ids[id] = true
		}
	}
	return names, ids
}

func appendLine(b []byte, line string) []byte {
	b = bytes.Clone(b)
	if len(b) > 0 && b[len(b)-1] != '\n' {
		b = append(b, '\n')
	}
	return append(b, line...)
}

// allowTraversal adds search permission for others to the directories
// above dir up to and including own (the test's temporary directories)
// that lack it. Directories above own must already have it.
func allowTraversal(dir, own string) error {
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			if rel, err := filepath.Rel(own, d); err != nil || strings.HasPrefix(rel, "..") {
				return fmt.Errorf("%s is closed to other users, who must reach %s (set TMPDIR elsewhere)", d, dir)
			}
			if err := os.Chmod(d, fi.Mode().Perm()|0o011); err != nil {
				return err
			}
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}
