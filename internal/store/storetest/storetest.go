// Package storetest is the conformance suite every store.Store backend
// must pass. A backend's tests call Run with a constructor for fresh,
// empty stores.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/modelgate/modelgate/internal/store"
)

// waitFor bounds every wait on a watch channel or a goroutine. It is a
// deadline for a broken backend, not a timing assumption: a correct one
// finishes far sooner.
const waitFor = 20 * time.Second

// Run runs the conformance suite against the backend newStore creates.
// newStore returns a fresh, empty store for one test and closes it when
// the test ends; it is called from parallel subtests. reopen closes the
// store most recently returned (by newStore or reopen) and opens the same
// data again; tests call it to check durability.
func Run(t *testing.T, newStore func(t *testing.T) (s store.Store, reopen func() store.Store)) {
	tests := []struct {
		name string
		fn   func(t *testing.T, h *harness)
	}{
		{"GetList", testGetList},
		{"Revisions", testRevisions},
		{"ExpectRevisions", testExpectRevisions},
		{"Guards", testGuards},
		{"GuardsSeePreTxnState", testGuardsSeePreTxnState},
		{"Atomicity", testAtomicity},
		{"Delete", testDelete},
		{"CanceledContext", testCanceledContext},
		{"EventSeqs", testEventSeqs},
		{"EventSeqsAcrossReopen", testEventSeqsAcrossReopen},
		{"EventsFilter", testEventsFilter},
		{"WatchBacklogThenLive", testWatchBacklogThenLive},
		{"WatchResume", testWatchResume},
		{"WatchRacesCommits", testWatchRacesCommits},
		{"WatchSlowConsumer", testWatchSlowConsumer},
		{"WatchCancel", testWatchCancel},
		{"ConcurrentCommits", testConcurrentCommits},
		{"ConcurrentReadModifyWrite", testConcurrentReadModifyWrite},
		{"Close", testClose},
		{"SurvivesReopen", testSurvivesReopen},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, reopen := newStore(t)
			tc.fn(t, &harness{s: s, reopen: reopen})
		})
	}
}

// harness is the store under test; reopen replaces s.
type harness struct {
	s      store.Store
	reopen func() store.Store
}

func (h *harness) doReopen() { h.s = h.reopen() }

func testGetList(t *testing.T, h *harness) {
	ctx := t.Context()
	rev := mustCommit(t, h.s, store.Txn{Ops: []store.Op{
		{Key: "a/2", Value: []byte("2")},
		{Key: "a/1", Value: []byte("1")},
		{Key: "b/1", Value: []byte("b")},
		{Key: "a", Value: []byte("root")},
		{Key: "a/10", Value: []byte("10")},
		{Key: "empty"},
	}}).rev

	got, err := h.s.Get(ctx, "a/1")
	if err != nil {
		t.Fatalf("Get(a/1): %v", err)
	}
	if diff := cmp.Diff(store.KV{Key: "a/1", Value: []byte("1"), ModRevision: rev}, got); diff != "" {
		t.Errorf("Get(a/1) mismatch (-want +got):\n%s", diff)
	}
	// The returned value is the caller's: changing it changes nothing stored.
	got.Value[0] = 'X'
	if again, _ := h.s.Get(ctx, "a/1"); string(again.Value) != "1" {
		t.Errorf("Get(a/1) after modifying a returned value = %q, want %q", again.Value, "1")
	}
	if got, err := h.s.Get(ctx, "empty"); err != nil || len(got.Value) != 0 {
		t.Errorf("Get(empty) = %q, %v; want empty value, nil", got.Value, err)
	}
	if _, err := h.s.Get(ctx, "a/3"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get(a/3) error = %v, want ErrNotFound", err)
	}

	for _, tc := range []struct {
		prefix string
		want   []string
	}{
		{"a/", []string{"a/1", "a/10", "a/2"}},
		{"a", []string{"a", "a/1", "a/10", "a/2"}},
		{"", []string{"a", "a/1", "a/10", "a/2", "b/1", "empty"}},
		{"b/1", []string{"b/1"}},
		{"zz", nil},
		{"a/1/", nil},
	} {
		kvs, err := h.s.List(ctx, tc.prefix)
		if err != nil {
			t.Fatalf("List(%q): %v", tc.prefix, err)
		}
		if diff := cmp.Diff(tc.want, keys(kvs), cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("List(%q) keys mismatch (-want +got):\n%s", tc.prefix, diff)
		}
		for _, kv := range kvs {
			if kv.ModRevision != rev {
				t.Errorf("List(%q): %s has ModRevision %d, want %d", tc.prefix, kv.Key, kv.ModRevision, rev)
			}
		}
	}
	kvs, _ := h.s.List(ctx, "a/1")
	want := []store.KV{{Key: "a/1", Value: []byte("1"), ModRevision: rev}, {Key: "a/10", Value: []byte("10"), ModRevision: rev}}
	if diff := cmp.Diff(want, kvs); diff != "" {
		t.Errorf("List(a/1) mismatch (-want +got):\n%s", diff)
	}
}

func testRevisions(t *testing.T, h *harness) {
	ctx := t.Context()
	r1 := put(t, h.s, "x", "1")
	r2 := put(t, h.s, "y", "1")
	if r1 == 0 || r2 <= r1 {
		t.Fatalf("revisions %d then %d, want increasing from > 0", r1, r2)
	}
	r3 := put(t, h.s, "x", "2")
	if r3 <= r2 {
		t.Fatalf("revision %d after %d, want increasing", r3, r2)
	}
	r4 := mustCommit(t, h.s, store.Txn{Ops: []store.Op{{Key: "y", Value: []byte("2")}, {Key: "z", Value: []byte("1")}}}).rev
	if r4 <= r3 {
		t.Fatalf("revision %d after %d, want increasing", r4, r3)
	}
	r5 := mustCommit(t, h.s, store.Txn{Events: []store.Event{ev("", "note")}}).rev
	if r5 <= r4 {
		t.Fatalf("revision of an events-only commit %d after %d, want increasing", r5, r4)
	}
	for key, want := range map[string]uint64{"x": r3, "y": r4, "z": r4} {
		kv, err := h.s.Get(ctx, key)
		if err != nil {
			t.Fatalf("Get(%s): %v", key, err)
		}
		if kv.ModRevision != want {
			t.Errorf("Get(%s).ModRevision = %d, want %d", key, kv.ModRevision, want)
		}
	}
}

func testExpectRevisions(t *testing.T, h *harness) {
	ctx := t.Context()
	rev := put(t, h.s, "k", "v1")
	put(t, h.s, "other", "o")
	// The commits below write only "w", so rev stays k's revision.
	for _, tc := range []struct {
		name     string
		expect   map[string]uint64
		conflict bool
	}{
		{"absent key expected absent", map[string]uint64{"new": 0}, false},
		{"present key expected absent", map[string]uint64{"k": 0}, true},
		{"stale revision", map[string]uint64{"k": rev - 1}, true},
		{"future revision", map[string]uint64{"k": rev + 1000}, true},
		{"absent key expected present", map[string]uint64{"missing": rev}, true},
		{"one of two stale", map[string]uint64{"k": rev, "other": rev}, true},
		{"current revision", map[string]uint64{"k": rev}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := lastSeq(t, h.s)
			_, _, err := h.s.Commit(ctx, store.Txn{
				Ops:             []store.Op{{Key: "w", Value: []byte(tc.name)}},
				ExpectRevisions: tc.expect,
				Events:          []store.Event{ev("", "write")},
			})
			if tc.conflict {
				if !errors.Is(err, store.ErrConflict) {
					t.Fatalf("Commit expecting %v: error = %v, want ErrConflict", tc.expect, err)
				}
				if got := lastSeq(t, h.s); got != before {
					t.Errorf("a conflicting Commit appended events: last seq %d, want %d", got, before)
				}
				return
			}
			if err != nil {
				t.Fatalf("Commit expecting %v: %v", tc.expect, err)
			}
		})
	}
}

func testGuards(t *testing.T, h *harness) {
	ctx := t.Context()
	put(t, h.s, "exists", "v")
	for _, tc := range []struct {
		name     string
		op       store.Op
		conflict bool
	}{
		{"MustNotExist on present key", store.Op{Key: "exists", Value: []byte("w"), Guard: store.MustNotExist}, true},
		{"MustExist on absent key", store.Op{Key: "absent", Value: []byte("w"), Guard: store.MustExist}, true},
		{"MustExist delete of absent key", store.Op{Key: "absent", Delete: true, Guard: store.MustExist}, true},
		{"MustNotExist on absent key", store.Op{Key: "new1", Value: []byte("w"), Guard: store.MustNotExist}, false},
		{"MustExist on present key", store.Op{Key: "exists", Value: []byte("w"), Guard: store.MustExist}, false},
		{"NoGuard on absent key", store.Op{Key: "new2", Value: []byte("w")}, false},
		{"NoGuard delete of absent key", store.Op{Key: "absent", Delete: true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := h.s.Commit(ctx, store.Txn{Ops: []store.Op{tc.op}})
			if tc.conflict != errors.Is(err, store.ErrConflict) || (!tc.conflict && err != nil) {
				t.Fatalf("Commit(%+v) error = %v, want conflict %v", tc.op, err, tc.conflict)
			}
		})
	}
}

// testGuardsSeePreTxnState: guards compare against the state before the
// transaction, not against earlier ops of the same transaction.
func testGuardsSeePreTxnState(t *testing.T, h *harness) {
	ctx := t.Context()
	put(t, h.s, "k", "v")
	for _, tc := range []struct {
		name string
		ops  []store.Op
	}{
		{"put then MustExist", []store.Op{{Key: "new", Value: []byte("1")}, {Key: "new", Value: []byte("2"), Guard: store.MustExist}}},
		{"delete then MustNotExist", []store.Op{{Key: "k", Delete: true}, {Key: "k", Value: []byte("2"), Guard: store.MustNotExist}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := h.s.Commit(ctx, store.Txn{Ops: tc.ops}); !errors.Is(err, store.ErrConflict) {
				t.Fatalf("Commit(%+v) error = %v, want ErrConflict", tc.ops, err)
			}
		})
	}
	// Ops apply in order: the last write to a key wins.
	mustCommit(t, h.s, store.Txn{Ops: []store.Op{{Key: "k", Delete: true}, {Key: "k", Value: []byte("again")}}})
	if kv, err := h.s.Get(ctx, "k"); err != nil || string(kv.Value) != "again" {
		t.Errorf("Get(k) after delete+put = %q, %v; want %q", kv.Value, err, "again")
	}
}

func testAtomicity(t *testing.T, h *harness) {
	ctx := t.Context()
	base := mustCommit(t, h.s, store.Txn{
		Ops:    []store.Op{{Key: "a", Value: []byte("1")}, {Key: "c", Value: []byte("1")}},
		Events: []store.Event{ev("fraud", "setup")},
	})
	before, err := h.s.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	writes := []store.Op{
		{Key: "a", Value: []byte("2")},
		{Key: "b", Value: []byte("2")},
		{Key: "c", Delete: true},
	}
	events := []store.Event{ev("fraud", "one"), ev("fraud", "two")}
	for _, tc := range []struct {
		name string
		txn  store.Txn
	}{
		{"last op guard fails", store.Txn{Ops: append(append([]store.Op{}, writes...), store.Op{Key: "d", Value: []byte("x"), Guard: store.MustExist}), Events: events}},
		{"first op guard fails", store.Txn{Ops: append([]store.Op{{Key: "a", Value: []byte("x"), Guard: store.MustNotExist}}, writes...), Events: events}},
		{"expectation fails", store.Txn{Ops: writes, Events: events, ExpectRevisions: map[string]uint64{"a": base.rev, "c": base.rev + 1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, evs, err := h.s.Commit(ctx, tc.txn); !errors.Is(err, store.ErrConflict) || evs != nil {
				t.Fatalf("Commit = events %v, error %v; want nil, ErrConflict", evs, err)
			}
			after, err := h.s.List(ctx, "")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(before, after); diff != "" {
				t.Errorf("a failed Commit changed keys (-before +after):\n%s", diff)
			}
			if got := lastSeq(t, h.s); got != base.events[0].Seq {
				t.Errorf("a failed Commit appended events: last seq %d, want %d", got, base.events[0].Seq)
			}
		})
	}
	// No Seq was consumed by the failures.
	next := mustCommit(t, h.s, store.Txn{Events: []store.Event{ev("fraud", "next")}})
	if got, want := next.events[0].Seq, base.events[0].Seq+1; got != want {
		t.Errorf("Seq after failed commits = %d, want %d", got, want)
	}
}

func testDelete(t *testing.T, h *harness) {
	ctx := t.Context()
	put(t, h.s, "k", "v")
	put(t, h.s, "k2", "v")
	delRev := mustCommit(t, h.s, store.Txn{Ops: []store.Op{{Key: "k", Delete: true, Guard: store.MustExist}}}).rev
	if _, err := h.s.Get(ctx, "k"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get(k) after delete: error = %v, want ErrNotFound", err)
	}
	if kvs, _ := h.s.List(ctx, "k"); !cmp.Equal([]string{"k2"}, keys(kvs)) {
		t.Errorf("List(k) after delete = %v, want [k2]", keys(kvs))
	}
	// Deleted means absent for guards and expectations.
	if _, _, err := h.s.Commit(ctx, store.Txn{Ops: []store.Op{{Key: "k", Delete: true, Guard: store.MustExist}}}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("MustExist delete of a deleted key: error = %v, want ErrConflict", err)
	}
	rev := mustCommit(t, h.s, store.Txn{
		Ops:             []store.Op{{Key: "k", Value: []byte("back"), Guard: store.MustNotExist}},
		ExpectRevisions: map[string]uint64{"k": 0},
	}).rev
	kv, err := h.s.Get(ctx, "k")
	if err != nil || string(kv.Value) != "back" || kv.ModRevision != rev || rev <= delRev {
		t.Errorf("Get(k) after re-put = %+v, %v; want value back at revision %d > %d", kv, err, rev, delRev)
	}
}

func testCanceledContext(t *testing.T, h *harness) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, _, err := h.s.Commit(ctx, store.Txn{Ops: []store.Op{{Key: "k", Value: []byte("v")}}, Events: []store.Event{ev("", "x")}}); !errors.Is(err, context.Canceled) {
		t.Errorf("Commit with a canceled context: error = %v, want context.Canceled", err)
	}
	if _, err := h.s.Get(t.Context(), "k"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get after a canceled Commit: error = %v, want ErrNotFound", err)
	}
	if got := lastSeq(t, h.s); got != 0 {
		t.Errorf("a canceled Commit appended events: last seq %d", got)
	}
}

func testEventSeqs(t *testing.T, h *harness) {
	ctx := t.Context()
	given := time.Date(2024, 5, 6, 7, 8, 9, 10, time.FixedZone("CEST", 2*3600))
	var committed []store.Event
	start := time.Now()
	for i := range 4 {
		in := make([]store.Event, i+1)
		for j := range in {
			in[j] = ev("fraud", fmt.Sprintf("t%d.%d", i, j))
			in[j].Seq = 999 // ignored
			in[j].Actor = "tester"
			in[j].Data = []byte(`{"n":1}`)
		}
		in[0].Time = given
		keep := append([]store.Event(nil), in...)
		c := mustCommit(t, h.s, store.Txn{Events: in})
		if diff := cmp.Diff(keep, in); diff != "" {
			t.Errorf("Commit modified the caller's events (-before +after):\n%s", diff)
		}
		if len(c.events) != len(in) {
			t.Fatalf("Commit returned %d events, want %d", len(c.events), len(in))
		}
		for j, e := range c.events {
			if e.Type != in[j].Type || e.Endpoint != "fraud" || e.Actor != "tester" || string(e.Data) != `{"n":1}` {
				t.Errorf("stored event %+v does not match the committed %+v", e, in[j])
			}
		}
		if !c.events[0].Time.Equal(given) {
			t.Errorf("event Time = %v, want the given %v", c.events[0].Time, given)
		}
		for _, e := range c.events[1:] {
			if e.Time.Before(start.Add(-time.Minute)) || e.Time.After(time.Now().Add(time.Minute)) {
				t.Errorf("zero event Time set to %v, want about now (%v)", e.Time, start)
			}
		}
		committed = append(committed, c.events...)
	}
	for i, e := range committed {
		if want := uint64(i + 1); e.Seq != want {
			t.Errorf("event %d has Seq %d, want %d (contiguous from 1)", i, e.Seq, want)
		}
	}
	stored, err := h.s.Events(ctx, store.EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(committed, stored); diff != "" {
		t.Errorf("Events() differs from what Commit returned (-commit +stored):\n%s", diff)
	}
	if last, err := h.s.LastSeq(ctx); err != nil || last != committed[len(committed)-1].Seq {
		t.Errorf("LastSeq = %d, %v; want %d", last, err, committed[len(committed)-1].Seq)
	}
	mustCommit(t, h.s, store.Txn{Ops: []store.Op{{Key: "no-events", Value: []byte("1")}}})
	if last, err := h.s.LastSeq(ctx); err != nil || last != committed[len(committed)-1].Seq {
		t.Errorf("LastSeq after a commit without events = %d, %v; want %d", last, err, committed[len(committed)-1].Seq)
	}
}

func testEventSeqsAcrossReopen(t *testing.T, h *harness) {
	ctx := t.Context()
	first := mustCommit(t, h.s, store.Txn{Events: []store.Event{ev("a", "1"), ev("a", "2")}})
	h.doReopen()
	second := mustCommit(t, h.s, store.Txn{Events: []store.Event{ev("a", "3")}})
	if got, want := second.events[0].Seq, first.events[1].Seq+1; got != want {
		t.Errorf("first Seq after reopen = %d, want %d", got, want)
	}
	if second.rev <= first.rev {
		t.Errorf("revision after reopen = %d, want > %d", second.rev, first.rev)
	}
	h.doReopen()
	all, err := h.s.Events(ctx, store.EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(append(first.events, second.events...), all); diff != "" {
		t.Errorf("Events() after reopen mismatch (-want +got):\n%s", diff)
	}
}

func testEventsFilter(t *testing.T, h *harness) {
	ctx := t.Context()
	// Seqs: 1 fraud, 2 spam, 3 global, 4 fraud, 5 spam, 6 fraud, 7 fraudulent.
	for _, ep := range []string{"fraud", "spam", "", "fraud", "spam", "fraud", "fraudulent"} {
		mustCommit(t, h.s, store.Txn{Events: []store.Event{ev(ep, "e")}})
	}
	for _, tc := range []struct {
		name string
		f    store.EventFilter
		want []uint64
	}{
		{"all", store.EventFilter{}, []uint64{1, 2, 3, 4, 5, 6, 7}},
		{"since", store.EventFilter{Since: 4}, []uint64{5, 6, 7}},
		{"since last", store.EventFilter{Since: 7}, nil},
		{"since beyond last", store.EventFilter{Since: 100}, nil},
		{"endpoint", store.EventFilter{Endpoint: "fraud"}, []uint64{1, 4, 6}},
		{"endpoint is not a prefix", store.EventFilter{Endpoint: "fraudulent"}, []uint64{7}},
		{"unknown endpoint", store.EventFilter{Endpoint: "nope"}, nil},
		{"endpoint since", store.EventFilter{Endpoint: "fraud", Since: 1}, []uint64{4, 6}},
		{"limit", store.EventFilter{Limit: 2}, []uint64{1, 2}},
		{"limit above count", store.EventFilter{Limit: 100}, []uint64{1, 2, 3, 4, 5, 6, 7}},
		{"since limit", store.EventFilter{Since: 2, Limit: 3}, []uint64{3, 4, 5}},
		{"endpoint limit", store.EventFilter{Endpoint: "spam", Limit: 1}, []uint64{2}},
		{"endpoint since limit", store.EventFilter{Endpoint: "fraud", Since: 1, Limit: 1}, []uint64{4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := h.s.Events(ctx, tc.f)
			if err != nil {
				t.Fatalf("Events(%+v): %v", tc.f, err)
			}
			if diff := cmp.Diff(tc.want, seqs(got), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Events(%+v) seqs mismatch (-want +got):\n%s", tc.f, diff)
			}
			for _, e := range got {
				if tc.f.Endpoint != "" && e.Endpoint != tc.f.Endpoint {
					t.Errorf("Events(%+v) returned an event of endpoint %q", tc.f, e.Endpoint)
				}
			}
		})
	}
}

func testWatchBacklogThenLive(t *testing.T, h *harness) {
	ctx := t.Context()
	backlog := mustCommit(t, h.s, store.Txn{Events: []store.Event{ev("a", "1"), ev("b", "2"), ev("", "3")}}).events
	ch, err := h.s.Watch(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(backlog, recvN(t, ch, 3)); diff != "" {
		t.Errorf("backlog mismatch (-want +got):\n%s", diff)
	}
	live := mustCommit(t, h.s, store.Txn{Events: []store.Event{ev("a", "4"), ev("a", "5")}}).events
	live = append(live, mustCommit(t, h.s, store.Txn{Events: []store.Event{ev("a", "6")}}).events...)
	if diff := cmp.Diff(live, recvN(t, ch, 3)); diff != "" {
		t.Errorf("live events mismatch (-want +got):\n%s", diff)
	}
	// A commit without events sends nothing.
	put(t, h.s, "k", "v")
	last := mustCommit(t, h.s, store.Txn{Events: []store.Event{ev("a", "7")}}).events
	if diff := cmp.Diff(last, recvN(t, ch, 1)); diff != "" {
		t.Errorf("event after a commit without events mismatch (-want +got):\n%s", diff)
	}
}

func testWatchResume(t *testing.T, h *harness) {
	ctx := t.Context()
	var all []store.Event
	for i := range 5 {
		all = append(all, mustCommit(t, h.s, store.Txn{Events: []store.Event{ev("a", fmt.Sprint(i))}}).events...)
	}
	ch, err := h.s.Watch(ctx, all[2].Seq)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(all[3:], recvN(t, ch, 2)); diff != "" {
		t.Errorf("Watch(%d) backlog mismatch (-want +got):\n%s", all[2].Seq, diff)
	}
	// Resuming from the last Seq: nothing old, then the new.
	ch2, err := h.s.Watch(ctx, all[4].Seq)
	if err != nil {
		t.Fatal(err)
	}
	// Resuming from beyond the log: only events after that Seq.
	ch3, err := h.s.Watch(ctx, all[4].Seq+1)
	if err != nil {
		t.Fatal(err)
	}
	more := mustCommit(t, h.s, store.Txn{Events: []store.Event{ev("a", "5"), ev("a", "6")}}).events
	if diff := cmp.Diff(more, recvN(t, ch2, 2)); diff != "" {
		t.Errorf("Watch(%d) mismatch (-want +got):\n%s", all[4].Seq, diff)
	}
	if diff := cmp.Diff(more[1:], recvN(t, ch3, 1)); diff != "" {
		t.Errorf("Watch(%d) mismatch (-want +got):\n%s", all[4].Seq+1, diff)
	}
	if diff := cmp.Diff(more, recvN(t, ch, 2)); diff != "" {
		t.Errorf("Watch(%d) live mismatch (-want +got):\n%s", all[2].Seq, diff)
	}
}

// testWatchRacesCommits starts watchers from arbitrary Seqs while several
// goroutines commit, so the switch from backlog to live events races with
// commits, and checks that each watcher sees exactly the log after its
// Seq: no gap, no duplicate, in order. A watcher closed for lagging
// resumes from its last Seq, as the interface tells consumers to.
func testWatchRacesCommits(t *testing.T, h *harness) {
	ctx := t.Context()
	const (
		committers = 4
		commits    = 25
		watchers   = 24
	)
	var (
		lastCommitted atomic.Uint64
		finalSeq      atomic.Uint64
		finished      = make(chan struct{})
		starts        = make(chan uint64, watchers)
		wg            sync.WaitGroup
	)
	type result struct {
		since uint64
		got   []store.Event
	}
	var (
		resultsMu sync.Mutex
		results   []result
	)
	watch := func(since uint64) {
		defer wg.Done()
		got, last := []store.Event{}, since
		done := finished
		ch, err := h.s.Watch(ctx, since)
		if err != nil {
			t.Errorf("Watch(%d): %v", since, err)
			return
		}
		deadline := time.After(waitFor)
		for done != nil || last < finalSeq.Load() {
			select {
			case e, ok := <-ch:
				if !ok {
					if ch, err = h.s.Watch(ctx, last); err != nil {
						t.Errorf("resume Watch(%d): %v", last, err)
						return
					}
					continue
				}
				got = append(got, e)
				last = e.Seq
			case <-done:
				done = nil
			case <-deadline:
				t.Errorf("watcher from %d: have events up to %d after %v, want up to %d", since, last, waitFor, finalSeq.Load())
				return
			}
		}
		resultsMu.Lock()
		results = append(results, result{since, got})
		resultsMu.Unlock()
	}

	var committing sync.WaitGroup
	for c := range committers {
		committing.Add(1)
		go func() {
			defer committing.Done()
			for i := range commits {
				n := 1 + (c+i)%3
				in := make([]store.Event, n)
				for j := range in {
					in[j] = ev(fmt.Sprintf("ep%d", c), fmt.Sprintf("c%d.%d.%d", c, i, j))
				}
				_, evs, err := h.s.Commit(ctx, store.Txn{Events: in})
				if err != nil {
					t.Errorf("Commit: %v", err)
					return
				}
				for {
					cur := lastCommitted.Load()
					if evs[n-1].Seq <= cur || lastCommitted.CompareAndSwap(cur, evs[n-1].Seq) {
						break
					}
				}
				// Committer 0 starts watchers as it goes, from Seqs at,
				// behind and ahead of the log's end.
				if c == 0 && i%(commits/watchers+1) == 0 {
					for range 2 {
						cur := lastCommitted.Load()
						since := rand.Uint64N(cur + 3)
						select {
						case starts <- since:
						default:
						}
					}
				}
			}
		}()
	}
	started := 0
	go func() {
		committing.Wait()
		close(starts)
	}()
	for since := range starts {
		wg.Add(1)
		started++
		go watch(since)
	}
	log, err := h.s.Events(ctx, store.EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	finalSeq.Store(uint64(len(log)))
	close(finished)
	wg.Wait()
	if started < watchers/2 {
		t.Errorf("only %d watchers started", started)
	}
	for i, e := range log {
		if e.Seq != uint64(i+1) {
			t.Fatalf("log[%d].Seq = %d, want %d", i, e.Seq, i+1)
		}
	}
	for _, r := range results {
		want := []store.Event{}
		if r.since < uint64(len(log)) {
			want = log[r.since:]
		}
		if diff := cmp.Diff(want, r.got); diff != "" {
			t.Errorf("watcher from Seq %d saw (-want +got):\n%s", r.since, diff)
		}
	}
}

// testWatchSlowConsumer: a consumer that reads nothing while many events
// commit must not block Commit; it gets an in-order prefix, then either
// everything or a closed channel, and resumes from its last Seq.
func testWatchSlowConsumer(t *testing.T, h *harness) {
	ctx := t.Context()
	ch, err := h.s.Watch(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	committed := make(chan []store.Event, 1)
	go func() {
		var all []store.Event
		for i := range 3 {
			in := make([]store.Event, 700)
			for j := range in {
				in[j] = ev("slow", fmt.Sprintf("%d.%d", i, j))
			}
			_, evs, err := h.s.Commit(ctx, store.Txn{Events: in})
			if err != nil {
				t.Errorf("Commit: %v", err)
			}
			all = append(all, evs...)
		}
		committed <- all
	}()
	var want []store.Event
	select {
	case want = <-committed:
	case <-time.After(waitFor):
		t.Fatalf("Commit blocked on a watcher that reads nothing for %v", waitFor)
	}
	got := drain(t, ch, len(want))
	resumes := 0
	for len(got) < len(want) {
		resumes++
		if resumes > len(want) {
			t.Fatalf("no progress resuming the watch at Seq %d", got[len(got)-1].Seq)
		}
		var since uint64
		if len(got) > 0 {
			since = got[len(got)-1].Seq
		}
		if ch, err = h.s.Watch(ctx, since); err != nil {
			t.Fatal(err)
		}
		got = append(got, drain(t, ch, len(want)-len(got))...)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("slow consumer saw (-want +got):\n%s", diff)
	}
}

func testWatchCancel(t *testing.T, h *harness) {
	// A live watcher, one blocked sending a large backlog, and one whose
	// context ends before Watch is called.
	liveCtx, cancelLive := context.WithCancel(t.Context())
	live, err := h.s.Watch(liveCtx, 0)
	if err != nil {
		t.Fatal(err)
	}
	commitMany(t, h.s, 2000)
	backlogCtx, cancelBacklog := context.WithCancel(t.Context())
	backlog, err := h.s.Watch(backlogCtx, 0)
	if err != nil {
		t.Fatal(err)
	}
	cancelLive()
	cancelBacklog()
	for name, ch := range map[string]<-chan store.Event{"live": live, "backlog": backlog} {
		got := waitClosed(t, ch, name)
		for i, e := range got {
			if e.Seq != uint64(i+1) {
				t.Fatalf("%s watcher: event %d has Seq %d, want %d", name, i, e.Seq, i+1)
			}
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if ch, err := h.s.Watch(ctx, 0); err == nil {
		waitClosed(t, ch, "canceled before Watch")
	}
	// The store still works.
	mustCommit(t, h.s, store.Txn{Events: []store.Event{ev("", "after")}})
}

func testConcurrentCommits(t *testing.T, h *harness) {
	ctx := t.Context()
	const goroutines, each = 16, 8
	var (
		mu   sync.Mutex
		revs = map[uint64]bool{}
		got  = map[uint64]string{}
		wg   sync.WaitGroup
	)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				key := fmt.Sprintf("c/%02d/%02d", g, i)
				rev, evs, err := h.s.Commit(ctx, store.Txn{
					Ops:    []store.Op{{Key: key, Value: []byte(key), Guard: store.MustNotExist}},
					Events: []store.Event{ev("c", key)},
				})
				if err != nil {
					t.Errorf("Commit(%s): %v", key, err)
					return
				}
				mu.Lock()
				if revs[rev] {
					t.Errorf("revision %d returned twice", rev)
				}
				revs[rev] = true
				if prev, dup := got[evs[0].Seq]; dup {
					t.Errorf("Seq %d assigned to %s and %s", evs[0].Seq, prev, key)
				}
				got[evs[0].Seq] = key
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for seq := uint64(1); seq <= goroutines*each; seq++ {
		if _, ok := got[seq]; !ok {
			t.Errorf("Seq %d missing: Seqs are not contiguous", seq)
		}
	}
	kvs, err := h.s.List(ctx, "c/")
	if err != nil {
		t.Fatal(err)
	}
	if len(kvs) != goroutines*each {
		t.Errorf("List(c/) has %d keys, want %d", len(kvs), goroutines*each)
	}
	log, err := h.s.Events(ctx, store.EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range log {
		if got[e.Seq] != e.Message {
			t.Errorf("event %d stored as %q, Commit returned it for %q", e.Seq, e.Message, got[e.Seq])
		}
	}
}

// testConcurrentReadModifyWrite: goroutines increment one counter with
// optimistic concurrency, retrying on ErrConflict; no increment is lost.
func testConcurrentReadModifyWrite(t *testing.T, h *harness) {
	ctx := t.Context()
	const goroutines, each = 16, 5
	var conflicts atomic.Int64
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; {
				var n int
				var rev uint64
				kv, err := h.s.Get(ctx, "counter")
				switch {
				case errors.Is(err, store.ErrNotFound):
				case err != nil:
					t.Errorf("Get(counter): %v", err)
					return
				default:
					if _, err := fmt.Sscan(string(kv.Value), &n); err != nil {
						t.Errorf("counter value %q: %v", kv.Value, err)
						return
					}
					rev = kv.ModRevision
				}
				_, _, err = h.s.Commit(ctx, store.Txn{
					Ops:             []store.Op{{Key: "counter", Value: []byte(fmt.Sprint(n + 1))}},
					ExpectRevisions: map[string]uint64{"counter": rev},
					Events:          []store.Event{ev("c", fmt.Sprintf("g%d: %d -> %d", g, n, n+1))},
				})
				switch {
				case errors.Is(err, store.ErrConflict):
					conflicts.Add(1)
				case err != nil:
					t.Errorf("Commit: %v", err)
					return
				default:
					i++
				}
			}
		}()
	}
	wg.Wait()
	kv, err := h.s.Get(ctx, "counter")
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprint(goroutines * each); string(kv.Value) != want {
		t.Errorf("counter = %s after %d increments (%d conflicts retried), want %s", kv.Value, goroutines*each, conflicts.Load(), want)
	}
	log, err := h.s.Events(ctx, store.EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(log) != goroutines*each {
		t.Errorf("%d events for %d successful increments", len(log), goroutines*each)
	}
	for i, e := range log {
		if want := fmt.Sprintf("%d -> %d", i, i+1); len(e.Message) < len(want) || e.Message[len(e.Message)-len(want):] != want {
			t.Errorf("event %d = %q, want it to end in %q", e.Seq, e.Message, want)
		}
	}
}

func testClose(t *testing.T, h *harness) {
	ctx := t.Context()
	live, err := h.s.Watch(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	commitMany(t, h.s, 2000)
	backlog, err := h.s.Watch(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	waitClosed(t, live, "live")
	waitClosed(t, backlog, "backlog")

	checks := map[string]func() error{
		"Get":  func() error { _, err := h.s.Get(ctx, "k"); return err },
		"List": func() error { _, err := h.s.List(ctx, ""); return err },
		"Commit": func() error {
			_, _, err := h.s.Commit(ctx, store.Txn{Ops: []store.Op{{Key: "k", Value: []byte("v")}}})
			return err
		},
		"Events":  func() error { _, err := h.s.Events(ctx, store.EventFilter{}); return err },
		"Watch":   func() error { _, err := h.s.Watch(ctx, 0); return err },
		"Close":   h.s.Close,
		"LastSeq": func() error { _, err := h.s.LastSeq(ctx); return err },
	}
	for name, call := range checks {
		if err := call(); !errors.Is(err, store.ErrClosed) {
			t.Errorf("%s after Close: error = %v, want ErrClosed", name, err)
		}
	}
}

func testSurvivesReopen(t *testing.T, h *harness) {
	ctx := t.Context()
	mustCommit(t, h.s, store.Txn{Ops: []store.Op{
		{Key: "endpoints/fraud", Value: []byte(`{"traffic":{"blue":100}}`)},
		{Key: "endpoints/spam", Value: []byte(`{}`)},
		{Key: "gone", Value: []byte("x")},
	}, Events: []store.Event{ev("fraud", "created")}})
	last := mustCommit(t, h.s, store.Txn{
		Ops:    []store.Op{{Key: "gone", Delete: true}, {Key: "endpoints/spam", Value: []byte(`{"v":2}`)}},
		Events: []store.Event{ev("spam", "updated")},
	})
	keysBefore, err := h.s.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	eventsBefore, err := h.s.Events(ctx, store.EventFilter{})
	if err != nil {
		t.Fatal(err)
	}

	h.doReopen()
	keysAfter, err := h.s.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(keysBefore, keysAfter); diff != "" {
		t.Errorf("keys after reopen (-before +after):\n%s", diff)
	}
	eventsAfter, err := h.s.Events(ctx, store.EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(eventsBefore, eventsAfter); diff != "" {
		t.Errorf("events after reopen (-before +after):\n%s", diff)
	}
	if _, err := h.s.Get(ctx, "gone"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deleted key after reopen: error = %v, want ErrNotFound", err)
	}
	// Revisions keep working: a stale expectation still conflicts, a
	// current one commits.
	if _, _, err := h.s.Commit(ctx, store.Txn{
		Ops:             []store.Op{{Key: "endpoints/spam", Value: []byte("x")}},
		ExpectRevisions: map[string]uint64{"endpoints/spam": last.rev - 1},
	}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("stale expectation after reopen: error = %v, want ErrConflict", err)
	}
	next := mustCommit(t, h.s, store.Txn{
		Ops:             []store.Op{{Key: "endpoints/spam", Value: []byte("x")}},
		ExpectRevisions: map[string]uint64{"endpoints/spam": last.rev},
		Events:          []store.Event{ev("spam", "again")},
	})
	// A watch from before the reopen replays the old log, then the new.
	ch, err := h.s.Watch(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(append(eventsBefore, next.events...), recvN(t, ch, len(eventsBefore)+1)); diff != "" {
		t.Errorf("Watch after reopen (-want +got):\n%s", diff)
	}
}

// committed is what a successful Commit returned.
type committed struct {
	rev    uint64
	events []store.Event
}

func mustCommit(t *testing.T, s store.Store, txn store.Txn) committed {
	t.Helper()
	rev, evs, err := s.Commit(t.Context(), txn)
	if err != nil {
		t.Fatalf("Commit: %v", err)
	}
	return committed{rev, evs}
}

func put(t *testing.T, s store.Store, key, value string) uint64 {
	t.Helper()
	return mustCommit(t, s, store.Txn{Ops: []store.Op{{Key: key, Value: []byte(value)}}}).rev
}

// commitMany commits n events in one transaction.
func commitMany(t *testing.T, s store.Store, n int) {
	t.Helper()
	in := make([]store.Event, n)
	for i := range in {
		in[i] = ev("bulk", fmt.Sprint(i))
	}
	mustCommit(t, s, store.Txn{Events: in})
}

func ev(endpoint, msg string) store.Event {
	return store.Event{Endpoint: endpoint, Type: "test", Message: msg}
}

func lastSeq(t *testing.T, s store.Store) uint64 {
	t.Helper()
	evs, err := s.Events(t.Context(), store.EventFilter{})
	if err != nil {
		t.Fatalf("Events: %v", err)
	}
	if len(evs) == 0 {
		return 0
	}
	return evs[len(evs)-1].Seq
}

func keys(kvs []store.KV) []string {
	var out []string
	for _, kv := range kvs {
		out = append(out, kv.Key)
	}
	return out
}

func seqs(evs []store.Event) []uint64 {
	var out []uint64
	for _, e := range evs {
		out = append(out, e.Seq)
	}
	return out
}

// recvN receives n events, failing if the channel closes or they take
// longer than waitFor.
func recvN(t *testing.T, ch <-chan store.Event, n int) []store.Event {
	t.Helper()
	deadline := time.After(waitFor)
	var got []store.Event
	for len(got) < n {
		select {
		case e, ok := <-ch:
			if !ok {
				t.Fatalf("watch channel closed after %d of %d events", len(got), n)
			}
			got = append(got, e)
		case <-deadline:
			t.Fatalf("received %d of %d events in %v", len(got), n, waitFor)
		}
	}
	return got
}

// drain receives until the channel closes or max events arrived.
func drain(t *testing.T, ch <-chan store.Event, max int) []store.Event {
	t.Helper()
	deadline := time.After(waitFor)
	var got []store.Event
	for len(got) < max {
		select {
		case e, ok := <-ch:
			if !ok {
				return got
			}
			got = append(got, e)
		case <-deadline:
			t.Fatalf("received %d of %d events in %v, and the channel is still open", len(got), max, waitFor)
		}
	}
	return got
}

// waitClosed drains ch until it closes, failing after waitFor.
func waitClosed(t *testing.T, ch <-chan store.Event, name string) []store.Event {
	t.Helper()
	deadline := time.After(waitFor)
	var got []store.Event
	for {
		select {
		case e, ok := <-ch:
			if !ok {
				return got
			}
			got = append(got, e)
		case <-deadline:
			t.Fatalf("%s watch channel still open after %v (%d events drained)", name, waitFor, len(got))
		}
	}
}
