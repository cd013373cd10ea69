package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// GenOptions configures a traffic generator.
type GenOptions struct {
	// URL receives every request as a KServe v1 predict POST, e.g.
	// http://127.0.0.1:8080/fraud/v1/models/fraud:predict. Required.
	URL string
	// RPS is the target request rate per second, summed over workers.
	// Zero: 200.
	RPS int
	// Workers is how many requests may be in flight at once; each worker
	// keeps its connection alive. When all are busy, the generator skips
	// ticks instead of queueing them, so a slow target lowers the rate.
	// Zero: 16.
	Workers int
	// Seed makes the instances and user ids reproducible.
	Seed uint64
	// Users, when positive, sends X-User-Id: user-<n> with n drawn from
	// 0..Users-1, so a gateway with sticky_header: X-User-Id pins each
	// user to one deployment. Zero: no user header.
	Users int
	// Header, when set, is called on every request before it is sent, to
	// add headers of the caller's choosing. It must be safe for
	// concurrent use.
	Header func(*http.Request)
	// Client sends the requests. Nil: a client with keep-alive
	// connections sized for Workers and a 10s timeout.
	Client *http.Client
}

// GenStats counts a generator's requests.
type GenStats struct {
	// Sent is every request started.
	Sent uint64
	// OK is every request answered 2xx.
	OK uint64
	// Failed is every request answered otherwise, or not answered.
	// Requests cut short by stopping the generator count in Sent only.
	Failed uint64
}

// Generator sends predict requests at a steady rate until stopped.
type Generator struct {
	opts   GenOptions
	client *http.Client
	cancel context.CancelFunc
	done   chan struct{}

	sent, ok, failed atomic.Uint64
}

// Generate starts a generator that POSTs random instances to opts.URL at
// about opts.RPS requests per second until ctx is done or Stop is called.
func Generate(ctx context.Context, opts GenOptions) (*Generator, error) {
	u, err := url.Parse(opts.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("generate traffic: invalid URL %q", opts.URL)
	}
	if opts.RPS < 0 || opts.Workers < 0 || opts.Users < 0 {
		return nil, errors.New("generate traffic: RPS, Workers and Users must not be negative")
	}
	if opts.RPS == 0 {
		opts.RPS = 200
	}
	if opts.Workers == 0 {
		opts.Workers = 16
	}
	client := opts.Client
	if client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConns = opts.Workers
		tr.MaxIdleConnsPerHost = opts.Workers
		client = &http.Client{Transport: tr, Timeout: 10 * time.Second}
	}
	ctx, cancel := context.WithCancel(ctx)
	g := &Generator{opts: opts, client: client, cancel: cancel, done: make(chan struct{})}

	tokens := make(chan struct{}, opts.Workers)
	var wg sync.WaitGroup
	for i := range opts.Workers {
		rng := rand.New(rand.NewPCG(opts.Seed, uint64(i)+1))
		wg.Go(func() { g.work(ctx, tokens, rng) })
	}
	wg.Go(func() { pace(ctx, opts.RPS, tokens) })
	go func() {
		wg.Wait()
		if client != opts.Client {
			client.CloseIdleConnections()
		}
		close(g.done)
	}()
	return g, nil
}

// Stats returns the counts so far; safe to call while the generator runs.
func (g *Generator) Stats() GenStats {
	return GenStats{Sent: g.sent.Load(), OK: g.ok.Load(), Failed: g.failed.Load()}
}

// Stop stops the generator, waits for its workers to return and gives the
// final counts. Requests in flight are cancelled.
func (g *Generator) Stop() GenStats {
	g.cancel()
	<-g.done
	return g.Stats()
}

// Done is closed when the generator has stopped.
func (g *Generator) Done() <-chan struct{} { return g.done }

// tick is how often the pacer hands out tokens. Rates above 1/tick get
// several tokens per tick; the count follows elapsed time, so the average
// rate holds even when a tick comes late.
const tick = 5 * time.Millisecond

// pace puts one token per request due into tokens, dropping tokens when
// every worker is busy so that a slow target is not flooded afterwards.
func pace(ctx context.Context, rps int, tokens chan<- struct{}) {
	interval := max(time.Second/time.Duration(rps), tick)
	t := time.NewTicker(interval)
	defer t.Stop()
	start := time.Now()
	var issued int64
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			for due := dueRequests(now.Sub(start), rps); issued < due; issued++ {
				select {
				case tokens <- struct{}{}:
				default: // all workers busy: skip it
				}
			}
		}
	}
}

// dueRequests is how many requests a generator at rps should have started
// after elapsed.
func dueRequests(elapsed time.Duration, rps int) int64 {
	return int64(elapsed) * int64(rps) / int64(time.Second)
}

func (g *Generator) work(ctx context.Context, tokens <-chan struct{}, rng *rand.Rand) {
	var body bytes.Buffer
	for {
		select {
		case <-ctx.Done():
			return
		case <-tokens:
		}
		body.Reset()
		writeInstance(&body, rng)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.opts.URL, bytes.NewReader(body.Bytes()))
		if err != nil {
			g.failed.Add(1) // unreachable: the URL was checked at start
			continue
		}
		req.Header.Set("Content-Type", "application/json")
		if g.opts.Users > 0 {
			req.Header.Set("X-User-Id", "user-"+strconv.Itoa(rng.IntN(g.opts.Users)))
		}
		if g.opts.Header != nil {
			g.opts.Header(req)
		}
		g.sent.Add(1)
		resp, err := g.client.Do(req)
		if err != nil {
			if ctx.Err() == nil {
				g.failed.Add(1)
			}
			continue
		}
		// Read the body to the end so the connection is reused.
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		switch {
		case err != nil && ctx.Err() != nil:
		case err == nil && resp.StatusCode >= 200 && resp.StatusCode < 300:
			g.ok.Add(1)
		default:
			g.failed.Add(1)
		}
	}
}

// writeInstance writes a predict body with one random instance whose
// values are roughly standard normal, so both classes are common.
func writeInstance(b *bytes.Buffer, rng *rand.Rand) {
	b.WriteString(`{"instances":[[`)
	for i := range Features {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(strconv.AppendFloat(b.AvailableBuffer(), rng.NormFloat64(), 'f', 4, 64))
	}
	b.WriteString(`]]}`)
}
