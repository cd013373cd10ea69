package authtoken

import (
	"testing"
	"time"
)

// clock is a settable clock for the overlap.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestRotationKeepsTheOldTokenForTheOverlapOnly(t *testing.T) {
	c := &clock{t: time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)}
	s := New(10*time.Minute, c.now)
	if m := s.Check("a-token"); m.Kind != None {
		t.Fatalf("empty set accepted a token: %+v", m)
	}
	if changed, until := s.Put(Admin, "admin-1"); !changed || !until.IsZero() {
		t.Fatalf("first Put = %v, %v; want changed with nothing replaced", changed, until)
	}
	s.Put(ReadOnly, "viewer-1")
	if changed, _ := s.Put(Admin, "admin-1"); changed {
		t.Fatalf("putting the same token again reported a change")
	}
	changed, until := s.Put(Admin, "admin-2")
	if want := c.t.Add(10 * time.Minute); !changed || !until.Equal(want) {
		t.Fatalf("rotation = %v, %v; want changed, old token until %v", changed, until, want)
	}
	for _, tc := range []struct {
		token string
		want  Match
	}{
		{"admin-2", Match{Kind: Admin}},
		{"admin-1", Match{Kind: Admin, Until: until}},
		{"viewer-1", Match{Kind: ReadOnly}},
		{"admin-3", Match{}},
		{"", Match{}},
	} {
		if got := s.Check(tc.token); got != tc.want {
			t.Errorf("during the overlap Check(%q) = %+v, want %+v", tc.token, got, tc.want)
		}
	}
	c.t = until.Add(-time.Nanosecond)
	if got := s.Check("admin-1"); got.Kind != Admin {
		t.Errorf("the old token was refused before its overlap ended: %+v", got)
	}
	c.t = until
	if got := s.Check("admin-1"); got.Kind != None {
		t.Errorf("the old token was accepted once its overlap ended: %+v", got)
	}
	if got := s.Check("admin-2"); got.Kind != Admin {
		t.Errorf("the new token was refused: %+v", got)
	}
}

func TestASecondRotationDropsTheFirstToken(t *testing.T) {
	c := &clock{t: time.Unix(0, 0)}
	s := New(time.Hour, c.now)
	s.Put(Admin, "one")
	s.Put(Admin, "two")
	c.t = c.t.Add(time.Minute)
	_, until := s.Put(Admin, "three")
	if got := s.Check("one"); got.Kind != None {
		t.Errorf("two rotations back is still accepted: %+v", got)
	}
	if got := s.Check("two"); got != (Match{Kind: Admin, Until: until}) {
		t.Errorf("the token replaced last = %+v, want accepted until %v", got, until)
	}
}

func TestNoOverlapRefusesTheOldTokenAtOnce(t *testing.T) {
	s := New(0, nil)
	s.Put(ReadOnly, "old")
	if _, until := s.Put(ReadOnly, "new"); !until.IsZero() {
		t.Errorf("with no overlap the old token is kept until %v", until)
	}
	if got := s.Check("old"); got.Kind != None {
		t.Errorf("old token accepted with no overlap: %+v", got)
	}
	s.Put(ReadOnly, "")
	if got := s.Check("new"); got.Kind != None {
		t.Errorf("a removed token is accepted: %+v", got)
	}
}

// A token both replaced as one kind and current as another is what it is
// now: the old admin token handed out as the read-only one reads only.
func TestACurrentTokenWinsOverAReplacedOne(t *testing.T) {
	s := New(time.Hour, nil)
	s.Put(Admin, "shared")
	s.Put(Admin, "admin-2")
	s.Put(ReadOnly, "shared")
	if got := s.Check("shared"); got != (Match{Kind: ReadOnly}) {
		t.Errorf("Check = %+v, want the current read-only token", got)
	}
}

func TestKindNames(t *testing.T) {
	for k, want := range map[Kind]string{None: "none", ReadOnly: "read-only", Admin: "admin"} {
		if k.String() != want {
			t.Errorf("%d.String() = %q, want %q", k, k.String(), want)
		}
	}
}
