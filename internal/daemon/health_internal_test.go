package daemon

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/modelgate/modelgate/internal/proxy"
)

type recordLog struct{ lines []string }

func (r *recordLog) Warn(msg string, args ...any) {
	r.lines = append(r.lines, "WARN "+msg+" "+fmt.Sprint(args...))
}
func (r *recordLog) Info(msg string, args ...any) {
	r.lines = append(r.lines, "INFO "+msg+" "+fmt.Sprint(args...))
}

func TestHealthChangesAreLoggedOnce(t *testing.T) {
	look := func(blue, green bool) map[string]map[string][]proxy.BackendHealth {
		return map[string]map[string][]proxy.BackendHealth{"fraud": {
			"blue":  {{URL: "http://b", Healthy: blue}},
			"green": {{URL: "http://g", Healthy: green, LastError: "connect: refused"}},
		}}
	}
	var log recordLog
	last := map[string]bool{}
	for _, l := range []map[string]map[string][]proxy.BackendHealth{
		look(true, false), look(true, false), look(true, true), look(true, true), look(false, true),
	} {
		last = logHealthChanges(&log, l, last)
	}
	var got []string
	for _, l := range log.lines {
		got = append(got, strings.Fields(l)[0]+" "+strings.Join(strings.Fields(l)[1:4], " "))
	}
	want := []string{"WARN backend down: no", "INFO backend up again", "WARN backend down: no"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("log lines (-want +got):\n%s\n%s", diff, strings.Join(log.lines, "\n"))
	}
	if !strings.Contains(log.lines[0], "green") || !strings.Contains(log.lines[2], "blue") {
		t.Errorf("log lines name the wrong backends:\n%s", strings.Join(log.lines, "\n"))
	}
}
