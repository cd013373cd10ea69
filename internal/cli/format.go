package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/modelgate/modelgate/internal/api"
	"github.com/modelgate/modelgate/internal/spec"
)

// printJSON writes v as the API answers it, indented.
func printJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// printJSONLine writes v as one line of JSON (for followed streams).
func printJSONLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

// orderedNames lists the weights' deployments in the endpoint's order,
// then any the endpoint does not know, sorted.
func orderedNames(ep spec.Endpoint, w spec.Weights) []string {
	var names []string
	for _, d := range ep.Deployments {
		if _, ok := w[d.Name]; ok {
			names = append(names, d.Name)
		}
	}
	for _, n := range w.Names() {
		if _, _, ok := ep.Deployment(n); !ok {
			names = append(names, n)
		}
	}
	return names
}

// formatWeights writes weights as "blue=95 green=5" in deployment order;
// "none" when empty.
func formatWeights(ep spec.Endpoint, w spec.Weights) string {
	var parts []string
	for _, n := range orderedNames(ep, w) {
		if w[n] != 0 {
			parts = append(parts, n+"="+w[n].String())
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " ")
}

func printEndpoints(w io.Writer, eps []spec.Endpoint) error {
	if len(eps) == 0 {
		_, err := fmt.Fprintln(w, "no endpoints")
		return err
	}
	t := newTable(w)
	fmt.Fprintln(t, "ENDPOINT\tDEPLOYMENTS\tTRAFFIC\tMIRROR")
	for _, ep := range eps {
		names := make([]string, len(ep.Deployments))
		for i, d := range ep.Deployments {
			names[i] = d.Name
		}
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\n", ep.Name, strings.Join(names, ","), formatWeights(ep, ep.Traffic), formatWeights(ep, ep.Mirror))
	}
	return t.Flush()
}

// printWeights lists every deployment of the endpoint with its traffic or
// mirror percent (0 for those without).
func printWeights(w io.Writer, ep spec.Endpoint, which string, weights spec.Weights) error {
	t := newTable(w)
	fmt.Fprintf(t, "DEPLOYMENT\t%s\n", strings.ToUpper(which))
	for _, d := range ep.Deployments {
		fmt.Fprintf(t, "%s\t%s%%\n", d.Name, weights[d.Name])
	}
	for _, n := range weights.Names() {
		if _, _, ok := ep.Deployment(n); !ok {
			fmt.Fprintf(t, "%s\t%s%%\n", n, weights[n])
		}
	}
	return t.Flush()
}

// printMetrics writes the report as a table, the baseline first, with the
// differences from the baseline in the last columns.
func printMetrics(w io.Writer, rep api.MetricsAnswer) error {
	fmt.Fprintf(w, "endpoint %s, window %s, baseline %s%s\n%s", rep.Endpoint, rep.Window, rep.Baseline, onReplica(rep.Replicas), coverageLine(rep.Replicas))
	if len(rep.Deployments) == 0 {
		_, err := fmt.Fprintln(w, "no deployments")
		return err
	}
	names := make([]string, 0, len(rep.Deployments))
	for n := range rep.Deployments {
		if n != rep.Baseline {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	if _, ok := rep.Deployments[rep.Baseline]; ok {
		names = append([]string{rep.Baseline}, names...)
	}
	t := newTable(w)
	fmt.Fprintln(t, "DEPLOYMENT\tSHARE\tRPM\tREQUESTS\tERROR RATE\tCLIENT ERRORS\tP50\tP99\tTTFB P99\tΔ ERROR RATE\tΔ P50\tΔ P99\tΔ RPM")
	var total int64
	for _, d := range rep.Deployments {
		total += int64(d.Requests)
	}
	for _, n := range names {
		d := rep.Deployments[n]
		diff := []string{"baseline", "-", "-", "-"}
		if n != rep.Baseline {
			df := rep.Differences[n]
			diff = []string{signed(df.ErrorRatePP, "pp"), signed(df.LatencyP50Pct, "%"), signed(df.LatencyP99Pct, "%"), signed(df.RPMPct, "%")}
		}
		if d.Requests == 0 {
			// Nothing was measured: no rate or latency to show, not zeros.
			share := "-"
			if total > 0 {
				share = percent(0)
			}
			fmt.Fprintf(t, "%s\t%s\t0\t0\tno requests\t0\t-\t-\t-\t%s\n", n, share, strings.Join(diff, "\t"))
			continue
		}
		fmt.Fprintf(t, "%s\t%s\t%s\t%d\t%s\t%d\t%s\t%s\t%s\t%s\n",
			n, percent(d.Share), number(d.RPM), d.Requests, percent(d.ErrorRate), d.ClientErrors,
			millis(d.LatencyMS.P50), millis(d.LatencyMS.P99), millis(d.TTFBMS.P99), strings.Join(diff, "\t"))
	}
	if err := t.Flush(); err != nil {
		return err
	}
	if total == 0 {
		_, err := fmt.Fprintf(w, "no requests in the last %s: nothing measured yet\n", rep.Window)
		return err
	}
	return nil
}

// onReplica names the replica an answer is about, when one was asked for
// (--replica): ", replica gw-2".
func onReplica(c api.Coverage) string {
	if c.Replica == "" {
		return ""
	}
	return ", replica " + c.Replica
}

// coverageLine says which replicas a fleet-wide answer is missing, with
// why: "replicas: 2 of 3 (missing: gw-3: no answer within 2s)" and a line
// break; nothing when every replica answered.
func coverageLine(c api.Coverage) string {
	if c.Complete() {
		return ""
	}
	missing := make([]string, 0, len(c.Missing))
	for _, m := range c.Missing {
		missing = append(missing, m.ID+": "+m.Error)
	}
	return fmt.Sprintf("replicas: %d of %d (missing: %s)\n", c.Reporting, c.Of, strings.Join(missing, "; "))
}

// percent writes a fraction 0..1 as a percent with two decimals.
func percent(f float64) string { return strconv.FormatFloat(f*100, 'f', 2, 64) + "%" }

// number writes a rate with at most one decimal.
func number(f float64) string {
	if f >= 100 {
		return strconv.FormatFloat(f, 'f', 0, 64)
	}
	return strconv.FormatFloat(f, 'f', 1, 64)
}

func millis(ms float64) string { return strconv.FormatFloat(ms, 'f', 1, 64) + "ms" }

// signed writes a difference with its sign and unit; "n/a" without data.
func signed(v *float64, unit string) string {
	if v == nil {
		return "n/a"
	}
	s := strconv.FormatFloat(*v, 'f', 2, 64)
	if *v >= 0 {
		s = "+" + s
	}
	return s + unit
}

const eventHeader = "SEQ  TIME                  ENDPOINT      TYPE                  ACTOR   MESSAGE"

// eventLine formats one event in fixed columns, so that followed events
// line up without buffering the whole table.
func eventLine(ev api.Event) string {
	ep := ev.Endpoint
	if ep == "" {
		ep = "-"
	}
	actor := ev.Actor
	if actor == "" {
		actor = "-"
	}
	return fmt.Sprintf("%-4d %-21s %-13s %-21s %-7s %s", ev.Seq, ev.Time.UTC().Format(time.RFC3339), ep, ev.Type, actor, ev.Message)
}

func printEvents(w io.Writer, evs []api.Event) error {
	if len(evs) == 0 {
		_, err := fmt.Fprintln(w, "no events")
		return err
	}
	t := newTable(w)
	fmt.Fprintln(t, "SEQ\tTIME\tENDPOINT\tTYPE\tACTOR\tMESSAGE")
	for _, ev := range evs {
		fmt.Fprintf(t, "%d\t%s\t%s\t%s\t%s\t%s\n", ev.Seq, ev.Time.UTC().Format(time.RFC3339), dash(ev.Endpoint), ev.Type, dash(ev.Actor), ev.Message)
	}
	return t.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// printApply lists what an apply changed.
func printApply(w io.Writer, res api.ApplyResult) error {
	t := newTable(w)
	for _, row := range []struct {
		label string
		names []string
	}{
		{"created:", res.Created},
		{"updated:", res.Updated},
		{"unchanged:", res.Unchanged},
		{"removed:", res.Removed},
	} {
		names := "none"
		if len(row.names) > 0 {
			names = strings.Join(row.names, ", ")
		}
		fmt.Fprintf(t, "%s\t%s\n", row.label, names)
	}
	return t.Flush()
}
