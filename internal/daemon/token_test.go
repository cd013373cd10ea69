package daemon_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/config"
	"github.com/modelgate/modelgate/internal/daemon"
)

// TestAdminTokenFile starts the daemon with admin.token_file in each state
// the issue "Trust boundaries" names: a file others may read (0644) or the
// group may read (0640), a short token, a good one, and none (created 0600).
func TestAdminTokenFile(t *testing.T) {
	good := strings.Repeat("0123456789abcdef", 3) // 48 characters
	for _, tc := range []struct {
		name    string
		content string
		mode    os.FileMode // 0: no file
		want    string      // the token, or parts of the error
		ok      bool
	}{
		{"readable by others", good + "\n", 0o644, "admin token file TOKEN is open to group or others (mode 0644): run chmod 600 TOKEN", false},
		{"readable by the group", good + "\n", 0o640, "admin token file TOKEN is open to group or others (mode 0640): run chmod 600 TOKEN", false},
		{"writable by the group", good + "\n", 0o620, "(mode 0620): run chmod 600 TOKEN", false},
		{"short", "0123456789abcdef0123456789abcde\n", 0o600, "admin token file TOKEN holds 31 characters, at least 32 are needed", false},
		{"empty", "", 0o600, "admin token file TOKEN holds 0 characters", false},
		{"good", good + "\n", 0o600, good, true},
		{"good, read-only", good, 0o400, good, true},
		{"missing: created", "", 0, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tokenPath := filepath.Join(dir, "secrets", "admin.token")
			if tc.mode != 0 {
				os.Mkdir(filepath.Dir(tokenPath), 0o700)
				if err := os.WriteFile(tokenPath, []byte(tc.content), tc.mode); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(tokenPath, tc.mode); err != nil { // past the umask
					t.Fatal(err)
				}
			}
			f, err := config.Parse(fmt.Appendf(nil, "listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\n  token_file: %s\nstate:\n  path: %s\n",
				tokenPath, filepath.Join(dir, "state.db")))
			if err != nil {
				t.Fatal(err)
			}
			d, err := daemon.New(context.Background(), daemon.Options{Config: f})
			if !tc.ok {
				want := strings.ReplaceAll(tc.want, "TOKEN", tokenPath)
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("daemon.New = %v, want an error containing %q", err, want)
				}
				if after, _ := os.ReadFile(tokenPath); string(after) != tc.content {
					t.Errorf("the refused token file was changed")
				}
				return
			}
			if err != nil {
				t.Fatalf("daemon.New: %v", err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			defer d.Shutdown(ctx)
			if tc.mode != 0 {
				if d.Token() != tc.want {
					t.Errorf("token %q, want the file's %q", d.Token(), tc.want)
				}
				return
			}
			fi, err := os.Stat(tokenPath)
			if err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("created token file: %v, %v; want mode 0600", fi, err)
			}
			data, _ := os.ReadFile(tokenPath)
			if !regexp.MustCompile(`^[0-9a-f]{48}\n$`).Match(data) || strings.TrimSpace(string(data)) != d.Token() {
				t.Errorf("created token file holds %q, daemon uses %q; want 48 hex digits and a newline, the same token", data, d.Token())
			}
		})
	}
}
