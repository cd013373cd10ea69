package demo

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sync"
	"testing"
	"time"
)

func TestDueRequests(t *testing.T) {
	tests := []struct {
		elapsed time.Duration
		rps     int
		want    int64
	}{
		{0, 200, 0},
		{4 * time.Millisecond, 200, 0},
		{5 * time.Millisecond, 200, 1},
		{time.Second, 200, 200},
		{1500 * time.Millisecond, 3, 4},
		{10 * time.Millisecond, 5000, 50},
		{time.Hour, 100000, 360000000},
	}
	for _, tc := range tests {
		if got := dueRequests(tc.elapsed, tc.rps); got != tc.want {
			t.Errorf("dueRequests(%v, %d) = %d, want %d", tc.elapsed, tc.rps, got, tc.want)
		}
	}
}

func TestGenerateSendsPredictRequests(t *testing.T) {
	const want = 100
	var (
		mu    sync.Mutex
		seen  int
		users = map[string]bool{}
		bad   []string
		done  = make(chan struct{})
	)
	userID := regexp.MustCompile(`^user-[0-9]$`)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req predictRequest
		err := json.NewDecoder(r.Body).Decode(&req)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case r.Method != http.MethodPost || r.URL.Path != "/fraud/v1/models/fraud:predict":
			bad = append(bad, "request "+r.Method+" "+r.URL.Path)
		case err != nil || checkInstances(req.Instances) != "":
			bad = append(bad, "body not a predict request")
		case r.Header.Get("Content-Type") != "application/json" || r.Header.Get("X-Demo") != "yes":
			bad = append(bad, "missing headers")
		case !userID.MatchString(r.Header.Get("X-User-Id")):
			bad = append(bad, "X-User-Id "+r.Header.Get("X-User-Id"))
		}
		users[r.Header.Get("X-User-Id")] = true
		seen++
		if seen == want {
			close(done)
		}
		if seen%10 == 0 {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.Write([]byte(`{"predictions":[1]}`))
	}))
	defer srv.Close()

	g, err := Generate(t.Context(), GenOptions{
		URL:    srv.URL + "/fraud/v1/models/fraud:predict",
		RPS:    2000,
		Users:  10,
		Seed:   1,
		Header: func(r *http.Request) { r.Header.Set("X-Demo", "yes") },
	})
	if err != nil {
		t.Fatal(err)
	}
	<-done
	got := g.Stop()
	<-g.Done()

	mu.Lock()
	defer mu.Unlock()
	if len(bad) > 0 {
		t.Errorf("bad requests: %q", bad)
	}
	if len(users) < 2 {
		t.Errorf("saw users %v, want several", users)
	}
	// Every request the server saw was started; a request the server
	// answered may still have been cut short before the generator read it.
	if got.Sent < uint64(seen) || got.OK+got.Failed > got.Sent {
		t.Errorf("Stop() = %+v with %d requests served, want Sent >= served >= OK+Failed", got, seen)
	}
	if got.OK == 0 || got.Failed == 0 {
		t.Errorf("Stop() = %+v, want both answers counted (every 10th request fails)", got)
	}
	if after := g.Stats(); after != got {
		t.Errorf("Stats() after Stop = %+v, want %+v", after, got)
	}
}

func TestGenerateCountsUnreachableAsFailed(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there any more
	g, err := Generate(t.Context(), GenOptions{URL: url, RPS: 1000, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for g.Stats().Failed < 5 {
		<-tick.C // poll until the counts show it, no guessed duration
	}
	got := g.Stop()
	if got.OK != 0 {
		t.Errorf("Stop() = %+v, want no OK requests", got)
	}
}

func TestGenerateStopsWithContext(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // never answers: stopping must not wait for it
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(t.Context())
	g, err := Generate(ctx, GenOptions{URL: srv.URL, RPS: 100, Workers: 4})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	<-g.Done()
	if got := g.Stats(); got.OK != 0 || got.Failed != 0 {
		t.Errorf("Stats() = %+v, want cancelled requests counted as sent only", got)
	}
}

func TestGenerateRejectsBadOptions(t *testing.T) {
	tests := []GenOptions{
		{},
		{URL: "127.0.0.1:8080/fraud"},
		{URL: "ftp://host/x"},
		{URL: "http://127.0.0.1:8080", RPS: -1},
		{URL: "http://127.0.0.1:8080", Users: -1},
	}
	for _, opts := range tests {
		if g, err := Generate(t.Context(), opts); err == nil {
			g.Stop()
			t.Errorf("Generate(%+v) succeeded, want an error", opts)
		}
	}
}
