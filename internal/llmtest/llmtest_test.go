package llmtest_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/modelgate/modelgate/internal/llmtest"
)

func post(t *testing.T, url, body string) *http.Response {
	t.Helper()
	resp, err := http.Post(url+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestTokensConcatenateToTheAnswer(t *testing.T) {
	for _, tc := range []struct {
		answer string
		want   []string
	}{
		{"Paris is the capital.", []string{"Paris ", "is ", "the ", "capital."}},
		{"one", []string{"one"}},
		{"two  spaces ", []string{"two  ", "spaces "}},
		{"", nil},
	} {
		got := llmtest.Tokens(tc.answer)
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("Tokens(%q) (-want +got):\n%s", tc.answer, diff)
		}
		if joined := strings.Join(got, ""); joined != tc.answer {
			t.Errorf("Tokens(%q) joined = %q", tc.answer, joined)
		}
	}
}

func TestStreamedAnswerIsSSEChunksEndingInDone(t *testing.T) {
	s := llmtest.NewServer(llmtest.Options{Model: "m", Answer: "The capital of France is Paris."})
	defer s.Close()
	resp := post(t, s.URL(), `{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"?"}]}`)
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type = %q, want text/event-stream", ct)
	}
	raw, _ := io.ReadAll(resp.Body)
	var contents []string
	var finish []any
	var usage int
	for _, ev := range strings.Split(strings.TrimSpace(string(raw)), "\n\n") {
		data, ok := strings.CutPrefix(ev, "data: ")
		if !ok {
			t.Fatalf("event %q is not a data line", ev)
		}
		if data == "[DONE]" {
			continue
		}
		var c struct {
			Object  string
			Model   string
			Choices []struct {
				Delta        map[string]string
				FinishReason any `json:"finish_reason"`
			}
			Usage *struct {
				CompletionTokens int `json:"completion_tokens"`
			}
		}
		if err := json.Unmarshal([]byte(data), &c); err != nil {
			t.Fatalf("chunk %q: %v", data, err)
		}
		if c.Object != "chat.completion.chunk" || c.Model != "m" {
			t.Errorf("chunk object %q model %q", c.Object, c.Model)
		}
		if c.Usage != nil {
			usage = c.Usage.CompletionTokens
			continue
		}
		contents = append(contents, c.Choices[0].Delta["content"])
		finish = append(finish, c.Choices[0].FinishReason)
	}
	if diff := cmp.Diff([]string{"The ", "capital ", "of ", "France ", "is ", "Paris.", ""}, contents); diff != "" {
		t.Errorf("delta contents (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]any{nil, nil, nil, nil, nil, nil, "stop"}, finish); diff != "" {
		t.Errorf("finish reasons (-want +got):\n%s", diff)
	}
	if usage != 6 {
		t.Errorf("usage completion_tokens = %d, want 6", usage)
	}
	if !strings.HasSuffix(string(raw), "data: [DONE]\n\n") {
		t.Errorf("stream does not end with data: [DONE]: %q", raw)
	}
	if got := s.Finished(); got != 1 {
		t.Errorf("Finished() = %d, want 1", got)
	}
}

func TestNonStreamedAnswerIsOneDocument(t *testing.T) {
	s := llmtest.NewServer(llmtest.Options{Answer: "Paris."})
	defer s.Close()
	resp := post(t, s.URL(), `{"messages":[]}`)
	var doc struct {
		Object  string
		Choices []struct {
			Message      struct{ Role, Content string }
			FinishReason string `json:"finish_reason"`
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if doc.Object != "chat.completion" || len(doc.Choices) != 1 || doc.Choices[0].Message.Content != "Paris." ||
		doc.Choices[0].Message.Role != "assistant" || doc.Choices[0].FinishReason != "stop" {
		t.Errorf("answer = %+v", doc)
	}
}

func TestHoldKeepsTheRestOfTheStreamAfterTheFirstToken(t *testing.T) {
	hold := make(chan struct{})
	s := llmtest.NewServer(llmtest.Options{Answer: "one two three", Hold: hold})
	defer s.Close()
	resp := post(t, s.URL(), `{"stream":true}`)
	rd := bufio.NewReader(resp.Body)
	line, err := rd.ReadString('\n')
	if err != nil || !strings.Contains(line, `"content":"one "`) {
		close(hold)
		t.Fatalf("first line = %q, %v; want the first token", line, err)
	}
	if s.FirstTokens() != 1 || s.Finished() != 0 {
		t.Errorf("while held: first tokens %d, finished %d; want 1 and 0", s.FirstTokens(), s.Finished())
	}
	close(hold)
	text, _, err := llmtest.Assemble(rd)
	if err != nil || text != "two three" {
		t.Errorf("rest of the stream assembles to %q, %v; want %q", text, err, "two three")
	}
}

func TestFirstTokenDelayHoldsTheHeadersUnlessEarly(t *testing.T) {
	const delay = 100 * time.Millisecond
	s := llmtest.NewServer(llmtest.Options{Answer: "a b", FirstTokenDelay: delay})
	defer s.Close()
	start := time.Now()
	resp := post(t, s.URL(), `{"stream":true}`)
	if headers := time.Since(start); headers < delay {
		t.Errorf("headers after %s, before the first-token delay %s: they must leave with the first token", headers, delay)
	}
	text, chunks, err := llmtest.Assemble(resp.Body)
	if err != nil || text != "a b" || chunks != 2 {
		t.Errorf("assembled %q in %d chunks, %v; want \"a b\" in 2", text, chunks, err)
	}

	// With EarlyHeaders the headers come at once: the first token, an hour
	// away, would otherwise hold the request until the test times out.
	early := llmtest.NewServer(llmtest.Options{FirstTokenDelay: time.Hour, EarlyHeaders: true})
	defer early.Close()
	resp = post(t, early.URL(), `{"stream":true}`)
	if resp.StatusCode != 200 || early.FirstTokens() != 0 {
		t.Errorf("early headers: status %d, first tokens %d; want 200 before any token", resp.StatusCode, early.FirstTokens())
	}
}

func TestBadRequests(t *testing.T) {
	s := llmtest.NewServer(llmtest.Options{})
	defer s.Close()
	for _, tc := range []struct {
		method, path, body string
		want               int
	}{
		{"POST", "/v1/chat/completions", "not json", http.StatusBadRequest},
		{"GET", "/v1/chat/completions", "", http.StatusMethodNotAllowed},
		{"POST", "/v1/completions", "{}", http.StatusNotFound},
	} {
		req, _ := http.NewRequest(tc.method, s.URL()+tc.path, strings.NewReader(tc.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s %q = %d, want %d", tc.method, tc.path, tc.body, resp.StatusCode, tc.want)
		}
	}
	if s.Started() != 0 {
		t.Errorf("Started() = %d after only bad requests, want 0", s.Started())
	}
}

func TestAssembleNeedsDone(t *testing.T) {
	_, _, err := llmtest.Assemble(strings.NewReader("data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n"))
	if err == nil {
		t.Errorf("Assemble of a stream without [DONE] = nil error")
	}
}
