package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary serve as a stand-in backend too: run
// re-executes the running binary with backendEnv set.
func TestMain(m *testing.M) {
	if d, ok := os.LookupEnv(backendEnv); ok {
		serveBackend(d)
		return
	}
	os.Exit(m.Run())
}

// TestRunEndToEnd runs a tiny benchmark (one round of each mode, 2 s at
// 200 req/s) against a modelgate built from the work tree, and checks that
// it ran and that mirroring happened. Timings are never asserted: the full
// benchmark is `go run ./bench/shadow`.
func TestRunEndToEnd(t *testing.T) {
	o := defaultOptions()
	o.rate, o.duration, o.warmup, o.rounds = 200, 2*time.Second, 500*time.Millisecond, 1
	o.workers, o.queue, o.conns = 16, 200, 32
	var log strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := run(ctx, o, &log)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, log.String())
	}
	var rep strings.Builder
	res.report(&rep)
	t.Log("\n" + log.String() + "\n" + rep.String())

	if len(res.rounds) != 2 || res.rounds[0].mode != "A" || res.rounds[1].mode != "B" {
		t.Fatalf("rounds = %d, want A then B", len(res.rounds))
	}
	a, b := res.rounds[0], res.rounds[1]
	for _, r := range []round{a, b} {
		if want := 400; r.load.sent != want || r.load.ok+r.load.errors != want {
			t.Errorf("round %s: sent %d, answered %d, want %d", r.mode, r.load.sent, r.load.ok+r.load.errors, want)
		}
		if r.load.errors != 0 {
			t.Errorf("round %s: %d live errors", r.mode, r.load.errors)
		}
	}
	if a.metMirrored != 0 {
		t.Errorf("round A mirrored %.0f copies, want 0", a.metMirrored)
	}
	if b.repErr != nil {
		t.Fatalf("shadow report: %v", b.repErr)
	}
	if b.rep.Compared == 0 || b.rep.Mirrored == 0 {
		t.Fatalf("round B: mirrored %d, compared %d: no mirroring", b.rep.Mirrored, b.rep.Compared)
	}
	if b.rep.Mismatched != 0 {
		t.Errorf("round B: %d mismatches, the shadow agrees with the live answer", b.rep.Mismatched)
	}
	if b.shadowHits <= 0 {
		t.Errorf("round B: the shadow backend served %d requests", b.shadowHits)
	}
	if res.rssIdle <= 0 || b.hwm <= 0 {
		t.Errorf("RSS not read: idle %d KiB, VmHWM %d KiB", res.rssIdle, b.hwm)
	}
	if !strings.Contains(rep.String(), "Verdict") {
		t.Error("report has no verdict")
	}
}
