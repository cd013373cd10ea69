package main

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// requestBody is the POST every load request sends to /fraud/predict.
const requestBody = `{"instances":[[5.1,3.5,1.4,0.2]]}`

// loadResult is one open-loop run.
type loadResult struct {
	sent      int           // requests scheduled (rate × duration)
	ok        int           // 200 answers
	errors    int           // transport errors and non-200 answers
	elapsed   time.Duration // first scheduled send to the last answer
	latencies []time.Duration
	maxLag    time.Duration // largest delay of a dispatch behind its schedule (the pacer's health)
}

func (r loadResult) achievedRate() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.ok+r.errors) / r.elapsed.Seconds()
}

// quantile returns the q-quantile (nearest rank) of the sorted latencies.
func (r loadResult) quantile(q float64) time.Duration {
	n := len(r.latencies)
	if n == 0 {
		return 0
	}
	i := int(q*float64(n)+0.999999999) - 1
	i = max(0, min(n-1, i))
	return r.latencies[i]
}

// openLoop sends rate requests per second for d to url with a pool of
// conns workers (each with at most one connection). It is open loop: the
// pacer schedules request i at start + i/rate whatever the answers do, and
// every latency is measured from that scheduled time, so a stall of the
// gateway shows up in full in the quantiles (no coordinated omission),
// including the time a request waited for a free worker.
func openLoop(ctx context.Context, addr, path string, rate int, d time.Duration, conns int) loadResult {
	hc := &fasthttp.HostClient{
		Addr:                addr,
		MaxConns:            conns,
		MaxIdleConnDuration: time.Minute,
		ReadTimeout:         30 * time.Second,
		WriteTimeout:        30 * time.Second,
	}
	defer hc.CloseIdleConnections()
	n := int(float64(rate) * d.Seconds())
	interval := time.Second / time.Duration(rate)
	type job struct {
		i     int
		sched time.Time
	}
	jobs := make(chan job, n) // never blocks the pacer
	lat := make([]time.Duration, n)
	status := make([]int8, n) // 0 not done, 1 ok, 2 error
	var lastDone atomic.Int64
	start := time.Now().Add(2 * time.Millisecond)
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := fasthttp.AcquireRequest()
			resp := fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			for j := range jobs {
				req.Reset()
				req.SetRequestURI("http://" + addr + path)
				req.Header.SetMethod(fasthttp.MethodPost)
				req.Header.SetContentType("application/json")
				req.SetBodyString(requestBody)
				err := hc.DoTimeout(req, resp, 30*time.Second)
				end := time.Now()
				lat[j.i] = end.Sub(j.sched)
				if err == nil && resp.StatusCode() == fasthttp.StatusOK {
					status[j.i] = 1
				} else {
					status[j.i] = 2
				}
				for {
					old := lastDone.Load()
					if end.UnixNano() <= old || lastDone.CompareAndSwap(old, end.UnixNano()) {
						break
					}
				}
			}
		}()
	}
	var maxLag time.Duration
	sent := 0
	for i := 0; i < n; i++ {
		sched := start.Add(time.Duration(i) * interval)
		if w := time.Until(sched); w > 0 {
			select {
			case <-time.After(w):
			case <-ctx.Done():
			}
		}
		if ctx.Err() != nil {
			break
		}
		if lag := time.Since(sched); lag > maxLag {
			maxLag = lag
		}
		jobs <- job{i, sched}
		sent++
	}
	close(jobs)
	wg.Wait()
	r := loadResult{sent: sent, maxLag: maxLag, elapsed: time.Unix(0, lastDone.Load()).Sub(start)}
	r.latencies = make([]time.Duration, 0, sent)
	for i := 0; i < sent; i++ {
		switch status[i] {
		case 1:
			r.ok++
		case 2:
			r.errors++
		}
		// Errors keep their latency too: a timed-out request is a slow one.
		r.latencies = append(r.latencies, lat[i])
	}
	slices.Sort(r.latencies)
	return r
}
