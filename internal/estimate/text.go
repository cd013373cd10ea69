package estimate

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/modelgate/modelgate/internal/analysis"
	"github.com/modelgate/modelgate/internal/spec"
)

// stageWarning is the warning of a stage that will likely stop at its
// progress deadline, or empty.
func stageWarning(plan spec.Plan, se StageEstimate, rate float64, deadline, bound time.Duration) string {
	if rate == 0 {
		return "" // one warning for the whole rollout
	}
	name := stageLabel(plan, se.Stage-1)
	at := fmt.Sprintf("at %s requests/s", rateText(rate))
	action := deadlineAction(plan)
	dl := words(deadline)
	t := time.Duration(se.Time.Seconds * float64(time.Second))
	if n := se.DeadlineRequests; n > 0 && !se.Time.Undecided && se.CanaryRequests > int64(n) {
		return fmt.Sprintf("%s needs %s canary requests to decide, more than its progress deadline of %s canary requests: it will %s; raise progress_deadline_requests",
			name, analysis.About(se.CanaryRequests), analysis.Count(int64(n)), action)
	}
	if deadline <= 0 {
		if se.Time.Undecided {
			return fmt.Sprintf("%s does not decide within %s %s (%s canary requests/s); raise traffic or the stage's weight", name, words(bound), at, rateText(se.CanaryPerSecond))
		}
		return "" // bounded by requests only, and within them
	}
	switch {
	case se.Time.Undecided:
		return fmt.Sprintf("%s does not decide within %s %s (%s canary requests/s), far beyond its %s progress deadline: it will %s; raise traffic or the stage's weight",
			name, words(bound), at, rateText(se.CanaryPerSecond), dl, action)
	case !se.WithinDeadline && se.LimitedBy == LimitBake:
		return fmt.Sprintf("%s bakes for %s, longer than its %s progress deadline: it will %s; raise progress_deadline or lower the bake",
			name, words(plan.StageBake(se.Stage-1)), dl, action)
	case !se.WithinDeadline && se.LimitedBy == LimitMinRequests:
		return fmt.Sprintf("%s needs about %s %s to serve its %d canary requests (min_requests), longer than its %s progress deadline: it will %s; raise progress_deadline or traffic, or lower min_requests",
			name, analysis.Roughly(t), at, se.MinRequests, dl, action)
	case !se.WithinDeadline:
		return fmt.Sprintf("%s needs about %s %s, longer than its %s progress deadline: it will %s; raise progress_deadline or traffic",
			name, analysis.Roughly(t), at, dl, action)
	case se.Time.HighSeconds > deadline.Seconds():
		return fmt.Sprintf("%s usually decides in about %s %s, but in about 1 rollout in 10 takes longer than its %s progress deadline and would %s; consider raising progress_deadline",
			name, analysis.Roughly(t), at, dl, action)
	}
	return ""
}

// stageLabel names stage i as users see it: "stage 1 (5%)".
func stageLabel(plan spec.Plan, i int) string {
	return fmt.Sprintf("stage %d (%s%%)", i+1, plan.Stages[i].Weight)
}

// deadlineAction is what the plan does at a progress deadline.
func deadlineAction(plan spec.Plan) string {
	if plan.OnDeadline == spec.DeadlineRollback {
		return "be rolled back"
	}
	return "pause"
}

// words writes a configured duration exactly: "10 min", "30 s", "1.5 h",
// "24 h".
func words(d time.Duration) string {
	switch {
	case d < 2*time.Minute && d%time.Minute != 0 || d < time.Minute:
		return trimFloat(d.Seconds()) + " s"
	case d < 2*time.Hour && d%time.Hour != 0 || d < time.Hour:
		return trimFloat(d.Minutes()) + " min"
	}
	return trimFloat(d.Hours()) + " h"
}

func trimFloat(x float64) string {
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.2f", x), "0"), ".")
}

// rateText writes a rate with two significant digits below 100, whole
// numbers with thousands separators above: "0.05", "2", "33", "2,000".
func rateText(r float64) string {
	if r < 100 {
		s := fmt.Sprintf("%.2g", r)
		if strings.ContainsAny(s, "e") {
			s = trimFloat(r)
		}
		return s
	}
	s := fmt.Sprintf("%.0f", math.Round(r))
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// summary is the estimate in one line: "about 4 min to 100% at 200
// requests/s (stage 1 (5%) 2.6 min, stage 2 (25%) 30 s, stage 3 (50%) 37 s)",
// or why 100% cannot be reached at this rate.
func summary(e Estimate) string {
	at := "at " + rateText(e.RequestsPerSecond) + " requests/s"
	if e.Total.Undecided {
		return "100% cannot be reached " + at + " within the stages' bound of " + words(time.Duration(e.MaxStageSeconds*float64(time.Second))) + " each"
	}
	var stages []string
	for i, s := range e.Stages {
		if s.Promotion {
			continue
		}
		stages = append(stages, fmt.Sprintf("stage %d (%s%%) %s", i+1, s.Weight, analysis.Roughly(time.Duration(s.Time.Seconds*float64(time.Second)))))
	}
	text := fmt.Sprintf("about %s to 100%% %s (%s)", analysis.Roughly(time.Duration(e.Total.Seconds*float64(time.Second))), at, strings.Join(stages, ", "))
	if e.Shadow != nil || e.FinalBakeSeconds > 0 {
		text += fmt.Sprintf("; about %s to its end with the shadow phase and the final bake", analysis.Roughly(time.Duration(e.EndSeconds*float64(time.Second))))
	}
	return text
}
