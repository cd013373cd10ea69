package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/store"
)

// request is what a receiver got.
type request struct {
	header http.Header
	body   []byte
}

func (r request) event(t *testing.T) store.Event {
	t.Helper()
	var e store.Event
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("decode delivered body %s: %v", r.body, err)
	}
	return e
}

// receiver is a real HTTP webhook receiver that answers with respond(n, r),
// n counting its requests from 1, and records every request.
type receiver struct {
	srv  *httptest.Server
	mu   sync.Mutex
	reqs []request
	got  chan request
}

func newReceiver(t *testing.T, respond func(n int, r *http.Request) int) *receiver {
	t.Helper()
	rc := &receiver{got: make(chan request, 100)}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req := request{header: r.Header.Clone(), body: body}
		rc.mu.Lock()
		rc.reqs = append(rc.reqs, req)
		n := len(rc.reqs)
		rc.mu.Unlock()
		code := respond(n, r)
		w.WriteHeader(code)
		rc.got <- req
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) requests() []request {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]request(nil), rc.reqs...)
}

func status(code int) func(int, *http.Request) int {
	return func(int, *http.Request) int { return code }
}

// clock replaces the Sender's timers: every wait is recorded, then ends
// when fire is closed (at once by default).
type clock struct {
	mu    sync.Mutex
	waits []time.Duration
	fire  chan time.Time
}

func newClock() *clock {
	c := &clock{fire: make(chan time.Time)}
	close(c.fire)
	return c
}

func (c *clock) after(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.waits = append(c.waits, d)
	return c.fire
}

func (c *clock) recorded() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.waits...)
}

// harness is a Sender with an injected clock whose outcomes the test can
// wait for, and whose Run the test controls.
type harness struct {
	*Sender
	clock    *clock
	outcomes chan error
	cancel   context.CancelFunc
	stopped  chan struct{}
}

func newHarness(t *testing.T, opts Options) *harness {
	t.Helper()
	h := &harness{Sender: New(opts), clock: newClock(), outcomes: make(chan error, 100)}
	h.after = h.clock.after
	h.finished = func(_ string, err error) { h.outcomes <- err }
	return h
}

// run starts Run; the test's cleanup stops it.
func (h *harness) run(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.stopped = cancel, make(chan struct{})
	go func() { h.Run(ctx); close(h.stopped) }()
	t.Cleanup(func() { h.stop(t) })
}

// stop cancels Run and waits for it to return. The bound only turns a hang
// into a failure; nothing depends on it.
func (h *harness) stop(t *testing.T) {
	t.Helper()
	h.cancel()
	select {
	case <-h.stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

// wait returns the next n delivery outcomes.
func (h *harness) wait(t *testing.T, n int) []error {
	t.Helper()
	var errs []error
	for range n {
		select {
		case err := <-h.outcomes:
			errs = append(errs, err)
		case <-time.After(10 * time.Second):
			t.Fatalf("got %d delivery outcomes, want %d", len(errs), n)
		}
	}
	return errs
}

func event(seq uint64) store.Event {
	return store.Event{
		Seq:      seq,
		Time:     time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC),
		Endpoint: "fraud",
		Type:     "rollout.stage_changed",
		Actor:    "controller",
		Message:  "stage " + strconv.FormatUint(seq, 10),
		Data:     json.RawMessage(`{"weight":25}`),
	}
}

func TestDeliveryBodyAndHeaders(t *testing.T) {
	rc := newReceiver(t, status(http.StatusOK))
	h := newHarness(t, Options{})
	h.run(t)
	e := event(7)
	if !h.Send([]spec.Webhook{{URL: rc.srv.URL + "/hook"}}, e) {
		t.Fatal("Send = false, want true")
	}
	if errs := h.wait(t, 1); errs[0] != nil {
		t.Fatalf("delivery: %v", errs[0])
	}
	req := rc.requests()[0]
	if diff := cmp.Diff(e, req.event(t)); diff != "" {
		t.Errorf("delivered event (-want +got):\n%s", diff)
	}
	for name, want := range map[string]string{
		"Content-Type":          "application/json",
		"User-Agent":            "modelgate",
		"X-Modelgate-Event":     "rollout.stage_changed",
		"X-Modelgate-Signature": "", // no secret, no signature
	} {
		if got := req.header.Get(name); got != want {
			t.Errorf("header %s = %q, want %q", name, got, want)
		}
	}
	if id := req.header.Get("X-Modelgate-Delivery"); len(id) != 36 {
		t.Errorf("X-Modelgate-Delivery = %q, want a UUID", id)
	}
	if diff := cmp.Diff(Stats{Delivered: 1}, h.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}

func TestSignature(t *testing.T) {
	rc := newReceiver(t, status(http.StatusNoContent))
	h := newHarness(t, Options{})
	h.run(t)
	h.Send([]spec.Webhook{{URL: rc.srv.URL, Secret: "s3cret"}}, event(1))
	h.wait(t, 1)
	req := rc.requests()[0]
	sig := req.header.Get("X-Modelgate-Signature")
	if !Verify("s3cret", req.body, sig) {
		t.Errorf("Verify(right secret, body, %q) = false, want true", sig)
	}
	if Verify("other", req.body, sig) {
		t.Errorf("Verify(other secret, body, %q) = true, want false", sig)
	}
}

func TestVerify(t *testing.T) {
	body := []byte(`{"type":"x"}`)
	good := Sign("k", body)
	tests := []struct {
		name   string
		secret string
		body   []byte
		header string
		want   bool
	}{
		{"valid", "k", body, good, true},
		{"other secret", "j", body, good, false},
		{"other body", "k", []byte(`{"type":"y"}`), good, false},
		{"no prefix", "k", body, good[len("sha256="):], false},
		{"not hex", "k", body, "sha256=zz", false},
		{"truncated", "k", body, good[:len(good)-2], false},
		{"empty", "k", body, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Verify(tc.secret, tc.body, tc.header); got != tc.want {
				t.Errorf("Verify(%q, %s, %q) = %v, want %v", tc.secret, tc.body, tc.header, got, tc.want)
			}
		})
	}
}

func FuzzVerify(f *testing.F) {
	f.Add("k", []byte(`{}`), "sha256=00")
	f.Fuzz(func(t *testing.T, secret string, body []byte, header string) {
		Verify(secret, body, header) // must not panic
		if sig := Sign(secret, body); !Verify(secret, body, sig) {
			t.Errorf("Verify(%q, %q, Sign(...)) = false, want true", secret, body)
		}
	})
}

func TestRetryThenDelivered(t *testing.T) {
	rc := newReceiver(t, func(n int, _ *http.Request) int {
		if n <= 2 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	base := 100 * time.Millisecond
	h := newHarness(t, Options{BaseBackoff: base})
	h.run(t)
	h.Send([]spec.Webhook{{URL: rc.srv.URL}}, event(1))
	if errs := h.wait(t, 1); errs[0] != nil {
		t.Fatalf("delivery: %v", errs[0])
	}
	reqs := rc.requests()
	if len(reqs) != 3 {
		t.Fatalf("receiver got %d attempts, want 3", len(reqs))
	}
	id := reqs[0].header.Get("X-Modelgate-Delivery")
	for i, r := range reqs {
		if got := r.header.Get("X-Modelgate-Delivery"); got != id {
			t.Errorf("attempt %d X-Modelgate-Delivery = %q, want %q as the first", i+1, got, id)
		}
	}
	waits := h.clock.recorded()
	if len(waits) != 2 {
		t.Fatalf("waits = %v, want 2", waits)
	}
	for i, w := range waits {
		hi := base << i
		if w < hi/2 || w > hi {
			t.Errorf("wait %d = %v, want between %v and %v", i+1, w, hi/2, hi)
		}
	}
	if diff := cmp.Diff(Stats{Delivered: 1, Retried: 2}, h.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}

func TestNotRetried(t *testing.T) {
	for _, code := range []int{http.StatusBadRequest, http.StatusUnauthorized, http.StatusNotFound, http.StatusFound} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			rc := newReceiver(t, status(code))
			h := newHarness(t, Options{})
			h.run(t)
			h.Send([]spec.Webhook{{URL: rc.srv.URL}}, event(1))
			err := h.wait(t, 1)[0]
			var se *StatusError
			if !errors.As(err, &se) || se.StatusCode != code {
				t.Errorf("outcome = %v, want a StatusError %d", err, code)
			}
			if n := len(rc.requests()); n != 1 {
				t.Errorf("receiver got %d attempts, want 1", n)
			}
			if diff := cmp.Diff(Stats{Failed: 1}, h.Stats()); diff != "" {
				t.Errorf("Stats (-want +got):\n%s", diff)
			}
		})
	}
}

func TestGiveUpAfterMaxAttempts(t *testing.T) {
	rc := newReceiver(t, status(http.StatusInternalServerError))
	h := newHarness(t, Options{MaxAttempts: 3})
	h.run(t)
	h.Send([]spec.Webhook{{URL: rc.srv.URL}}, event(1))
	if err := h.wait(t, 1)[0]; err == nil {
		t.Fatal("outcome = nil, want an error")
	}
	if n := len(rc.requests()); n != 3 {
		t.Errorf("receiver got %d attempts, want 3", n)
	}
	if diff := cmp.Diff(Stats{Failed: 1, Retried: 2}, h.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}

func TestTransportErrorRetried(t *testing.T) {
	rc := newReceiver(t, status(http.StatusOK))
	url := rc.srv.URL
	rc.srv.Close() // connection refused from now on
	h := newHarness(t, Options{MaxAttempts: 2})
	h.run(t)
	h.Send([]spec.Webhook{{URL: url}}, event(1))
	h.wait(t, 1)
	if diff := cmp.Diff(Stats{Failed: 1, Retried: 1}, h.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	rc := newReceiver(t, func(n int, r *http.Request) int {
		if n == 1 {
			return http.StatusTooManyRequests
		}
		return http.StatusOK
	})
	// The header must be set before WriteHeader, so wrap the handler.
	inner := rc.srv.Config.Handler
	rc.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "7")
		inner.ServeHTTP(w, r)
	})
	h := newHarness(t, Options{})
	h.run(t)
	h.Send([]spec.Webhook{{URL: rc.srv.URL}}, event(1))
	if err := h.wait(t, 1)[0]; err != nil {
		t.Fatalf("delivery: %v", err)
	}
	if diff := cmp.Diff([]time.Duration{7 * time.Second}, h.clock.recorded()); diff != "" {
		t.Errorf("waits (-want +got):\n%s", diff)
	}
}

func TestRetryAfterParse(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"0", 0},
		{"-3", 0},
		{"7", 7 * time.Second},
		{" 12 ", 12 * time.Second},
		{"3600", MaxBackoff},
		{"99999999999999999", MaxBackoff},
		{now.Add(10 * time.Second).Format(http.TimeFormat), 10 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{"soon", 0},
	}
	for _, tc := range tests {
		if got := retryAfter(tc.in, now); got != tc.want {
			t.Errorf("retryAfter(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestBackoff(t *testing.T) {
	base := 500 * time.Millisecond
	for n := 1; n <= 12; n++ {
		hi := min(base<<(n-1), MaxBackoff)
		for range 100 {
			if got := backoff(base, n); got < hi/2 || got > hi {
				t.Fatalf("backoff(%v, %d) = %v, want between %v and %v", base, n, got, hi/2, hi)
			}
		}
	}
	if got := backoff(base, 1000); got > MaxBackoff {
		t.Errorf("backoff(%v, 1000) = %v, want at most %v", base, got, MaxBackoff)
	}
}

// TestOrderPerHook checks that a hook's later events wait while an earlier
// one is retried, and that another hook is not held up meanwhile.
func TestOrderPerHook(t *testing.T) {
	slow := newReceiver(t, func(n int, _ *http.Request) int {
		if n <= 2 {
			return http.StatusBadGateway
		}
		return http.StatusOK
	})
	fast := newReceiver(t, status(http.StatusOK))
	h := newHarness(t, Options{})
	gate := make(chan time.Time)
	h.clock.fire = gate // retry waits last until the test closes gate
	h.run(t)
	hooks := []spec.Webhook{{URL: slow.srv.URL}, {URL: fast.srv.URL}}
	for seq := uint64(1); seq <= 5; seq++ {
		if !h.Send(hooks, event(seq)) {
			t.Fatalf("Send(%d) = false, want true", seq)
		}
	}

	h.wait(t, 5) // every delivery to fast, while slow waits to retry event 1
	var fastSeqs []uint64
	for _, r := range fast.requests() {
		fastSeqs = append(fastSeqs, r.event(t).Seq)
	}
	if diff := cmp.Diff([]uint64{1, 2, 3, 4, 5}, fastSeqs); diff != "" {
		t.Errorf("fast hook got seqs (-want +got):\n%s", diff)
	}

	close(gate)
	h.wait(t, 5)
	var slowSeqs []uint64
	for _, r := range slow.requests() {
		slowSeqs = append(slowSeqs, r.event(t).Seq)
	}
	if diff := cmp.Diff([]uint64{1, 1, 1, 2, 3, 4, 5}, slowSeqs); diff != "" {
		t.Errorf("slow hook got seqs (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(Stats{Delivered: 10, Retried: 2}, h.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}

func TestQueueFull(t *testing.T) {
	rc := newReceiver(t, status(http.StatusOK))
	h := newHarness(t, Options{QueueSize: 2})
	one := []spec.Webhook{{URL: rc.srv.URL}}
	// Run is not started: nothing leaves the queue.
	for i, want := range []bool{true, true, false} {
		if got := h.Send(one, event(uint64(i+1))); got != want {
			t.Errorf("Send #%d = %v, want %v", i+1, got, want)
		}
	}
	if diff := cmp.Diff(Stats{Dropped: 1}, h.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}

	h.run(t)
	h.wait(t, 2)
	var seqs []uint64
	for _, r := range rc.requests() {
		seqs = append(seqs, r.event(t).Seq)
	}
	if diff := cmp.Diff([]uint64{1, 2}, seqs); diff != "" {
		t.Errorf("receiver got seqs (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(Stats{Delivered: 2, Dropped: 1}, h.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}

func TestQueueFullPartly(t *testing.T) {
	h := newHarness(t, Options{QueueSize: 1})
	hooks := []spec.Webhook{{URL: "http://a.invalid"}, {URL: "http://b.invalid"}}
	if h.Send(hooks, event(1)) {
		t.Error("Send(2 hooks, room for 1) = true, want false")
	}
	if got := h.Stats().Dropped; got != 1 {
		t.Errorf("Dropped = %d, want 1", got)
	}
}

func TestSendAfterRunEnded(t *testing.T) {
	h := newHarness(t, Options{})
	h.run(t)
	h.stop(t)
	if h.Send([]spec.Webhook{{URL: "http://a.invalid"}}, event(1)) {
		t.Error("Send after Run ended = true, want false")
	}
	if diff := cmp.Diff(Stats{Dropped: 1}, h.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}

func TestSendUnencodable(t *testing.T) {
	h := newHarness(t, Options{})
	e := event(1)
	e.Data = json.RawMessage(`{not json`)
	if h.Send([]spec.Webhook{{URL: "http://a.invalid"}}, e) {
		t.Error("Send(invalid Data) = true, want false")
	}
	if diff := cmp.Diff(Stats{Failed: 1}, h.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}

// TestRunStopsDuringBackoff: a retry wait (an hour here, on the real clock)
// is cut short when Run's context ends.
func TestRunStopsDuringBackoff(t *testing.T) {
	rc := newReceiver(t, status(http.StatusServiceUnavailable))
	h := newHarness(t, Options{BaseBackoff: time.Hour})
	h.after = time.After
	h.run(t)
	h.Send([]spec.Webhook{{URL: rc.srv.URL}}, event(1))
	<-rc.got
	h.stop(t)
	if diff := cmp.Diff(Stats{Failed: 1}, h.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}

// TestRunAbortsHungDelivery: an attempt that outlives the drain is aborted,
// and what is still queued is dropped.
func TestRunAbortsHungDelivery(t *testing.T) {
	arrived := make(chan struct{}, 1)
	rc := newReceiver(t, func(_ int, r *http.Request) int {
		arrived <- struct{}{}
		<-r.Context().Done() // hangs until the sender gives up
		return http.StatusOK
	})
	h := newHarness(t, Options{})
	drain := make(chan time.Time)
	h.clock.fire = drain
	h.run(t)
	hook := []spec.Webhook{{URL: rc.srv.URL, Timeout: spec.Duration(time.Hour)}}
	h.Send(hook, event(1))
	h.Send(hook, event(2))
	<-arrived
	h.cancel()
	close(drain) // the drain time is up
	h.stop(t)
	if diff := cmp.Diff(Stats{Failed: 1, Dropped: 1}, h.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}

// TestRunDrainsQueue: deliveries queued when Run's context ends are still
// made within the drain.
func TestRunDrainsQueue(t *testing.T) {
	arrived, release := make(chan struct{}), make(chan struct{})
	rc := newReceiver(t, func(n int, _ *http.Request) int {
		if n == 1 {
			close(arrived)
			<-release
		}
		return http.StatusOK
	})
	h := newHarness(t, Options{})
	h.clock.fire = make(chan time.Time) // the drain never times out
	h.run(t)
	hook := []spec.Webhook{{URL: rc.srv.URL}}
	for seq := uint64(1); seq <= 3; seq++ {
		h.Send(hook, event(seq))
	}
	<-arrived
	h.cancel()
	close(release)
	h.stop(t)
	if diff := cmp.Diff(Stats{Delivered: 3}, h.Stats()); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}

func TestConfirm(t *testing.T) {
	payload := map[string]any{"endpoint": "fraud", "canary": "green", "stage": 4}
	tests := []struct {
		name    string
		respond func(int, *http.Request) int
		timeout time.Duration
		code    int  // a StatusError with this code; 0: none
		timeOut bool // the error is the hook's timeout
	}{
		{name: "200", respond: status(http.StatusOK)},
		{name: "204", respond: status(http.StatusNoContent)},
		{name: "500", respond: status(http.StatusInternalServerError), code: 500},
		{name: "403", respond: status(http.StatusForbidden), code: 403},
		{
			name: "timeout",
			respond: func(_ int, r *http.Request) int {
				<-r.Context().Done()
				return http.StatusOK
			},
			// Long enough for the request to reach the receiver on a
			// loaded machine; the receiver never answers, so only the
			// hook's timeout ends the call.
			timeout: 500 * time.Millisecond,
			timeOut: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rc := newReceiver(t, tc.respond)
			s := New(Options{})
			hook := spec.Webhook{URL: rc.srv.URL, Secret: "k", Timeout: spec.Duration(tc.timeout)}
			err := s.Confirm(t.Context(), hook, payload)
			switch {
			case tc.code != 0:
				var se *StatusError
				if !errors.As(err, &se) || se.StatusCode != tc.code {
					t.Errorf("Confirm = %v, want a StatusError %d", err, tc.code)
				}
			case tc.timeOut:
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("Confirm = %v, want a timeout", err)
				}
			case err != nil:
				t.Errorf("Confirm = %v, want nil", err)
			}
			// A timed-out call returns without waiting for the receiver's
			// handler, which records the request on its own goroutine:
			// wait until the handler is done with it.
			select {
			case <-rc.got:
			case <-time.After(10 * time.Second):
				t.Fatal("the receiver did not finish handling a confirm call within 10s")
			}
			reqs := rc.requests()
			if len(reqs) != 1 {
				t.Fatalf("receiver got %d requests, want 1", len(reqs))
			}
			r := reqs[0]
			if got := r.header.Get("X-Modelgate-Event"); got != ConfirmEvent {
				t.Errorf("X-Modelgate-Event = %q, want %q", got, ConfirmEvent)
			}
			if !Verify("k", r.body, r.header.Get("X-Modelgate-Signature")) {
				t.Error("signature does not verify")
			}
			var got map[string]any
			if err := json.Unmarshal(r.body, &got); err != nil || got["canary"] != "green" {
				t.Errorf("body = %s, want the payload", r.body)
			}
		})
	}
}

func TestConfirmUnreachable(t *testing.T) {
	rc := newReceiver(t, status(http.StatusOK))
	rc.srv.Close()
	err := New(Options{}).Confirm(t.Context(), spec.Webhook{URL: rc.srv.URL + "/secret-token"}, struct{}{})
	if err == nil {
		t.Fatal("Confirm(closed server) = nil, want an error")
	}
	if msg := err.Error(); strings.Contains(msg, "secret-token") {
		t.Errorf("Confirm error %q shows the URL's path", msg)
	}
}
