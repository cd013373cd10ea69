package demo

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/modelgate/modelgate/internal/rollout"
	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/telemetry"
)

// Table renders the demo's live view. On a terminal each Render redraws
// the previous block in place; elsewhere (a pipe, a file, CI logs) each
// Render prints a new block, so the output reads top to bottom.
type Table struct {
	out io.Writer
	// Redraw, when true, overwrites the previous block with ANSI cursor
	// movements. NewTable sets it when out is a terminal.
	Redraw bool
	lines  int // lines of the block on screen that the next Render replaces
}

// NewTable returns a table writing to out, redrawing in place when out is
// an *os.File on a terminal.
func NewTable(out io.Writer) *Table {
	return &Table{out: out, Redraw: isTerminal(out)}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// Render prints one block. On a terminal it replaces the block of the
// previous Render; elsewhere it follows it after a blank line.
func (t *Table) Render(block string) error {
	var b strings.Builder
	if t.Redraw && t.lines > 0 {
		// Back to the first line of the previous block, clear to the end
		// of the screen, and write the new block in its place.
		fmt.Fprintf(&b, "\r\x1b[%dA\x1b[J", t.lines)
	}
	b.WriteString(block)
	if !t.Redraw {
		b.WriteByte('\n') // blank line between blocks in a log
	}
	t.lines = strings.Count(block, "\n")
	_, err := io.WriteString(t.out, b.String())
	return err
}

// Keep leaves the block on screen as it is: the next Render starts a new
// block below it instead of redrawing this one.
func (t *Table) Keep() { t.lines = 0 }

// reasonWidth bounds a gate's reason in the live view on a terminal, so
// that a line fits it and redrawing in place counts lines right; the
// outcome line prints the full reason. A log (no redraw) never cuts a line.
const reasonWidth = 96

// barWidth is the number of cells of the weight's progress bar.
const barWidth = 20

// formatRollout is the rollout part of the live view: which rollout, its
// phase and stage with a bar of the canary's weight, the time served, and
// each gate's latest verdict with its reason, cut to width runes when width
// is positive (a terminal), whole otherwise.
func formatRollout(r rollout.Rollout, now time.Time, width int) string {
	var b strings.Builder
	if r.FinishedAt != nil {
		now = *r.FinishedAt
	}
	fmt.Fprintf(&b, "%s: %s replaces %s, %s, %s\n", r.ID, r.Canary, r.Stable, strings.ReplaceAll(string(r.Phase), "_", " "), now.Sub(r.StartedAt).Round(time.Second))
	switch {
	case r.Stage == rollout.ShadowStage:
		mirror := spec.Percent(0)
		if r.Plan.Shadow != nil {
			mirror = r.Plan.Shadow.Mirror
		}
		fmt.Fprintf(&b, "  shadow     %s %s%% mirrored, 0%% live    %s of deadline %s\n", r.Canary, mirror,
			now.Sub(r.DeadlineStart()).Round(time.Second), r.Plan.ProgressDeadline.D())
	default:
		n := len(r.Plan.Stages)
		fmt.Fprintf(&b, "  stage %d/%d  %s %4s%%  %s", min(r.Stage+1, n), n, r.Canary, r.Weight, bar(r.Weight))
		if !r.Phase.Terminal() && r.Stage < n {
			fmt.Fprintf(&b, "  baked %s of %s", time.Duration(r.Baked).Round(time.Second), r.Plan.StageBake(r.Stage))
		}
		b.WriteByte('\n')
	}
	if len(r.Gates) == 0 {
		b.WriteString("  gates      waiting for the first look\n")
		return b.String()
	}
	nameWidth := 0
	for _, g := range r.Gates {
		nameWidth = max(nameWidth, len(g.Gate))
	}
	live := r.Stage != rollout.ShadowStage && len(r.Gates) == len(r.Plan.Gates)
	for i, g := range r.Gates {
		label := "  gates     "
		if i > 0 {
			label = "            "
		}
		reason := g.Summary // the plain words; the statistics are in the dashboard and `rollout status`
		if reason == "" {
			reason = g.Reason
		}
		if live && i < len(r.Plan.Gates) && r.Plan.Gates[i].RollbackOnly && g.Summary == "" {
			reason = "rollback only: " + reason
		}
		fmt.Fprintf(&b, "%s%-*s  %-12s  %s\n", label, nameWidth, g.Gate, g.Verdict, clip(reason, width))
	}
	return b.String()
}

// bar draws a weight as [#####---------------].
func bar(w spec.Percent) string {
	n := int(int64(w) * barWidth / int64(spec.Full))
	return "[" + strings.Repeat("#", n) + strings.Repeat("-", barWidth-n) + "]"
}

// clip shortens s to at most n runes, ending with "…" when cut; n <= 0
// keeps it whole.
func clip(s string, n int) string {
	r := []rune(s)
	if n <= 0 || len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// formatDeployments is a row per deployment with its configured weight,
// measured share, requests per minute, error rate and p99 latency over the
// window. Rows are the deployments of weights and of the report, sorted by
// name; a value without data shows as "-".
func formatDeployments(weights spec.Weights, r telemetry.Report, window time.Duration) string {
	names := rowNames(weights, r)
	width := len("DEPLOYMENT")
	for _, n := range names {
		width = max(width, len(n))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "  %-*s %8s %8s %9s %8s %8s   (last %s)\n", width, "DEPLOYMENT", "WEIGHT", "SHARE", "RPM", "ERRORS", "P99 MS", window)
	for _, n := range names {
		d, ok := r.Deployments[n]
		has := ok && d.Requests > 0
		fmt.Fprintf(&b, "  %-*s %8s %8s %9s %8s %8s\n", width, n,
			weight(weights, n),
			orDash(has, pct(d.Share, 1)),
			orDash(has, thousands(uint64(d.RPM+0.5))),
			orDash(has, pct(d.ErrorRate, 2)),
			orDash(has, strconv.FormatFloat(d.LatencyMS.P99, 'f', 1, 64)))
	}
	return b.String()
}

// WriteSummary prints, per rollout, its canary and stable, how it ended,
// how long it took and how many requests the canary served, then each
// one's reason in full and the generator's counts.
func WriteSummary(out io.Writer, outcomes []Outcome, gen GenStats) error {
	var b strings.Builder
	b.WriteString("summary\n")
	fmt.Fprintf(&b, "  %-10s %-8s %-8s %-12s %9s %16s\n", "ROLLOUT", "CANARY", "STABLE", "RESULT", "DURATION", "CANARY REQUESTS")
	for _, o := range outcomes {
		r := o.Rollout
		res, end := result(r), r.UpdatedAt
		if o.Interrupted {
			res = "interrupted"
			end = time.Now()
		}
		if r.FinishedAt != nil {
			end = *r.FinishedAt
		}
		fmt.Fprintf(&b, "  %-10s %-8s %-8s %-12s %9s %16s\n", r.ID, r.Canary, r.Stable, res,
			end.Sub(r.StartedAt).Round(time.Second), thousands(o.CanaryRequests))
	}
	for _, o := range outcomes {
		if o.Interrupted {
			fmt.Fprintf(&b, "  %s: stopped %s\n", o.Rollout.ID, where(o.Rollout))
			continue
		}
		fmt.Fprintf(&b, "  %s: %s\n", o.Rollout.ID, o.Rollout.Reason)
	}
	failRate := "-"
	if done := gen.OK + gen.Failed; done > 0 {
		failRate = pct(float64(gen.Failed)/float64(done), 2)
	}
	fmt.Fprintf(&b, "generator: %s sent, %s ok, %s failed (%s)\n",
		thousands(gen.Sent), thousands(gen.OK), thousands(gen.Failed), failRate)
	_, err := io.WriteString(out, b.String())
	return err
}

// rowNames is every deployment in weights or the report, sorted.
func rowNames(weights spec.Weights, r telemetry.Report) []string {
	seen := make(map[string]bool, len(weights)+len(r.Deployments))
	var names []string
	for n := range weights {
		if !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	for n := range r.Deployments {
		if !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}

// weight is a deployment's configured weight; one missing from the split
// has none.
func weight(w spec.Weights, name string) string {
	return w[name].String() + "%"
}

// pct formats a fraction as a percent with the given decimals: 0.0525 → "5.25%".
func pct(f float64, decimals int) string {
	return strconv.FormatFloat(f*100, 'f', decimals, 64) + "%"
}

func orDash(ok bool, s string) string {
	if !ok {
		return "-"
	}
	return s
}

// thousands formats n with comma separators: 12345 → "12,345".
func thousands(n uint64) string {
	s := strconv.FormatUint(n, 10)
	if len(s) <= 3 {
		return s
	}
	var b strings.Builder
	lead := len(s) % 3
	if lead > 0 {
		b.WriteString(s[:lead])
	}
	for i := lead; i < len(s); i += 3 {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(s[i : i+3])
	}
	return b.String()
}
