package e2e_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/modelgate/modelgate/internal/llmtest"
	"github.com/modelgate/modelgate/internal/rollout"
	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/testenv"
)

const (
	chatPath   = "/chat/v1/chat/completions"
	chatStream = `{"model": "m", "stream": true, "messages": [{"role": "user", "content": "What is the capital of France?"}]}`
	answer     = "The capital of France is Paris, on the Seine."
)

func newLLM(t *testing.T, opts llmtest.Options) *llmtest.Server {
	t.Helper()
	s := llmtest.NewServer(opts)
	t.Cleanup(s.Close)
	return s
}

// chatConfig is an endpoint "chat" with a deployment per server, in order,
// and extra lines for the endpoint.
func chatConfig(dir string, deps [][2]string, extra string) string {
	var b strings.Builder
	b.WriteString(testenv.ConfigHeader(dir) + "  - name: chat\n    deployments:\n")
	for _, d := range deps {
		fmt.Fprintf(&b, "      - name: %s\n        backends: [%s]\n", d[0], d[1])
	}
	b.WriteString(extra)
	return b.String()
}

// chat sends one streamed chat request through modelgate, reads the
// stream to its end and returns the deployment and the assembled text.
func chat(c *testenv.Client, hdr map[string]string) (string, string, error) {
	resp, err := c.Post(chatPath, []byte(chatStream), hdr)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		raw, _ := io.ReadAll(resp.Body)
		return "", "", fmt.Errorf("status %d: %s", resp.StatusCode, raw)
	}
	text, _, err := llmtest.Assemble(resp.Body)
	return resp.Header.Get("X-Model-Deployment"), text, err
}

// chatLoad sends streamed chat requests from workers until stopped,
// counting the answers that failed or came back garbled.
type chatLoad struct {
	*testenv.Load
	failed atomic.Int64
}

func startChatLoad(t *testing.T, c *testenv.Client, workers int) *chatLoad {
	l := &chatLoad{}
	l.Load = testenv.StartLoad(t, workers, 0, func() {
		if _, text, err := chat(c, nil); err != nil || text != answer {
			l.failed.Add(1)
		}
	})
	return l
}

func TestStreamFirstTokenReachesTheClientBeforeTheBackendFinishes(t *testing.T) {
	t.Parallel()
	hold := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(hold) }) }
	defer release()
	llm := newLLM(t, llmtest.Options{Answer: answer, Hold: hold})
	c := startDaemon(t, chatConfig(t.TempDir(), [][2]string{{"llm", llm.URL()}}, ""))

	resp, err := c.Post(chatPath, []byte(chatStream), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type through modelgate = %q, want text/event-stream", ct)
	}
	rd := bufio.NewReader(resp.Body)
	line, err := rd.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "data: ") || !strings.Contains(line, `"content":"The "`) {
		t.Fatalf("first line = %q, %v; want the first token's chunk", line, err)
	}
	// The backend holds every later token until released: the first chunk
	// came through while the answer was unfinished.
	if f := llm.Finished(); f != 0 {
		t.Fatalf("the backend finished %d answers before the client read the first chunk", f)
	}
	release()
	rest, _, err := llmtest.Assemble(rd)
	if want := strings.TrimPrefix(answer, "The "); err != nil || rest != want {
		t.Errorf("rest of the stream = %q, %v; want %q", rest, err, want)
	}
	testenv.WaitFor(t, 10*time.Second, "the backend to count its answer finished", func() bool { return llm.Finished() == 1 })
}

func TestStreamTimeToFirstByteIsRecordedPerDeployment(t *testing.T) {
	t.Parallel()
	const slowFirst = 200 * time.Millisecond
	// Both answer in about the same total time; only the first token's
	// wait differs.
	fast := newLLM(t, llmtest.Options{Answer: answer, TokenDelay: 25 * time.Millisecond})
	// The slow one sends its headers at once, as servers that start the
	// response before generating do: time to first byte is the first
	// token, not the headers.
	slow := newLLM(t, llmtest.Options{Answer: answer, FirstTokenDelay: slowFirst, TokenDelay: 5 * time.Millisecond, EarlyHeaders: true})
	c := startDaemon(t, chatConfig(t.TempDir(), [][2]string{{"fast", fast.URL()}, {"slow", slow.URL()}}, "    traffic: {fast: 50, slow: 50}\n"))

	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				if _, text, err := chat(c, nil); err != nil || text != answer {
					t.Errorf("chat: %q, %v", text, err)
				}
			}
		}()
	}
	wg.Wait()
	// A stream is recorded once modelgate has closed it, just after the
	// client read its end.
	var m = c.Metrics("chat", "1m")
	testenv.WaitFor(t, 10*time.Second, "all 40 streams recorded", func() bool {
		m = c.Metrics("chat", "1m")
		return m.Deployments["fast"].Requests+m.Deployments["slow"].Requests >= 40
	})
	f, s := m.Deployments["fast"], m.Deployments["slow"]
	t.Logf("fast: %d requests, ttfb p50 %.1fms, latency p50 %.1fms; slow: %d requests, ttfb p50 %.1fms, latency p50 %.1fms",
		f.Requests, f.TTFBMS.P50, f.LatencyMS.P50, s.Requests, s.TTFBMS.P50, s.LatencyMS.P50)
	if f.Requests == 0 || s.Requests == 0 || f.Requests+s.Requests != 40 {
		t.Fatalf("requests fast %d + slow %d, want 40 split over both", f.Requests, s.Requests)
	}
	slowMS := float64(slowFirst.Milliseconds())
	// Time to first byte: the slow deployment's first token is 200ms away,
	// the fast one's is not; the whole answers take about as long.
	if s.TTFBMS.P50 < slowMS*0.99 { // the sketch is within 1%
		t.Errorf("slow ttfb p50 = %.1fms, want at least its %.0fms first-token wait", s.TTFBMS.P50, slowMS)
	}
	if f.TTFBMS.P50 >= s.TTFBMS.P50/2 {
		t.Errorf("fast ttfb p50 = %.1fms, want well under slow's %.1fms", f.TTFBMS.P50, s.TTFBMS.P50)
	}
	// Time to first byte is not the latency: fast streams 9 tokens 25ms
	// apart after its first one.
	if f.LatencyMS.P50 < 200 || f.LatencyMS.P50 < 2*f.TTFBMS.P50 {
		t.Errorf("fast latency p50 = %.1fms next to ttfb p50 %.1fms: want the whole stream (≥ 200ms), not its start", f.LatencyMS.P50, f.TTFBMS.P50)
	}
}

func TestStreamTTFBGateRollsBackTheCanaryWithASlowerFirstToken(t *testing.T) {
	t.Parallel()
	// The canary finishes its answers sooner (about 445ms against 540ms),
	// but users wait 400ms longer for its first token: only the ttfb gate
	// can tell. (p90, not p99: over 30 requests p99 is the maximum, which a
	// loaded test machine pushes around.)
	stable := newLLM(t, llmtest.Options{Answer: answer, TokenDelay: 60 * time.Millisecond})
	canary := newLLM(t, llmtest.Options{Answer: answer, FirstTokenDelay: 400 * time.Millisecond, TokenDelay: 5 * time.Millisecond})
	c := startDaemon(t, chatConfig(t.TempDir(), [][2]string{{"stable", stable.URL()}, {"canary", canary.URL()}}, ""))
	ld := startChatLoad(t, c, 12)

	c.StartRollout("chat", `{"canary": "canary", "stages": [50, 100], "bake": "1s", "min_requests": 30,
		"gates": [{"type": "ttfb", "quantile": 0.9, "max_increase": 50}, {"type": "sequential", "rollback_only": true}]}`)
	r := c.WaitEnded("chat", 45*time.Second)
	ld.Stop()
	if r.Phase != rollout.PhaseRolledBack {
		raw, _ := json.MarshalIndent(r.Gates, "", " ")
		t.Fatalf("rollout of the slow-first-token canary ended %s: %s\ngates: %s", r.Phase, r.Reason, raw)
	}
	if !strings.Contains(r.Reason, "ttfb") {
		t.Errorf("rollback reason %q does not name the ttfb gate", r.Reason)
	}
	if diff := cmp.Diff(spec.Weights{"stable": spec.Full}, c.Traffic("chat")); diff != "" {
		t.Errorf("traffic after the rollback (-want +got):\n%s", diff)
	}
	if n := ld.failed.Load(); n > 0 {
		t.Errorf("%d of %d streamed requests failed or came back garbled during the rollout", n, ld.Sent())
	}
	m := c.Metrics("chat", "1m")
	t.Logf("rolled back: %s; ttfb p50 stable %.1fms canary %.1fms, latency p50 stable %.1fms canary %.1fms", r.Reason,
		m.Deployments["stable"].TTFBMS.P50, m.Deployments["canary"].TTFBMS.P50, m.Deployments["stable"].LatencyMS.P50, m.Deployments["canary"].LatencyMS.P50)
}

func TestStreamShadowComparesTheAssembledText(t *testing.T) {
	t.Parallel()
	// same streams the live answer with other timing, ids and model name
	// (so its bytes differ); other says something else.
	live := newLLM(t, llmtest.Options{Model: "live", Answer: answer, TokenDelay: 2 * time.Millisecond})
	same := newLLM(t, llmtest.Options{Model: "same", Answer: answer, FirstTokenDelay: 20 * time.Millisecond})
	other := newLLM(t, llmtest.Options{Model: "other", Answer: "I am sorry, I cannot answer questions about geography."})
	c := startDaemon(t, chatConfig(t.TempDir(),
		[][2]string{{"live", live.URL()}, {"same", same.URL()}, {"other", other.URL()}},
		"    traffic: {live: 100}\n    mirror: {same: 100, other: 100}\n"))

	const n = 20
	for i := range n {
		dep, text, err := chat(c, nil)
		if err != nil || dep != "live" || text != answer {
			t.Fatalf("request %d: %s answered %q, %v", i, dep, text, err)
		}
	}
	var same1, other1 = c.ShadowReport("chat", "1m").Shadows["same"], c.ShadowReport("chat", "1m").Shadows["other"]
	testenv.WaitFor(t, 30*time.Second, "both shadows to have compared every copy", func() bool {
		rep := c.ShadowReport("chat", "1m")
		same1, other1 = rep.Shadows["same"], rep.Shadows["other"]
		done := func(s uint64) bool { return s >= n }
		return done(same1.Compared+same1.NotCompared+same1.Errors+same1.Timeouts+same1.Dropped) &&
			done(other1.Compared+other1.NotCompared+other1.Errors+other1.Timeouts+other1.Dropped)
	})
	raw, _ := json.Marshal(map[string]any{"same": same1, "other": other1})
	t.Logf("shadow report: %s", raw)
	if same1.Matched != n || same1.Protocol != "openai" {
		t.Errorf("same answer, streamed differently: matched %d of %d (compared %d, not compared %d), protocol %q; want all matched as openai",
			same1.Matched, n, same1.Compared, same1.NotCompared, same1.Protocol)
	}
	if other1.Mismatched != n {
		t.Errorf("different answer: mismatched %d of %d (compared %d, not compared %d); want all", other1.Mismatched, n, other1.Compared, other1.NotCompared)
	}
	if len(other1.Mismatches) == 0 || !strings.Contains(other1.Mismatches[0].Live+other1.Mismatches[0].Shadow, "Paris") {
		t.Errorf("mismatch samples %+v: want the assembled texts", other1.Mismatches)
	}
}
