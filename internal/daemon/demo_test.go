package daemon_test

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/daemon"
	"github.com/modelgate/modelgate/internal/demo"
	"github.com/modelgate/modelgate/internal/testenv"
)

// fastDemo is the demo with a shorter plan: the same config, other numbers.
var fastDemo = daemon.DemoOptions{
	Bake:        time.Second,
	MinRequests: 60,
	// Two minutes, not one: on a loaded 2-core machine the latency
	// evidence of the 5% stage can take most of a minute (seen in CI).
	ProgressDeadline: 2 * time.Minute,
	Run:              demo.RunOptions{Refresh: 500 * time.Millisecond, Plain: true},
}

func TestDemoPromotesGreenAndRollsBackRed(t *testing.T) {
	var out bytes.Buffer
	start := time.Now()
	if err := daemon.Demo(context.Background(), &out, fastDemo); err != nil {
		t.Fatalf("Demo: %v\n%s", err, out.String())
	}
	text := out.String()
	t.Logf("demo took %s; output:\n%s", time.Since(start).Round(time.Second), text)
	if strings.Contains(text, "progress deadline of 2m0s (shadow phase)") {
		t.Fatal("the shadow phase reached its deadline: the rollout controller got no shadow comparison counts (is the daemon's rollout.Options.Shadow wired?)")
	}
	for _, want := range []string{
		"data plane  http://127.0.0.1:",
		"dashboard   http://127.0.0.1:",
		" " + os.Args[0] + " rollout watch fraud --admin http://127.0.0.1:", // the binary as run
		"SHADOW PASSED green after ",
		"rollout 1 of 2 (fraud-1): green replaces blue",
		"rollout 2 of 2 (fraud-2): red replaces green",
		"fraud-1: green replaces blue, shadow",
		"stage 1/4  green    5%",
		"PROMOTED green to 100% of fraud after ",
		"ROLLED BACK red after ",
		"\nsummary\n",
		"generator: ",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	if m := regexp.MustCompile(`token       ([0-9a-f]{48})\n`).FindStringSubmatch(text); m == nil || !strings.Contains(text, "MODELGATE_TOKEN="+m[1]) {
		t.Error("demo output lacks the admin token, or the watch hint does not use it")
	}
	// The rollback says why in plain words, then the failed gate with its numbers.
	if m := regexp.MustCompile(`ROLLED BACK red after \S+, all traffic back on green: red('s error rate is| is slower than green).*\d.* — gate failed: .*\d.*\n`).FindString(text); m == "" {
		t.Error("the rollback of red does not say why in words, then the failed gate with its numbers")
	}
	summary := text[strings.LastIndex(text, "\nsummary\n"):]
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`\n  fraud-1 +green +blue +promoted +(\d+m)?\d+s +[1-9][\d,]*\n`),
		regexp.MustCompile(`\n  fraud-2 +red +green +rolled back +(\d+m)?\d+s +[1-9][\d,]*\n`),
		regexp.MustCompile(`\n  fraud-2: red('s error rate is| is slower than green).* — gate failed: `),
	} {
		if !want.MatchString(summary) {
			t.Errorf("summary does not match %s:\n%s", want, summary)
		}
	}
}

func TestDemoStopsCleanlyWhenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var out testenv.SyncBuffer
	done := make(chan error, 1)
	go func() { done <- daemon.Demo(ctx, &out, fastDemo) }()
	testenv.WaitFor(t, 20*time.Second, "the first rollout on screen", func() bool { return strings.Contains(out.String(), "fraud-1: green replaces blue") })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Demo after cancel = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Demo did not return within 10s of cancel")
	}
	text := out.String()
	for _, want := range []string{"\nstopped while fraud-1 was ", "interrupted after 0 of 2 rollouts", "\nsummary\n", "interrupted"} {
		if !strings.Contains(text, want) {
			t.Errorf("cancelled demo output lacks %q:\n%s", want, text)
		}
	}
}
