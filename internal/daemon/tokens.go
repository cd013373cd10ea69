package daemon

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/modelgate/modelgate/internal/authtoken"
	"github.com/modelgate/modelgate/internal/config"
	"github.com/modelgate/modelgate/internal/secretfile"
)

// tokenFiles are the admin API's token files and the set of tokens read
// from them, which the admin API checks. They are re-read on SIGHUP; a
// token that changed replaces the old one, which stays valid for the
// overlap (admin.token_overlap).
type tokenFiles struct {
	adminPath, readOnlyPath string // readOnlyPath "": no read-only token
	set                     *authtoken.Set
	current                 atomic.Pointer[tokenPair]
}

// tokenPair is what the files held at one reading.
type tokenPair struct{ admin, readOnly string }

func newTokenFiles(cfg *config.File) *tokenFiles {
	return &tokenFiles{
		adminPath:    cfg.TokenPath(),
		readOnlyPath: cfg.Admin.ReadOnlyTokenFile,
		set:          authtoken.New(cfg.Admin.TokenOverlap.D(), nil),
	}
}

// read reads both files, creating a missing one with a new random token;
// nothing is put in the set yet, so that a reload refused for another
// reason changes no token either.
func (t *tokenFiles) read() (tokenPair, error) {
	var p tokenPair
	var err error
	if p.admin, err = loadOrCreateToken(t.adminPath, "admin token file"); err != nil {
		return p, err
	}
	if t.readOnlyPath == "" {
		return p, nil
	}
	if p.readOnly, err = loadOrCreateToken(t.readOnlyPath, "read-only token file"); err != nil {
		return p, err
	}
	if p.readOnly == p.admin {
		return p, fmt.Errorf("read-only token file %s holds the admin token (from %s): it would give the right to change everything; write a token of its own there, e.g. (umask 077; openssl rand -hex 32 > %s)", t.readOnlyPath, t.adminPath, t.readOnlyPath)
	}
	return p, t.notSwapped(p)
}

// notSwapped refuses a new admin token that is accepted now as a
// read-only one (its holders would gain every right at once), and a new
// read-only token that is accepted now as an admin one.
func (t *tokenFiles) notSwapped(p tokenPair) error {
	if m := t.set.Check(p.admin); m.Kind == authtoken.ReadOnly {
		return fmt.Errorf("admin token file %s holds a token accepted now as the read-only one: its holders would gain the right to change everything; write a new token there", t.adminPath)
	}
	if m := t.set.Check(p.readOnly); p.readOnly != "" && m.Kind == authtoken.Admin {
		return fmt.Errorf("read-only token file %s holds a token accepted now as the admin one: write a new token there", t.readOnlyPath)
	}
	return nil
}

// put makes p the tokens accepted, logging each token replaced and until
// when the one before it is still accepted.
func (t *tokenFiles) put(log *slog.Logger, p tokenPair) {
	for _, k := range []struct {
		kind  authtoken.Kind
		token string
		path  string
	}{{authtoken.Admin, p.admin, t.adminPath}, {authtoken.ReadOnly, p.readOnly, t.readOnlyPath}} {
		first := t.current.Load() == nil
		changed, until := t.set.Put(k.kind, k.token)
		if !changed || first {
			continue
		}
		if until.IsZero() {
			log.Info("token replaced; the old one is no longer accepted", "kind", k.kind.String(), "file", k.path)
		} else {
			log.Info("token replaced; the old one is accepted until the overlap ends", "kind", k.kind.String(), "file", k.path, "old_token_until", until.UTC().Format(time.RFC3339))
		}
	}
	t.current.Store(&p)
}

// reload reads the files and puts their tokens.
func (t *tokenFiles) reload(log *slog.Logger) error {
	p, err := t.read()
	if err != nil {
		return err
	}
	t.put(log, p)
	return nil
}

// admin is the admin token last put.
func (t *tokenFiles) admin() string {
	if p := t.current.Load(); p != nil {
		return p.admin
	}
	return ""
}

// loadOrCreateToken reads a token (what names its file in errors), creating a random one (0600)
// when the file does not exist. An existing file is read as ssh reads a
// private key (secretfile.Read): one that group or others may read or
// write, or holding fewer than secretfile.MinLength characters, is refused,
// since anyone who reads or replaces the token controls the gateway.
func loadOrCreateToken(path, what string) (string, error) {
	tok, err := secretfile.Read(path, what)
	if err == nil {
		return tok, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%w (or delete the file: modelgate serve then writes a new token, mode 0600)", err)
	}
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("generate %s: %w", what, err)
	}
	tok = hex.EncodeToString(raw)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", fmt.Errorf("create %s: %w", what, err)
	}
	// Written whole beside it, then linked in place: a link never
	// replaces a file, so gateways starting together on one token file
	// (a fleet's) all end up with the one written first, and none reads
	// it half-written.
	f, err := os.CreateTemp(filepath.Dir(path), ".token-*")
	if err != nil {
		return "", fmt.Errorf("create %s: %w", what, err)
	}
	defer os.Remove(f.Name())
	_, werr := f.WriteString(tok + "\n")
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return "", fmt.Errorf("write %s: %w", what, werr)
	}
	if err := os.Link(f.Name(), path); errors.Is(err, fs.ErrExist) {
		return loadOrCreateToken(path, what) // another gateway's, written whole
	} else if err != nil {
		return "", fmt.Errorf("create %s: %w", what, err)
	}
	return tok, nil
}
