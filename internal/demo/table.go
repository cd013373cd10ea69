package demo

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/telemetry"
)

// Table renders the live per-deployment table. On a terminal each Render
// redraws the previous block in place; elsewhere (a pipe, a file, CI logs)
// each Render prints a new block, so the output reads top to bottom.
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

// Render prints one block: the title line, then a row per deployment with
// its configured weight, measured share, requests per minute, error rate
// and p99 latency. Rows are the deployments of weights and of the report,
// sorted by name; a value without data shows as "-".
func (t *Table) Render(title string, weights spec.Weights, r telemetry.Report) error {
	block := formatBlock(title, weights, r)
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

func formatBlock(title string, weights spec.Weights, r telemetry.Report) string {
	names := rowNames(weights, r)
	width := len("DEPLOYMENT")
	for _, n := range names {
		width = max(width, len(n))
	}
	var b strings.Builder
	b.WriteString(title)
	b.WriteByte('\n')
	fmt.Fprintf(&b, "  %-*s %8s %8s %9s %8s %8s\n", width, "DEPLOYMENT", "WEIGHT", "SHARE", "RPM", "ERRORS", "P99 MS")
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

// StageResult is what one stage of the scripted run measured.
type StageResult struct {
	// Title names the stage, e.g. "green 25%".
	Title string
	// Weights is the traffic configured during the stage.
	Weights spec.Weights
	// Duration is how long the stage ran.
	Duration time.Duration
	// Report covers the stage, its window being Duration.
	Report telemetry.Report
}

// WriteSummary prints, per stage, every deployment's configured weight,
// requests, error rate and p99 latency, then the generator's counts.
func WriteSummary(out io.Writer, stages []StageResult, gen GenStats) error {
	width := len("DEPLOYMENT")
	stageWidth := len("STAGE")
	for _, s := range stages {
		stageWidth = max(stageWidth, len(s.Title))
		for _, n := range rowNames(s.Weights, s.Report) {
			width = max(width, len(n))
		}
	}
	var b strings.Builder
	b.WriteString("summary\n")
	fmt.Fprintf(&b, "  %-*s  %-*s %8s %9s %8s %8s\n", stageWidth, "STAGE", width, "DEPLOYMENT", "WEIGHT", "REQUESTS", "ERRORS", "P99 MS")
	for _, s := range stages {
		for i, n := range rowNames(s.Weights, s.Report) {
			label := ""
			if i == 0 {
				label = s.Title
			}
			d, ok := s.Report.Deployments[n]
			has := ok && d.Requests > 0
			fmt.Fprintf(&b, "  %-*s  %-*s %8s %9s %8s %8s\n", stageWidth, label, width, n,
				weight(s.Weights, n),
				thousands(d.Requests),
				orDash(has, pct(d.ErrorRate, 2)),
				orDash(has, strconv.FormatFloat(d.LatencyMS.P99, 'f', 1, 64)))
		}
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

func weight(w spec.Weights, name string) string {
	p, ok := w[name]
	if !ok {
		return "-"
	}
	return p.String() + "%"
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
