//go:build linux

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	endpoint = "fraud"
	// body and answer are those of bench/gateway and bench/memory.
	body   = `{"instances":[[5.1,3.5,1.4,0.2]]}`
	answer = `{"predictions":[0.12,0.88]}`
)

// backend is the stand-in model server, in this process (its memory is not
// the gateway's). /slow holds its answer for the given time (attack B's
// first request); everything else is answered at once. Bodies are read
// whole before answering, as a model server does, so that a gateway that
// streams a request body to the backend is not answered early.
type backend struct {
	srv  *http.Server
	addr string
	slow atomic.Int64 // /slow requests seen
	fast atomic.Int64 // other requests answered
}

func startBackend(slow time.Duration) (*backend, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := &backend{addr: ln.Addr().String()}
	b.srv = &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          nil,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, err := io.Copy(io.Discard, r.Body); err != nil {
				return
			}
			if r.URL.Path == "/slow" {
				b.slow.Add(1)
				// The gateway closes the connection when its client goes;
				// then there is nobody left to answer.
				select {
				case <-time.After(slow):
				case <-r.Context().Done():
					return
				}
			} else {
				b.fast.Add(1)
			}
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, answer)
		}),
	}
	go b.srv.Serve(ln)
	return b, nil
}

func (b *backend) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if b.srv.Shutdown(ctx) != nil {
		b.srv.Close()
	}
}

// normalClient is the bystander: POSTs at a fixed rate on one keep-alive
// connection, the way a well-behaved client of the same endpoint calls it
// while the attack runs.
type normalClient struct {
	stopc chan struct{}
	done  chan struct{}

	mu       sync.Mutex
	samples  []sample
	firstErr string
}

// sample is one normal request. Its latency is counted from the time it
// was scheduled, not from when it was sent: the client has one connection,
// so a request stuck for a second delays the twenty after it, and each of
// those waited too (no coordinated omission).
type sample struct {
	at  time.Time // scheduled
	lat time.Duration
	err bool
}

// normalTimeout bounds one normal request.
const normalTimeout = 5 * time.Second

func startNormal(addr string, rate int) *normalClient {
	c := &normalClient{stopc: make(chan struct{}), done: make(chan struct{})}
	tr := &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1, DisableCompression: true}
	hc := &http.Client{Transport: tr, Timeout: normalTimeout}
	url := "http://" + addr + "/" + endpoint + "/predict"
	go func() {
		defer close(c.done)
		defer tr.CloseIdleConnections()
		interval := time.Second / time.Duration(rate)
		next := time.Now()
		for {
			t := time.NewTimer(time.Until(next))
			select {
			case <-c.stopc:
				t.Stop()
				return
			case <-t.C:
			}
			err := post(hc, url)
			s := sample{at: next, lat: time.Since(next), err: err != nil}
			c.mu.Lock()
			c.samples = append(c.samples, s)
			if err != nil && c.firstErr == "" {
				c.firstErr = err.Error()
			}
			c.mu.Unlock()
			next = next.Add(interval)
		}
	}()
	return c
}

func post(hc *http.Client, url string) error {
	resp, err := hc.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

func (c *normalClient) stop() {
	close(c.stopc)
	<-c.done
}

// latencies summarises the requests scheduled in [from, to). A failed
// request counts as taking normalTimeout however fast it failed, so that a
// gateway refusing connections cannot look fast.
type latencies struct {
	Requests int     `json:"requests"`
	Errors   int     `json:"errors"`
	P50ms    float64 `json:"p50_ms"`
	P99ms    float64 `json:"p99_ms"`
	Maxms    float64 `json:"max_ms"`
	FirstErr string  `json:"first_error,omitempty"`
}

func (c *normalClient) between(from, to time.Time) latencies {
	c.mu.Lock()
	defer c.mu.Unlock()
	var l latencies
	var d []time.Duration
	for _, s := range c.samples {
		if s.at.Before(from) || !s.at.Before(to) {
			continue
		}
		l.Requests++
		lat := s.lat
		if s.err {
			l.Errors++
			lat = max(lat, normalTimeout)
		}
		d = append(d, lat)
	}
	if len(d) == 0 {
		return l
	}
	slices.Sort(d)
	// Nearest rank: the smallest value with at least p of the samples at
	// or below it.
	rank := func(p float64) float64 {
		i := int(float64(len(d))*p+0.999999) - 1
		return ms(d[max(0, min(i, len(d)-1))])
	}
	l.P50ms, l.P99ms, l.Maxms = rank(0.50), rank(0.99), ms(d[len(d)-1])
	if l.Errors > 0 {
		l.FirstErr = c.firstErr
	}
	return l
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// holdResult is what attack A saw.
type holdResult struct {
	Opened   int    `json:"opened"`
	DialErrs int    `json:"dial_errors"`
	Sent     uint64 `json:"sent_bytes"` // headers and body bytes the kernel took
	// Ended counts the connections the gateway answered or closed before
	// the hold was over; FirstAnswer is the first thing one of them read.
	Ended       int64  `json:"ended_by_gateway"`
	Unread      uint64 `json:"unread_bytes"` // of Sent, still in socket queues at the end of the hold
	FirstAnswer string `json:"first_answer,omitempty"`
	FirstErr    string `json:"first_error,omitempty"`
}

// attackHold is attack A: o.conns connections each send request headers
// declaring a body of o.declared bytes, then one byte of it, and wait. A
// server that sizes its buffer by the declaration pays for the whole body
// per connection while the client has sent one byte. It returns when the
// hold is over, with the connections still open; release closes them.
//
// The hold lasts o.hold after the last connection sent its byte and then
// on while the gateway's RSS (read with rss) still grows: paying for the
// declared bodies takes the gateway seconds (at 380c3f7, 200 x 16 MiB
// buffers became resident at about 600 MiB/s), and a fixed hold would
// measure how fast it pays rather than how much. It ends once RSS grew by
// under 1 MiB in a second, or when o.duration has passed since the start.
func attackHold(ctx context.Context, addr string, o options, rss func() uint64) (res holdResult, release func(), err error) {
	start := time.Now()
	head := fmt.Sprintf("POST /%s/predict HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{",
		endpoint, addr, o.declared)
	var (
		conns   []net.Conn
		closing atomic.Bool // set before release closes them, so readers tell our close from the gateway's
		ended   atomic.Int64
		mu      sync.Mutex
		answer  string // the first thing a connection read, under mu
	)
	release = func() {
		closing.Store(true)
		for _, c := range conns {
			c.Close()
		}
	}
	for range o.conns {
		if ctx.Err() != nil {
			release()
			return res, nil, ctx.Err()
		}
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			res.DialErrs++
			if res.FirstErr == "" {
				res.FirstErr = err.Error()
			}
			continue
		}
		conns = append(conns, c)
		res.Opened++
		c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		n, err := io.WriteString(c, head)
		res.Sent += uint64(n)
		if err != nil && res.FirstErr == "" {
			res.FirstErr = err.Error()
		}
		go func() {
			buf := make([]byte, 256)
			n, err := c.Read(buf)
			if closing.Load() {
				return
			}
			ended.Add(1)
			first := strings.SplitN(string(buf[:n]), "\r\n", 2)[0]
			if n == 0 {
				first = "closed: " + err.Error()
			}
			mu.Lock()
			if answer == "" {
				answer = first
			}
			mu.Unlock()
		}()
	}
	limit := start.Add(o.duration)
	wait := min(o.hold, time.Until(limit))
	for prev := uint64(0); ; {
		select {
		case <-ctx.Done():
			release()
			return res, nil, ctx.Err()
		case <-time.After(wait):
		}
		cur := rss()
		if cur < prev+mib || !time.Now().Before(limit) {
			break
		}
		prev, wait = cur, min(time.Second, time.Until(limit))
	}
	u, err := unread(conns)
	if err != nil {
		release()
		return res, nil, err
	}
	mu.Lock()
	res.Ended, res.Unread, res.FirstAnswer = ended.Load(), u, answer
	mu.Unlock()
	return res, release, nil
}

// floodResult is what attack B saw.
type floodResult struct {
	Sent uint64 `json:"sent_bytes"` // bytes the kernel took, slow request included
	// Stopped says why the flood stopped: "size" (o.flood sent), "time"
	// (o.duration passed with writes blocked), or a write error.
	Stopped      string  `json:"stopped"`
	FloodSeconds float64 `json:"flood_seconds"`
	// SlowAnswer is when the first (slow) answer arrived, since the start;
	// 0: it did not arrive before the attack ended.
	SlowAnswerSeconds float64 `json:"slow_answer_seconds"`
	SlowStatus        int     `json:"slow_status"`
	Answers           int64   `json:"answers"`      // answers read, the slow one included
	Unread            uint64  `json:"unread_bytes"` // of Sent, still in socket queues at the end
	ReadEnd           string  `json:"read_end,omitempty"`
	PipelinedRequests uint64  `json:"pipelined_requests"`
	RequestBytes      int     `json:"request_bytes"` // one pipelined request, headers and body
}

// attackFlood is attack B: one connection sends a request the backend
// holds for o.slow, then pipelines valid requests behind it as fast as the
// gateway's socket takes them, until o.flood bytes are sent or o.duration
// has passed. A server that keeps reading while the first request is in
// flight buffers everything; one that stops reading leaves it in the
// kernel's socket buffers, and the attacker's writes block. The answers are
// read and discarded as they come, so that a gateway that does serve the
// pipeline is never blocked by its client. It returns when the flood is
// over and the slow answer came (or o.duration passed), with the
// connection still open; release closes it.
func attackFlood(ctx context.Context, addr string, o options) (res floodResult, release func(), err error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return res, nil, fmt.Errorf("attack B: dial: %w", err)
	}
	var closing atomic.Bool
	release = func() { closing.Store(true); c.Close() }

	// The pipelined requests: valid JSON padded to o.floodBody bytes, in
	// chunks of about 256 KiB so that a write is not one request at a time.
	pad := max(0, o.floodBody-len(`{"instances":[[5.1,3.5,1.4,0.2]],"pad":""}`))
	reqBody := `{"instances":[[5.1,3.5,1.4,0.2]],"pad":"` + strings.Repeat("x", pad) + `"}`
	one := fmt.Sprintf("POST /%s/predict HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		endpoint, addr, len(reqBody), reqBody)
	perChunk := max(1, (256<<10)/len(one))
	chunk := []byte(strings.Repeat(one, perChunk))
	res.RequestBytes = len(one)
	slow := fmt.Sprintf("POST /%s/slow HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		endpoint, addr, len(body), body)

	start := time.Now()
	deadline := start.Add(o.duration)
	gotFirst := make(chan struct{}) // closed when the slow answer is read
	var firstStatus int
	var firstAt time.Time
	readDone := make(chan struct{})
	var answers atomic.Int64
	var readEnd atomic.Value
	go func() {
		defer close(readDone)
		br := bufio.NewReaderSize(c, 64<<10)
		for {
			resp, err := http.ReadResponse(br, nil)
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			if err != nil {
				if !closing.Load() {
					readEnd.Store(err.Error())
				}
				return
			}
			if answers.Add(1) == 1 {
				firstStatus, firstAt = resp.StatusCode, time.Now()
				close(gotFirst)
			}
		}
	}()

	c.SetWriteDeadline(deadline)
	n, err := io.WriteString(c, slow)
	res.Sent += uint64(n)
	res.Stopped = "size"
	if err != nil {
		res.Stopped = "write: " + err.Error()
	}
	for err == nil && res.Sent < uint64(len(slow))+o.flood {
		if ctx.Err() != nil {
			release()
			return res, nil, ctx.Err()
		}
		n, err = c.Write(chunk)
		res.Sent += uint64(n)
		res.PipelinedRequests += uint64(n / len(one))
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				res.Stopped = "time"
			} else {
				res.Stopped = "write: " + err.Error()
			}
		}
	}
	res.FloodSeconds = time.Since(start).Seconds()

	// Hold the connection until the slow answer, as the attacker would: the
	// gateway's peak is what it keeps while the first request is in flight.
	select {
	case <-gotFirst:
	case <-readDone:
	case <-time.After(time.Until(deadline)):
	case <-ctx.Done():
		release()
		return res, nil, ctx.Err()
	}
	select {
	case <-gotFirst: // firstStatus and firstAt were written before the close
		res.SlowStatus, res.SlowAnswerSeconds = firstStatus, firstAt.Sub(start).Seconds()
	default:
	}
	res.Answers = answers.Load()
	if res.Unread, err = unread([]net.Conn{c}); err != nil {
		release()
		return res, nil, err
	}
	if e, ok := readEnd.Load().(string); ok {
		res.ReadEnd = e
	}
	return res, release, nil
}
