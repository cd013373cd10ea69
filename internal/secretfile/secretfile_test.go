package secretfile

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	good := strings.Repeat("a1", 16)
	write := func(name, content string, mode os.FileMode) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil { // past the umask
			t.Fatal(err)
		}
		return path
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(write("target", good+"\n", 0o400), link); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, path string
		want       string // the secret, or a part of the error
		ok         bool
	}{
		{"0600 with a newline", write("ok", good+"\n", 0o600), good, true},
		{"CRLF", write("crlf", good+"\r\n", 0o600), good, true},
		{"0400 through a symbolic link", link, good, true},
		{"readable by others", write("o", good, 0o604), "open to group or others (mode 0604): run chmod 600", false},
		{"readable by group", write("g", good, 0o640), "(mode 0640)", false},
		{"writable by group", write("gw", good, 0o620), "(mode 0620)", false},
		{"too short", write("short", "abc\n", 0o600), "holds 3 characters, at least 32", false},
		{"empty", write("empty", "", 0o600), "holds 0 characters", false},
		{"two lines", write("lines", good+"\n"+good+"\n", 0o600), "not visible ASCII", false},
		{"a space", write("space", good+" x", 0o600), "not visible ASCII at offset 32", false},
		{"too long", write("long", strings.Repeat("x", MaxLength+10), 0o600), "at most 4096", false},
		{"missing", filepath.Join(dir, "none"), "no such file", false},
		{"a directory", dir, "not a regular file", false},
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		got, err := Read(tc.path, "test secret file")
		switch {
		case tc.ok && (err != nil || got != tc.want):
			t.Errorf("%s: Read = %q, %v; want %q", tc.name, got, err, tc.want)
		case !tc.ok && err == nil:
			t.Errorf("%s: Read = %q, want an error", tc.name, got)
		case !tc.ok && (!strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "test secret file")):
			t.Errorf("%s: error %q, want it to name the file's role and say %q", tc.name, err, tc.want)
		}
	}
}

// TestReadRefusesWhatCouldHoldTheCaller: a FIFO is refused without
// blocking, and a file that reports size 0 but reads on (as /proc files
// do) is read only up to the limit.
func TestReadRefusesWhatCouldHoldTheCaller(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(fifo, "test secret file"); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("Read(FIFO) = %v, want refused as not a regular file", err)
	}
	const endless = "/proc/self/pagemap" // regular, 0400, size 0, about 256 GiB to read
	if fi, err := os.Stat(endless); err != nil || fi.Mode().Perm()&0o077 != 0 {
		t.Fatalf("%s: %v %v: the test needs Linux's pagemap", endless, fi, err)
	}
	// Refused at once: past the limit, or by the kernel's own read rule for
	// pagemap (8-byte reads), never after reading on.
	if _, err := Read(endless, "test secret file"); err == nil {
		t.Errorf("Read(%s) accepted it, want it refused after at most 4 KiB", endless)
	}
}
