package cli

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/modelgate/modelgate/internal/api"
	"github.com/modelgate/modelgate/internal/spec"
)

// stageText is where the rollout is in its plan: "2/4 at 25%", or
// "shadow (mirror 10%)".
func stageText(r api.Rollout) string {
	if r.Stage < 0 {
		if r.Plan.Shadow != nil {
			return "shadow (mirror " + r.Plan.Shadow.Mirror.String() + "%)"
		}
		return "shadow"
	}
	return fmt.Sprintf("%d/%d at %s%%", r.Stage+1, len(r.Plan.Stages), r.StageWeight(r.Stage))
}

// shortStage is stageText without the weight, for the history table.
func shortStage(r api.Rollout) string {
	if r.Stage < 0 {
		return "shadow"
	}
	return fmt.Sprintf("%d/%d", r.Stage+1, len(r.Plan.Stages))
}

// phaseText is the phase, with the confirm-promotion wait when there is one.
func phaseText(r api.Rollout) string {
	if r.AwaitingConfirmation {
		return string(r.Phase) + " (waiting for the confirm-promotion webhook)"
	}
	return string(r.Phase)
}

// trafficText is the split the rollout set (a hand change that paused it
// is in the reason): "blue=75 green=25".
func trafficText(r api.Rollout) string {
	w := r.Traffic(r.Weight)
	var parts []string
	for _, n := range []string{r.Stable, r.Canary} {
		if p, ok := w[n]; ok {
			parts = append(parts, n+"="+p.String())
		}
	}
	return strings.Join(parts, " ")
}

// planText lists the steps, the current one in brackets while the
// rollout runs: "shadow → 5 → [25] → 50 → 100".
func planText(r api.Rollout) string {
	var parts []string
	mark := func(s string, current bool) string {
		if current && !r.Phase.Terminal() {
			return "[" + s + "]"
		}
		return s
	}
	if r.Plan.Shadow != nil {
		parts = append(parts, mark("shadow", r.Stage < 0))
	}
	for i, s := range r.Plan.Stages {
		parts = append(parts, mark(s.Weight.String(), i == r.Stage))
	}
	return strings.Join(parts, " → ")
}

// bakeText is the bake time served of the stage's minimum, with the
// minimum sample; "" in the shadow phase and once the rollout has ended.
func bakeText(r api.Rollout) string {
	if r.Stage < 0 || r.Stage >= len(r.Plan.Stages) || r.Phase.Terminal() {
		return ""
	}
	bake := r.Plan.StageBake(r.Stage)
	s := humanDuration(r.Baked.D()) + " of " + humanDuration(bake)
	if left := bake - r.Baked.D(); left > 0 {
		s += " (" + humanDuration(left) + " left)"
	}
	if n := r.Plan.StageMinRequests(r.Stage); n > 0 {
		s += ", needs " + strconv.Itoa(n) + " canary requests"
	}
	return s
}

// deadlineText is the time the stage has left before the deadline action,
// as of the daemon's last look; "" when it does not run.
func deadlineText(r api.Rollout) string {
	limit := r.Plan.ProgressDeadline.D()
	if limit <= 0 || r.Phase.Terminal() {
		return ""
	}
	action := "pause"
	if r.Plan.OnDeadline == spec.DeadlineRollback {
		action = "roll back"
	}
	if r.Phase == api.PhasePaused {
		return "stopped while paused (" + humanDuration(limit) + " from the resume, then " + action + ")"
	}
	left := limit - r.UpdatedAt.Sub(r.DeadlineStart())
	if left <= 0 {
		return "passed (then " + action + ")"
	}
	return humanDuration(left) + " left, then " + action
}

// humanDuration is a duration rounded for people: "12s", "1m30s", "450ms".
func humanDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d < 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}

func timeText(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// printRollout writes rollout status: the rollout, then a row per gate.
func printRollout(w io.Writer, r api.Rollout) error {
	t := newTable(w)
	row := func(label, value string) {
		if value != "" {
			fmt.Fprintf(t, "%s\t%s\n", label+":", value)
		}
	}
	row("rollout", r.ID)
	row("phase", phaseText(r))
	row("stable → canary", r.Stable+" → "+r.Canary)
	row("stage", stageText(r)+"  ("+planText(r)+")")
	row("weights", trafficText(r))
	row("baked", bakeText(r))
	row("deadline", deadlineText(r))
	row("started", timeText(r.StartedAt))
	if r.FinishedAt != nil {
		row("finished", timeText(*r.FinishedAt))
	}
	row("reason", r.Reason)
	if err := t.Flush(); err != nil {
		return err
	}
	if len(r.Gates) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	t = newTable(w)
	fmt.Fprintln(t, "GATE\tVERDICT\tSUMMARY")
	for _, g := range r.Gates {
		fmt.Fprintf(t, "%s\t%s\t%s\n", g.Gate, g.Verdict, gateSummary(g))
	}
	if err := t.Flush(); err != nil {
		return err
	}
	sep := "\n"
	for _, g := range r.Gates {
		if g.Summary != "" { // else the table showed the reason
			fmt.Fprintf(w, "%s%s statistics: %s\n", sep, g.Gate, g.Reason)
			sep = ""
		}
	}
	return nil
}

// gateSummary is a gate's plain words (its reason for a verdict stored by
// a modelgate that did not write summaries).
func gateSummary(g api.GateResult) string {
	if g.Summary != "" {
		return g.Summary
	}
	return g.Reason
}

// printRollouts writes the history table, newest first as the API lists it.
func printRollouts(w io.Writer, rs []api.Rollout) error {
	if len(rs) == 0 {
		_, err := fmt.Fprintln(w, "no rollouts")
		return err
	}
	t := newTable(w)
	fmt.Fprintln(t, "ID\tPHASE\tSTABLE\tCANARY\tSTAGE\tWEIGHT\tSTARTED\tFINISHED\tREASON")
	for _, r := range rs {
		finished := "-"
		if r.FinishedAt != nil {
			finished = timeText(*r.FinishedAt)
		}
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\t%s%%\t%s\t%s\t%s\n", r.ID, r.Phase, r.Stable, r.Canary, shortStage(r), r.Weight,
			timeText(r.StartedAt), finished, r.Reason)
	}
	return t.Flush()
}

// outcome is the one line an action or start prints: where the rollout is,
// the split it set, and why.
func outcome(r api.Rollout) string {
	state := phaseText(r)
	switch {
	case r.Phase.Terminal():
		return fmt.Sprintf("rollout %s %s, weights %s: %s", r.ID, r.Phase.Predicate(), trafficText(r), r.Reason)
	case r.Phase == api.PhaseShadow:
		state = "in the shadow phase"
	case r.Stage < 0:
		state += " in the shadow phase"
	default:
		state += fmt.Sprintf(" at stage %s (%s%%)", shortStage(r), r.StageWeight(r.Stage))
	}
	return fmt.Sprintf("rollout %s is %s, weights %s: %s", r.ID, state, trafficText(r), r.Reason)
}

// barWidth is the number of cells of the watch view's progress bar.
const barWidth = 40

// progressBar draws the canary weight: "[██████░░░░...] 25%".
func progressBar(w spec.Percent) string {
	filled := int(math.Round(w.Fraction() * barWidth))
	filled = min(max(filled, 0), barWidth)
	return "[" + strings.Repeat("█", filled) + strings.Repeat("░", barWidth-filled) + "] " + w.String() + "%"
}

// renderWatch is the watch view of r; note, when set, is a last line such
// as "daemon unreachable".
func renderWatch(r api.Rollout, note string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "rollout %s on %s: %s → %s (as of %s)\n", r.ID, r.Endpoint, r.Stable, r.Canary, timeText(r.UpdatedAt))
	// Fixed label width, so that redraws do not shift when a row comes or goes.
	row := func(label, value string) {
		if value != "" {
			fmt.Fprintf(&b, "%-9s %s\n", label, value)
		}
	}
	row("phase", phaseText(r))
	row("stage", stageText(r)+"   "+planText(r))
	row("canary", progressBar(r.Weight))
	row("weights", trafficText(r))
	row("bake", bakeText(r))
	row("deadline", deadlineText(r))
	row("reason", r.Reason)
	if len(r.Gates) > 0 {
		b.WriteString("gates\n")
		t := newTable(&b)
		for _, g := range r.Gates {
			fmt.Fprintf(t, "  %s\t%s\t%s\n", g.Gate, g.Verdict, evidenceSummary(g))
		}
		t.Flush()
		for _, g := range r.Gates {
			fmt.Fprintf(&b, "  %s: %s\n", g.Gate, gateSummary(g))
		}
	}
	if note != "" {
		b.WriteString(note + "\n")
	}
	return b.String()
}

// evidenceSummary condenses a gate's evidence to one short line, by the
// shape of the evidence (see internal/analysis): "" when it has none of
// the known fields.
func evidenceSummary(g api.GateResult) string {
	e := g.Evidence
	if e == nil {
		return ""
	}
	errs, seq := e["errors"].(map[string]any)
	switch {
	case seq:
		s := evCount(errs, "canary_requests") + " canary requests; errors " + seqText(errs)
		if st, ok := e["stage"].(map[string]any); ok {
			s = "this stage " + evPercent(st, "canary_rate") + " of " + evCount(st, "canary_requests") +
				" vs " + evPercent(st, "stable_rate") + " of " + evCount(st, "stable_requests") + "; errors " + seqText(errs)
		}
		if lat, ok := e["latency"].(map[string]any); ok {
			if worst, name := slowestQuantile(lat); worst != nil {
				s += "; slow requests at " + name + " " + seqText(worst)
			} else if hasKey(lat, "statistic") {
				s += "; slow requests " + seqText(lat)
			}
		}
		return s
	case hasKey(e, "compared"):
		s := "match " + evPercent(e, "match_rate") + " of " + evCount(e, "compared") + " compared"
		if hasKey(e, "min_match_rate") {
			s += " (min " + evPercent(e, "min_match_rate") + ")"
		}
		return s
	case hasKey(e, "canary_errors"):
		return "canary " + evPercent(e, "canary_rate") + " of " + evCount(e, "canary_requests") +
			" vs stable " + evPercent(e, "stable_rate") + " of " + evCount(e, "stable_requests")
	case hasKey(e, "quantile"):
		if !hasKey(e, "canary_ms") {
			return evCount(e, "canary_requests") + " of " + evCount(e, "min_requests") + " canary requests"
		}
		s := "canary " + evMillis(e, "canary_ms")
		if hasKey(e, "stable_ms") {
			s += " vs stable " + evMillis(e, "stable_ms")
		}
		return s + " over " + evCount(e, "canary_requests") + " requests"
	}
	return ""
}

// seqText is one sequential test's weight-adjusted count and statistic
// against its threshold: "31 where 29.5 expected, statistic 0.81 of 40"
// (a record of a modelgate before observed/expected: its pooled rates).
func seqText(m map[string]any) string {
	if hasKey(m, "observed_canary_bad") {
		return evCount(m, "observed_canary_bad") + " where " + evValue(m, "expected_canary_bad") + " expected, statistic " + evValue(m, "statistic") + " of " + evValue(m, "threshold")
	}
	return evPercent(m, "canary_rate") + " vs " + evPercent(m, "stable_rate") + ", statistic " + evValue(m, "statistic") + " of " + evValue(m, "threshold")
}

// slowestQuantile is the latency test (one per quantile) whose statistic
// is highest, and its quantile's name.
func slowestQuantile(lat map[string]any) (map[string]any, string) {
	var worst map[string]any
	var name string
	best := -1.0
	for q, v := range lat {
		m, ok := v.(map[string]any)
		if !ok {
			continue
		}
		if s, ok := evNumber(m, "statistic"); ok && (s > best || s == best && q < name) {
			worst, name, best = m, q, s
		}
	}
	return worst, name
}

func hasKey(m map[string]any, k string) bool {
	_, ok := m[k]
	return ok
}

func evNumber(m map[string]any, k string) (float64, bool) {
	switch v := m[k].(type) {
	case float64:
		return v, true
	case int:
		return float64(v), true
	case int64:
		return float64(v), true
	case uint64:
		return float64(v), true
	}
	return 0, false
}

// evPercent writes a fraction as a percent: "0.52%".
func evPercent(m map[string]any, k string) string {
	v, ok := evNumber(m, k)
	if !ok {
		return "?"
	}
	return strconv.FormatFloat(v*100, 'g', 3, 64) + "%"
}

// evCount writes an integer with thousands separators: "4,032".
func evCount(m map[string]any, k string) string {
	v, ok := evNumber(m, k)
	if !ok {
		return "?"
	}
	s := strconv.FormatInt(int64(v), 10)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func evValue(m map[string]any, k string) string {
	v, ok := evNumber(m, k)
	if !ok {
		return "?"
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

func evMillis(m map[string]any, k string) string {
	v, ok := evNumber(m, k)
	if !ok {
		return "?"
	}
	return strconv.FormatFloat(v, 'g', 3, 64) + " ms"
}
