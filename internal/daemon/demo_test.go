package daemon_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/daemon"
	"github.com/modelgate/modelgate/internal/demo"
)

func TestDemoShiftsTrafficThroughTheRealGateway(t *testing.T) {
	var out bytes.Buffer
	opts := daemon.DemoOptions{Run: demo.RunOptions{StageDuration: 700 * time.Millisecond, Refresh: 350 * time.Millisecond, RPS: 300, Plain: true}}
	if err := daemon.Demo(context.Background(), &out, opts); err != nil {
		t.Fatalf("Demo: %v\n%s", err, out.String())
	}
	text := out.String()
	for _, want := range []string{"data plane  http://127.0.0.1:", "token ", "stage 1/4: green 5%", "stage 4/4: green 100%", "summary", "generator: "} {
		if !strings.Contains(text, want) {
			t.Errorf("demo output lacks %q:\n%s", want, text)
		}
	}
	// The summary's last stage must show green holding all traffic.
	summary := text[strings.LastIndex(text, "summary"):]
	if !strings.Contains(summary, "green 100%") {
		t.Errorf("summary lacks the 100%% stage:\n%s", summary)
	}
}

func TestDemoStopsCleanlyWhenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuffer
	done := make(chan error, 1)
	go func() { done <- daemon.Demo(ctx, &out, daemon.DemoOptions{Run: demo.RunOptions{Plain: true}}) }()
	waitFor(t, 20*time.Second, "the first stage on screen", func() bool { return strings.Contains(out.String(), "stage 1/4") })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Demo after cancel = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Demo did not return within 10s of cancel")
	}
	if !strings.Contains(out.String(), "interrupted after") {
		t.Errorf("cancelled demo output lacks the interruption note:\n%s", out.String())
	}
}
