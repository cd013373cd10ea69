// Package webhook delivers rollout events to HTTP receivers: a signed JSON
// POST per event and hook, retried with backoff, in order per hook URL, from
// a bounded queue that never blocks the caller. It also makes the one-shot
// confirm-promotion call that holds a rollout's final step.
//
// Every request carries these headers:
//
//	Content-Type: application/json
//	User-Agent: modelgate
//	X-Modelgate-Event: <event type>
//	X-Modelgate-Delivery: <unique id, the same across retries of one delivery>
//	X-Modelgate-Signature: sha256=<hex HMAC-SHA256 of the body>  (only when the hook has a Secret)
//
// Receivers check the signature with Verify (or the same HMAC in any
// language) and may use the delivery id to ignore a retry they already
// processed: a delivery is at least once, never exactly once.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/store"
)

// Defaults of Options.
const (
	DefaultMaxAttempts = 5
	DefaultBaseBackoff = 500 * time.Millisecond
	DefaultQueueSize   = 1000
	// MaxBackoff caps the wait between two attempts, whether computed or
	// asked for by a Retry-After header.
	MaxBackoff = 30 * time.Second
)

// ConfirmEvent is the X-Modelgate-Event header of a Confirm call.
const ConfirmEvent = "rollout.confirm_promotion"

// drainTimeout is how long Run lets in-flight and queued deliveries go on
// after its context ends, before it aborts them.
const drainTimeout = 2 * time.Second

// Limits on what is read from a receiver's answer: a short excerpt for the
// error message, then enough to let the connection be reused.
const (
	bodyExcerpt = 512
	bodyDrain   = 64 << 10
)

// Options configure a Sender. The zero value is usable.
type Options struct {
	// Client sends the requests. Nil: a client on http.DefaultTransport
	// that does not follow redirects (a 3xx answer is a failure that is not
	// retried, rather than a POST silently turned into a GET). Each
	// attempt is bounded by the hook's Timeout whatever the client's own.
	Client *http.Client
	// Logger receives dropped and failed deliveries. Nil: discarded.
	Logger *slog.Logger
	// MaxAttempts is how many times one delivery is tried, the first
	// included, before it is given up. Zero or less: 5.
	MaxAttempts int
	// BaseBackoff is the wait before the first retry; it doubles for each
	// later retry, up to MaxBackoff, and the actual wait is drawn between
	// half of it and all of it (jitter). Zero or less: 500ms.
	BaseBackoff time.Duration
	// QueueSize bounds the deliveries waiting for their first attempt,
	// across all hooks; Send drops what does not fit. Zero or less: 1000.
	QueueSize int
}

// Stats are counters of the deliveries queued by Send, ready to be exported
// as Prometheus counters. Confirm calls are not counted.
type Stats struct {
	// Delivered deliveries were answered 2xx.
	Delivered uint64
	// Failed deliveries were given up: MaxAttempts reached, an answer that
	// is not retried (4xx other than 429, 3xx), or a retry cut short
	// because Run stopped.
	Failed uint64
	// Retried counts the attempts after the first.
	Retried uint64
	// Dropped deliveries were never attempted: the queue was full, Send
	// was called after Run ended, or Run ended before their turn came.
	Dropped uint64
}

// StatusError is an answer outside 2xx from a webhook receiver.
type StatusError struct {
	// Hook is the receiver's scheme and host; the path is left out because
	// webhook URLs often carry a token in it.
	Hook string
	// StatusCode is the HTTP status of the answer.
	StatusCode int
	// Body is the start of the answer's body, which often says why.
	Body string
	// RetryAfter is the wait the receiver asked for with Retry-After,
	// capped at MaxBackoff; zero when absent.
	RetryAfter time.Duration
}

// Error says who answered what.
func (e *StatusError) Error() string {
	msg := fmt.Sprintf("webhook %s answered %d %s", e.Hook, e.StatusCode, http.StatusText(e.StatusCode))
	if b := strings.TrimSpace(e.Body); b != "" {
		msg += fmt.Sprintf(": %q", b)
	}
	return msg
}

// Temporary reports whether the same request may succeed later: 5xx and
// 429 answers.
func (e *StatusError) Temporary() bool {
	return e.StatusCode >= 500 || e.StatusCode == http.StatusTooManyRequests
}

// Sender delivers events to webhooks. Its methods are safe for concurrent
// use.
//
// Deliveries to one hook URL are made one at a time, in the order Send was
// called: while an earlier event is being retried, the later ones for that
// URL wait behind it, so a receiver never sees a stage change before the
// one that came first. Each URL has its own worker, so a slow or failing
// receiver never delays another.
type Sender struct {
	client      *http.Client
	log         *slog.Logger
	maxAttempts int
	baseBackoff time.Duration
	queueSize   int

	// after and drain are replaced by tests to control time.
	after func(time.Duration) <-chan time.Time
	drain time.Duration
	// finished, when set by a test, is called with every delivery's final
	// outcome (nil: delivered).
	finished func(id string, err error)

	mu      sync.Mutex
	lanes   map[string]*lane // by hook URL; a lane is removed when empty
	ready   []*lane          // lanes with work and no worker yet
	pending int              // deliveries in lanes, not yet attempted
	stopped bool             // Run has ended or is ending
	wake    chan struct{}    // tells Run that ready has lanes

	delivered, failed, retried, dropped atomic.Uint64
}

// lane is the FIFO of one hook URL. active is true while a worker owns it
// (or is about to), so there is never more than one per URL.
type lane struct {
	url    string
	queue  []*delivery
	active bool
}

// delivery is one event for one hook, with what every attempt reuses.
type delivery struct {
	hook  spec.Webhook
	event string // type, for the header and the logs
	seq   uint64
	id    string
	body  []byte
	sig   string
}

// New returns a Sender. Deliveries start when Run is called; Send may be
// called before.
func New(opts Options) *Sender {
	s := &Sender{
		client:      opts.Client,
		log:         opts.Logger,
		maxAttempts: opts.MaxAttempts,
		baseBackoff: opts.BaseBackoff,
		queueSize:   opts.QueueSize,
		after:       time.After,
		drain:       drainTimeout,
		lanes:       make(map[string]*lane),
		wake:        make(chan struct{}, 1),
	}
	if s.client == nil {
		s.client = &http.Client{
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.maxAttempts <= 0 {
		s.maxAttempts = DefaultMaxAttempts
	}
	if s.baseBackoff <= 0 {
		s.baseBackoff = DefaultBaseBackoff
	}
	if s.queueSize <= 0 {
		s.queueSize = DefaultQueueSize
	}
	return s
}

// Send queues one delivery of e to each hook and returns at once. It
// returns false when any of them was not queued: the queue was full or
// Run has ended (counted as dropped), or e cannot be encoded as JSON
// (counted as failed); each case is logged. Hooks that fit are queued
// even when others do not.
func (s *Sender) Send(hooks []spec.Webhook, e store.Event) bool {
	if len(hooks) == 0 {
		return true
	}
	body, err := json.Marshal(e)
	if err != nil {
		s.failed.Add(uint64(len(hooks)))
		s.log.Error("webhook event not sent: cannot encode it", "event", e.Type, "seq", e.Seq, "err", err)
		return false
	}
	s.mu.Lock()
	dropped, stopped := 0, s.stopped
	for _, h := range hooks {
		if stopped || s.pending >= s.queueSize {
			dropped++
			continue
		}
		d := &delivery{hook: h, event: e.Type, seq: e.Seq, id: newID(), body: body}
		if h.Secret != "" {
			d.sig = Sign(h.Secret, body)
		}
		l := s.lanes[h.URL]
		if l == nil {
			l = &lane{url: h.URL}
			s.lanes[h.URL] = l
		}
		l.queue = append(l.queue, d)
		s.pending++
		if !l.active {
			l.active = true
			s.ready = append(s.ready, l)
		}
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default: // Run has a wake-up pending already
	}
	if dropped == 0 {
		return true
	}
	total := s.dropped.Add(uint64(dropped))
	reason := "queue full"
	if stopped {
		reason = "sender stopped"
	}
	s.log.Warn("webhook deliveries dropped", "reason", reason, "event", e.Type, "seq", e.Seq,
		"dropped", dropped, "dropped_total", total)
	return false
}

// Run makes the deliveries until ctx ends. Then it stops accepting new
// ones, cuts every retry wait short, and lets in-flight and already queued
// deliveries go on (one attempt each) for up to 2 seconds before it aborts
// them; it returns once every worker has ended. Call it once.
func (s *Sender) Run(ctx context.Context) {
	// Attempts get their own context so that they can outlive ctx for the
	// drain; retry waits use ctx itself.
	attemptCtx, abort := context.WithCancel(context.WithoutCancel(ctx))
	defer abort()
	var wg sync.WaitGroup
	start := func() {
		s.mu.Lock()
		ready := s.ready
		s.ready = nil
		s.mu.Unlock()
		for _, l := range ready {
			wg.Go(func() { s.work(ctx, attemptCtx, l) })
		}
	}
	for ctx.Err() == nil {
		start()
		select {
		case <-s.wake:
		case <-ctx.Done():
		}
	}

	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	start() // lanes queued since the last wake-up get their drain too
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-s.after(s.drain):
		abort()
		<-done
	}

	s.mu.Lock()
	left := s.pending
	for url, l := range s.lanes {
		delete(s.lanes, url)
		l.queue = nil
	}
	s.pending = 0
	s.mu.Unlock()
	if left > 0 {
		total := s.dropped.Add(uint64(left))
		s.log.Warn("webhook deliveries dropped", "reason", "shutdown", "dropped", left, "dropped_total", total)
	}
}

// work delivers one lane's queue in order, and ends when the queue is empty
// or the drain was aborted.
func (s *Sender) work(ctx, attemptCtx context.Context, l *lane) {
	for {
		s.mu.Lock()
		if len(l.queue) == 0 || attemptCtx.Err() != nil {
			l.active = false
			if len(l.queue) == 0 {
				delete(s.lanes, l.url)
			}
			s.mu.Unlock()
			return
		}
		d := l.queue[0]
		l.queue[0] = nil
		l.queue = l.queue[1:]
		s.pending--
		s.mu.Unlock()
		s.deliver(ctx, attemptCtx, d)
	}
}

// deliver tries d until it is answered 2xx, fails in a way that is not
// retried, runs out of attempts, or Run stops.
func (s *Sender) deliver(ctx, attemptCtx context.Context, d *delivery) {
	for attempt := 1; ; attempt++ {
		err := s.post(attemptCtx, d.hook, d.event, d.id, d.sig, d.body)
		if err == nil {
			s.delivered.Add(1)
			s.done(d, nil)
			return
		}
		wait, retry := s.retryWait(err, attempt)
		switch {
		case !retry:
		case attempt >= s.maxAttempts:
			err = fmt.Errorf("gave up after %d attempts: %w", attempt, err)
		case ctx.Err() != nil: // draining: no more retries
			err = fmt.Errorf("stopped, not retried: %w", err)
		default:
			select {
			case <-s.after(wait):
				s.retried.Add(1)
				continue
			case <-ctx.Done():
				err = fmt.Errorf("stopped, not retried: %w", err)
			}
		}
		s.failed.Add(1)
		s.log.Warn("webhook delivery failed", "hook", spec.RedactURL(d.hook.URL), "event", d.event, "seq", d.seq,
			"delivery", d.id, "attempts", attempt, "err", err)
		s.done(d, err)
		return
	}
}

func (s *Sender) done(d *delivery, err error) {
	if s.finished != nil {
		s.finished(d.id, err)
	}
}

// retryWait says whether a failed attempt is worth retrying and how long
// to wait before the next one, the attempt-th.
func (s *Sender) retryWait(err error, attempt int) (time.Duration, bool) {
	var se *StatusError
	if errors.As(err, &se) {
		if !se.Temporary() {
			return 0, false
		}
		if se.RetryAfter > 0 {
			return se.RetryAfter, true
		}
		return backoff(s.baseBackoff, attempt), true
	}
	var pe permanentError
	if errors.As(err, &pe) {
		return 0, false
	}
	return backoff(s.baseBackoff, attempt), true // transport error or timeout
}

// backoff is the wait after the n-th failed attempt: base doubled n-1
// times, capped at MaxBackoff, drawn uniformly from its upper half so that
// receivers recovering from an outage are not hit by every sender at once.
func backoff(base time.Duration, n int) time.Duration {
	d := base
	for i := 1; i < n && d < MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, MaxBackoff)
	half := d / 2
	return half + time.Duration(mrand.Int64N(int64(d-half)+1))
}

// Confirm asks hook whether a rollout may take its final step: one signed
// POST of payload as JSON, with the X-Modelgate-Event header set to
// ConfirmEvent. It returns nil only on a 2xx answer; otherwise a
// *StatusError (the status and the start of the body) or the transport
// failure, including the hook's Timeout (default 5s) running out. Confirm
// does not retry: the caller asks again later.
func (s *Sender) Confirm(ctx context.Context, hook spec.Webhook, payload any) error {
	body, err := json.Marshal(payload)
	if err != nil {
		return fmt.Errorf("encode confirm-promotion payload: %w", err)
	}
	var sig string
	if hook.Secret != "" {
		sig = Sign(hook.Secret, body)
	}
	return s.post(ctx, hook, ConfirmEvent, newID(), sig, body)
}

// permanentError is a failure that no retry can fix, such as a bad URL.
type permanentError struct{ error }

func (e permanentError) Unwrap() error { return e.error }

// post makes one attempt. It returns nil on 2xx, a *StatusError for other
// answers, a permanentError when the request cannot be built, and
// otherwise the transport error.
func (s *Sender) post(ctx context.Context, hook spec.Webhook, event, id, sig string, body []byte) error {
	name := spec.RedactURL(hook.URL)
	timeout := hook.Timeout.D()
	if timeout <= 0 {
		timeout = spec.DefaultWebhookTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, hook.URL, bytes.NewReader(body))
	if err != nil {
		return permanentError{fmt.Errorf("build request to webhook %s: %w", name, unwrapURL(err))}
	}
	h := req.Header
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "modelgate")
	h.Set("X-Modelgate-Event", event)
	h.Set("X-Modelgate-Delivery", id)
	if sig != "" {
		h.Set("X-Modelgate-Signature", sig)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		err = unwrapURL(err)
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			return fmt.Errorf("post to webhook %s: no answer within %s: %w", name, timeout, err)
		}
		return fmt.Errorf("post to webhook %s: %w", name, err)
	}
	defer resp.Body.Close()
	excerpt, _ := io.ReadAll(io.LimitReader(resp.Body, bodyExcerpt))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, bodyDrain))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	return &StatusError{
		Hook:       name,
		StatusCode: resp.StatusCode,
		Body:       string(excerpt),
		RetryAfter: retryAfter(resp.Header.Get("Retry-After"), time.Now()),
	}
}

// retryAfter parses a Retry-After header (seconds or an HTTP date),
// capped at MaxBackoff. Absent or invalid: zero.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		d = MaxBackoff
		if n < int64(MaxBackoff/time.Second) {
			d = time.Duration(n) * time.Second
		}
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return max(0, min(d, MaxBackoff))
}

// unwrapURL removes the *url.Error around a client error: its message
// repeats the whole URL, secrets included.
func unwrapURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// newID returns a random UUID (version 4).
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand documents it)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// Sign returns the X-Modelgate-Signature value of body: "sha256=" and the
// hex HMAC-SHA256 of body keyed with secret.
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify reports whether header is the signature of body with secret, in
// time that does not depend on where they differ. Receivers (and tests)
// use it on the raw body, before decoding it.
func Verify(secret string, body []byte, header string) bool {
	hexSig, ok := strings.CutPrefix(strings.TrimSpace(header), "sha256=")
	if !ok {
		return false
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil {
		return false
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return hmac.Equal(got, m.Sum(nil))
}

// Stats returns the counters so far.
func (s *Sender) Stats() Stats {
	return Stats{
		Delivered: s.delivered.Load(),
		Failed:    s.failed.Load(),
		Retried:   s.retried.Load(),
		Dropped:   s.dropped.Load(),
	}
}
