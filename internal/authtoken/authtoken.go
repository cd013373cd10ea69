// Package authtoken holds the admin API's bearer tokens: the admin token,
// which may read and change everything, and an optional read-only token,
// which may only read. Each is replaced when its file is re-read (on
// SIGHUP); the token it replaces stays valid for an overlap, so that the
// clients holding it can pick up the new one without a failed call.
package authtoken

import (
	"crypto/sha256"
	"crypto/subtle"
	"sync"
	"time"
)

// Kind is what a token may do.
type Kind uint8

const (
	// None: no token matched.
	None Kind = iota
	// ReadOnly may read (GET) the API, the dashboard and the event stream.
	ReadOnly
	// Admin may read and change everything.
	Admin
	kinds
)

// String is the kind as the API and the CLI name it.
func (k Kind) String() string {
	switch k {
	case ReadOnly:
		return "read-only"
	case Admin:
		return "admin"
	}
	return "none"
}

// DefaultOverlap is how long a replaced token stays valid when the
// configuration says nothing (admin.token_overlap).
const DefaultOverlap = 10 * time.Minute

// MaxOverlap bounds the overlap: a rotation that keeps the old token a
// week is no rotation.
const MaxOverlap = 7 * 24 * time.Hour

// Match is the outcome of [Set.Check].
type Match struct {
	// Kind is what the token may do; None when it matched no token.
	Kind Kind
	// Until is zero for a current token; for a replaced one still in its
	// overlap, the instant it stops being accepted.
	Until time.Time
}

// Set is the tokens accepted now. Safe for concurrent use.
type Set struct {
	overlap time.Duration
	now     func() time.Time

	mu       sync.RWMutex
	current  [kinds]digest
	previous [kinds]digest
	// until is when each previous token stops being accepted.
	until [kinds]time.Time
}

// digest is a token's SHA-256; tokens are compared by digest so that a
// comparison takes the same time whatever the lengths (ConstantTimeCompare
// returns early on a length mismatch). The zero digest is no token.
type digest struct {
	sum [sha256.Size]byte
	set bool
}

// New returns an empty set (it accepts nothing) whose replaced tokens
// stay valid for overlap. now is the clock; nil means time.Now.
func New(overlap time.Duration, now func() time.Time) *Set {
	if now == nil {
		now = time.Now
	}
	return &Set{overlap: overlap, now: now}
}

// Put makes token the current token of kind k; an empty token removes
// it. A different token it replaces stays valid for the overlap (replacing
// the one before it, if that was still in its own overlap); putting the
// same token again changes nothing. It reports whether the token changed,
// and until when the replaced one is accepted.
func (s *Set) Put(k Kind, token string) (changed bool, until time.Time) {
	var d digest
	if token != "" {
		d = digest{sum: sha256.Sum256([]byte(token)), set: true}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.current[k] == d {
		return false, time.Time{}
	}
	if s.current[k].set && s.overlap > 0 {
		s.previous[k] = s.current[k]
		s.until[k] = s.now().Add(s.overlap)
		until = s.until[k]
	} else {
		s.previous[k] = digest{}
	}
	s.current[k] = d
	return true, until
}

// Check tells what token may do. It compares token with every token held,
// whether or not an earlier one matched, so that its time does not tell
// which one matched.
func (s *Set) Check(token string) Match {
	if token == "" {
		return Match{}
	}
	got := sha256.Sum256([]byte(token))
	now := s.now()
	s.mu.RLock()
	defer s.mu.RUnlock()
	var cur, prev Match
	for k := Kind(1); k < kinds; k++ {
		if equal(s.current[k], got) {
			cur = Match{Kind: k}
		}
		if equal(s.previous[k], got) && now.Before(s.until[k]) {
			prev = Match{Kind: k, Until: s.until[k]}
		}
	}
	if cur.Kind != None { // a current token wins over a replaced one
		return cur
	}
	return prev
}

func equal(d digest, got [sha256.Size]byte) bool {
	return subtle.ConstantTimeCompare(d.sum[:], got[:]) == 1 && d.set
}
