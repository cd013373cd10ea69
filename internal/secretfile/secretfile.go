// Package secretfile reads a secret (the admin token, an endpoint's
// override secret) from a file, refusing a file others may read or a
// secret too short to resist guessing, as ssh refuses a private key with
// open permissions. The secret is the file's content without its trailing
// line break.
package secretfile

import (
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
)

// MinLength is the shortest secret accepted: 32 characters, e.g. the 32 hex
// digits of 16 random bytes.
const MinLength = 32

// MaxLength bounds the secret read (a secret is sent in a header).
const MaxLength = 4096

// Read returns the secret in the file at path. what names the file in
// errors ("admin token file"). The file must be a regular file (a symbolic
// link to one is followed) that neither group nor others may read, write or
// execute, and hold one line of MinLength..MaxLength visible ASCII
// characters; every refusal names the file, the problem and the fix.
//
// The checks are made on the file as opened, not on the path before it, so
// that swapping the file between check and read changes nothing; it is
// opened non-blocking (a FIFO put there cannot hold the caller) and read
// through a limit (a /proc file that reports size 0 cannot make it read
// gigabytes).
func Read(path, what string) (string, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s %s is not a regular file (%s)", what, path, fi.Mode().Type())
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return "", fmt.Errorf("%s %s is open to group or others (mode %04o): run chmod 600 %s", what, path, perm, path)
	}
	if fi.Size() > MaxLength+2 {
		return "", fmt.Errorf("%s %s holds %d bytes, at most %d are read: it must hold the secret alone", what, path, fi.Size(), MaxLength)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxLength+3))
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	if len(data) > MaxLength+2 {
		return "", fmt.Errorf("%s %s holds more than %d bytes: it must hold the secret alone", what, path, MaxLength)
	}
	secret := strings.TrimSuffix(strings.TrimSuffix(string(data), "\n"), "\r")
	if err := Check(secret); err != nil {
		return "", fmt.Errorf("%s %s %w", what, path, err)
	}
	return secret, nil
}

// Check tells whether s is acceptable as a secret; the error reads after
// the file's name ("... holds 5 characters ...").
func Check(s string) error {
	if len(s) < MinLength {
		return fmt.Errorf("holds %d characters, at least %d are needed: write a new secret, e.g. (umask 077; openssl rand -hex 32 > FILE)", len(s), MinLength)
	}
	if len(s) > MaxLength {
		return fmt.Errorf("holds %d characters, at most %d are allowed", len(s), MaxLength)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c > '~' {
			return fmt.Errorf("holds a character that is not visible ASCII at offset %d (a secret is sent in an HTTP header: one line, no spaces)", i)
		}
	}
	return nil
}
