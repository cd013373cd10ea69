package compare

import (
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/modelgate/modelgate/internal/spec"
)

func f64(v float64) *float64 { return &v }
func boolp(v bool) *bool     { return &v }

func ok200(body string) Response { return Response{Status: 200, Body: []byte(body)} }

func mustNew(t testing.TB, c spec.Compare) *Comparator {
	t.Helper()
	cmpr, err := New(c)
	if err != nil {
		t.Fatalf("New(%+v) = %v", c, err)
	}
	return cmpr
}

// match is the Result of agreeing answers under protocol p.
func match(p string) Result { return Result{Match: true, Compared: true, Protocol: p} }

// mismatch builds the Result of a mismatch.
func mismatch(p, path, reason, live, shadow string) Result {
	return Result{Compared: true, Protocol: p, Path: path, Reason: reason, Live: live, Shadow: shadow}
}

type compareCase struct {
	name         string
	cfg          spec.Compare
	live, shadow Response
	want         Result
}

func runCases(t *testing.T, cases []compareCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := mustNew(t, tc.cfg)
			got := c.Compare(tc.live, tc.shadow)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Compare(%q, %q) (-want +got):\n%s", tc.live.Body, tc.shadow.Body, diff)
			}
		})
	}
}

const tol = " (rtol 1e-05, atol 1e-08)"

func TestStatus(t *testing.T) {
	status := spec.Compare{Comparator: spec.ComparatorStatus}
	kserve := spec.Compare{Protocol: spec.ProtocolKServeV1}
	runCases(t, []compareCase{
		{"class differs", spec.Compare{}, ok200(`{"predictions":[1]}`), Response{Status: 500, Body: []byte(`oops`)},
			mismatch("auto", "status", "status 200 vs 500", "200", "500")},
		{"same error status, bodies ignored", spec.Compare{}, Response{Status: 503, Body: []byte("a")}, Response{Status: 503, Body: []byte("b")},
			match("auto")},
		{"different error statuses", kserve, Response{Status: 404}, Response{Status: 400},
			mismatch("kserve_v1", "status", "status 404 vs 400", "404", "400")},
		{"2xx codes may differ, bodies compared", kserve, ok200(`{"predictions":[1]}`), Response{Status: 201, Body: []byte(`{"predictions":[1.0]}`)},
			match("kserve_v1")},
		{"2xx codes may differ, bodies differ", kserve, ok200(`{"predictions":[1]}`), Response{Status: 201, Body: []byte(`{"predictions":[2]}`)},
			mismatch("kserve_v1", "predictions[0]", "predictions[0]: 1 vs 2"+tol, "1", "2")},
		{"status comparator ignores bodies", status, ok200(`a`), ok200(`b`), match("auto")},
		{"status comparator wants equal codes", status, ok200(`a`), Response{Status: 201, Body: []byte(`a`)},
			mismatch("auto", "status", "status 200 vs 201", "200", "201")},
		{"status comparator, equal errors", status, Response{Status: 500}, Response{Status: 500}, match("auto")},
		{"transport failure", spec.Compare{}, ok200(`{}`), Response{},
			mismatch("auto", "status", "status 200 vs 0", "200", "0")},
		{"truncated live", spec.Compare{}, Response{Status: 200, Body: []byte(`{"pre`), Truncated: true}, ok200(`{}`),
			Result{Protocol: "auto", Reason: "live body truncated at the capture limit"}},
		{"truncated shadow", kserve, ok200(`{}`), Response{Status: 200, Body: []byte(`{"pre`), Truncated: true},
			Result{Protocol: "kserve_v1", Reason: "shadow body truncated at the capture limit"}},
		{"status mismatch wins over truncation", spec.Compare{}, ok200(`{}`), Response{Status: 502, Truncated: true},
			mismatch("auto", "status", "status 200 vs 502", "200", "502")},
		{"status comparator ignores truncation", status, Response{Status: 200, Truncated: true}, ok200(``), match("auto")},
	})
}

func TestNumeric(t *testing.T) {
	def := spec.Compare{}
	wide := spec.Compare{RTol: f64(0.1), ATol: f64(0)}
	strict := spec.Compare{RTol: f64(0), ATol: f64(0)}
	noNaN := spec.Compare{EqualNaN: boolp(false)}
	p := func(s string) Response { return ok200(`{"predictions":` + s + `}`) }
	const k = "kserve_v1"
	runCases(t, []compareCase{
		{"equal", def, p(`[0.5, 0.25]`), p(`[0.5,0.25]`), match(k)},
		{"within default tolerance", def, p(`[1000.0]`), p(`[1000.009]`), match(k)},
		{"outside default tolerance", def, p(`[0.71]`), p(`[0.64]`), mismatch(k, "predictions[0]", "predictions[0]: 0.71 vs 0.64"+tol, "0.71", "0.64")},
		{"atol near zero", def, p(`[0]`), p(`[1e-9]`), match(k)},
		{"atol exceeded near zero", def, p(`[0]`), p(`[1e-7]`), mismatch(k, "predictions[0]", "predictions[0]: 0 vs 1e-7"+tol, "0", "1e-7")},
		{"rtol boundary included", wide, p(`[10]`), p(`[11]`), match(k)},
		// |s-l| <= atol + rtol*|l|: the live value is the reference, so
		// the same pair passes one way round and fails the other.
		{"live is the reference: fails", wide, p(`[10]`), p(`[11.05]`),
			mismatch(k, "predictions[0]", "predictions[0]: 10 vs 11.05 (rtol 0.1, atol 0)", "10", "11.05")},
		{"live is the reference: passes", wide, p(`[11.05]`), p(`[10]`), match(k)},
		{"zero tolerance", strict, p(`[1]`), p(`[1.000001]`),
			mismatch(k, "predictions[0]", "predictions[0]: 1 vs 1.000001 (rtol 0, atol 0)", "1", "1.000001")},
		{"integer vs float", strict, p(`[1, 2, -0]`), p(`[1.0, 2e0, 0.0]`), match(k)},
		{"NaN equals NaN", def, p(`[NaN]`), p(`[NaN]`), match(k)},
		{"NaN without equal_nan", noNaN, p(`[1, NaN]`), p(`[1, NaN]`),
			mismatch(k, "predictions[1]", "predictions[1]: NaN vs NaN (equal_nan false)", "NaN", "NaN")},
		{"NaN vs number", def, p(`[NaN]`), p(`[0.5]`), mismatch(k, "predictions[0]", "predictions[0]: NaN vs 0.5"+tol, "NaN", "0.5")},
		{"number vs NaN", def, p(`[0.5]`), p(`[NaN]`), mismatch(k, "predictions[0]", "predictions[0]: 0.5 vs NaN"+tol, "0.5", "NaN")},
		{"Infinity equals Infinity", def, p(`[Infinity, -Infinity]`), p(`[Infinity, -Infinity]`), match(k)},
		{"-Infinity vs Infinity", def, p(`[-Infinity]`), p(`[Infinity]`),
			mismatch(k, "predictions[0]", "predictions[0]: -Infinity vs Infinity"+tol, "-Infinity", "Infinity")},
		{"Infinity vs largest float", wide, p(`[Infinity]`), p(`[1.7976931348623157e308]`),
			mismatch(k, "predictions[0]", "predictions[0]: Infinity vs 1.7976931348623157e308 (rtol 0.1, atol 0)", "Infinity", "1.7976931348623157e308")},
		{"overflowing literal is Infinity", def, p(`[1e999]`), p(`[Infinity]`), match(k)},
		{"string NaN and Infinity where numbers are expected", def, p(`[NaN, Infinity, -Infinity, 1]`), p(`["NaN", "Infinity", "-Infinity", 1]`), match(k)},
		{"numpy spellings", def, p(`["nan", "inf", "-inf"]`), p(`[NaN, Infinity, -Infinity]`), match(k)},
		{"string NaN vs number", def, p(`[0.5]`), p(`["NaN"]`), mismatch(k, "predictions[0]", `predictions[0]: 0.5 vs "NaN"`+tol, "0.5", `"NaN"`)},
		{"nested arrays", def, p(`[[[[1,2],[3,4]]],[[[5,6],[7,8]]]]`), p(`[[[[1,2],[3,4]]],[[[5,6],[7,8.5]]]]`),
			mismatch(k, "predictions[1][0][1][1]", "predictions[1][0][1][1]: 8 vs 8.5"+tol, "8", "8.5")},
		{"different lengths", def, p(`[1,2,3,4]`), p(`[1,2,3,4,5]`), mismatch(k, "predictions", "predictions: length 4 vs 5", "[1,2,3,4]", "[1,2,3,4,5]")},
		{"different shapes", def, p(`[[1,2],[3,4]]`), p(`[[1,2,3],[4]]`), mismatch(k, "predictions[0]", "predictions[0]: length 2 vs 3", "[1,2]", "[1,2,3]")},
		{"array vs scalar", def, p(`[[1,2]]`), p(`[1]`), mismatch(k, "predictions[0]", "predictions[0]: [1,2] vs 1", "[1,2]", "1")},
		{"strings compare exactly", def, p(`["cat", "dog"]`), p(`["cat", "Dog"]`), mismatch(k, "predictions[1]", `predictions[1]: "dog" vs "Dog"`, `"dog"`, `"Dog"`)},
		{"escaped strings compare by content", def, p(`["caf\u00e9", "a\/b"]`), p(`["café", "a/b"]`), match(k)},
		{"bools and nulls", def, p(`[true, false, null]`), p(`[true, false, null]`), match(k)},
		{"bool differs", def, p(`[true]`), p(`[false]`), mismatch(k, "predictions[0]", "predictions[0]: true vs false", "true", "false")},
		{"number vs string", def, p(`[1]`), p(`["1"]`), mismatch(k, "predictions[0]", `predictions[0]: 1 vs "1"`, "1", `"1"`)},
		{"objects key by key, any order", def, p(`[{"label":"cat","score":0.9}]`), p(`[{"score":0.9000001,"label":"cat"}]`), match(k)},
		{"object value differs", def, p(`[{"label":"cat","score":0.9}]`), p(`[{"label":"cat","score":0.8}]`),
			mismatch(k, "predictions[0].score", "predictions[0].score: 0.9 vs 0.8"+tol, "0.9", "0.8")},
		{"key missing in shadow", def, p(`[{"a":1,"b":2}]`), p(`[{"a":1,"c":2}]`), mismatch(k, "predictions[0].b", "predictions[0].b: missing in shadow", "2", "")},
		{"key missing in live", def, p(`[{"a":1}]`), p(`[{"a":1,"extra key":2}]`),
			mismatch(k, `predictions[0]["extra key"]`, `predictions[0]["extra key"]: missing in live`, "", "2")},
		{"large objects", def, p(bigObject(100, 0)), p(bigObject(100, 0)), match(k)},
		{"large objects differ", def, p(bigObject(100, 0)), p(bigObject(100, 57)),
			mismatch(k, "predictions.k57", "predictions.k57: 57 vs 58"+tol, "57", "58")},
		{"duplicate keys: the first counts", def, p(`{"a":1,"a":[2]}`), p(`{"a":1.0,"a":"x"}`), match(k)},
		{"empty arrays", def, p(`[]`), p(`[]`), match(k)},
		{"predictions missing in shadow", def, p(`[1]`), ok200(`{"outputs":[]}`), mismatch(k, "predictions", "predictions: missing in shadow", "[1]", "")},
		{"long values are shortened", def, p(`["` + strings.Repeat("a", 200) + `"]`), p(`["b"]`),
			mismatch(k, "predictions[0]", `predictions[0]: "`+strings.Repeat("a", 80)+`…" vs "b"`, `"`+strings.Repeat("a", 80)+`…"`, `"b"`)},
	})
}

// bigObject renders an object of n keys k0..kn-1 with value i, except key
// bump whose value is one more (none when bump is 0).
func bigObject(n, bump int) string {
	var b strings.Builder
	b.WriteString("{")
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		v := i
		if bump != 0 && i == bump {
			v++
		}
		b.WriteString(`"k` + itoa(i) + `":` + itoa(v))
	}
	b.WriteString("}")
	return b.String()
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestLabelAndArgmax(t *testing.T) {
	label := spec.Compare{Protocol: spec.ProtocolKServeV1, Comparator: spec.ComparatorLabel}
	argmax := spec.Compare{Comparator: spec.ComparatorArgmax}
	p := func(s string) Response { return ok200(`{"predictions":` + s + `}`) }
	const k = "kserve_v1"
	runCases(t, []compareCase{
		{"labels agree", label, p(`[1, 0, 2, "cat"]`), p(`[1, 0, 2.0, "cat"]`), match(k)},
		{"label flips", label, p(`[1, 0, 2]`), p(`[1, 1, 2]`), mismatch(k, "predictions[1]", "predictions[1]: 0 vs 1", "0", "1")},
		{"labels have no tolerance", label, p(`[0.5]`), p(`[0.5000001]`), mismatch(k, "predictions[0]", "predictions[0]: 0.5 vs 0.5000001", "0.5", "0.5000001")},
		{"large integer labels are exact", label, p(`[12345678901234567]`), p(`[12345678901234568]`),
			mismatch(k, "predictions[0]", "predictions[0]: 12345678901234567 vs 12345678901234568", "12345678901234567", "12345678901234568")},
		{"string labels", label, p(`["cat"]`), p(`["dog"]`), mismatch(k, "predictions[0]", `predictions[0]: "cat" vs "dog"`, `"cat"`, `"dog"`)},
		{"label objects compare their label only", label, p(`[{"label":"cat","score":0.9}]`), p(`[{"label":"cat","score":0.6}]`), match(k)},
		{"label objects differ", label, p(`[{"label":"cat","score":0.9}]`), p(`[{"score":0.9,"label":"dog"}]`),
			mismatch(k, "predictions[0].label", `predictions[0].label: "cat" vs "dog"`, `"cat"`, `"dog"`)},
		{"argmax agrees", argmax, p(`[[0.1,0.9],[0.8,0.2]]`), p(`[[0.3,0.7],[0.6,0.4]]`), match(k)},
		{"argmax differs", argmax, p(`[[0.1,0.9],[0.8,0.2]]`), p(`[[0.3,0.7],[0.4,0.6]]`),
			mismatch(k, "predictions[1]", "predictions[1]: argmax 0 vs 1", "[0.8,0.2]", "[0.4,0.6]")},
		{"argmax ties take the first index", argmax, p(`[[0.5,0.5],[0.2,0.4,0.4]]`), p(`[[0.6,0.4],[0.1,0.5,0.4]]`), match(k)},
		{"argmax tie vs later max", argmax, p(`[[0.2,0.4,0.4]]`), p(`[[0.2,0.3,0.5]]`),
			mismatch(k, "predictions[0]", "predictions[0]: argmax 1 vs 2", "[0.2,0.4,0.4]", "[0.2,0.3,0.5]")},
		{"argmax of one vector", argmax, p(`[0.1, 0.7, 0.2]`), p(`[0.2, 0.5, 0.3]`), match(k)},
		{"argmax NaN is the maximum, as in numpy", argmax, p(`[[0.1, NaN, 0.9]]`), p(`[[0.1, "NaN", 0.2]]`), match(k)},
		{"argmax with different class counts", argmax, p(`[[0.1,0.9]]`), p(`[[0.1,0.8,0.1]]`),
			mismatch(k, "predictions[0]", "predictions[0]: length 2 vs 3", "[0.1,0.9]", "[0.1,0.8,0.1]")},
		{"argmax row vs label", argmax, p(`[[0.1,0.9]]`), p(`[1]`), mismatch(k, "predictions[0]", "predictions[0]: [0.1,0.9] vs 1", "[0.1,0.9]", "1")},
		{"argmax on labels compares exactly", argmax, p(`{"a":"x"}`), p(`{"a":"y"}`), mismatch(k, "predictions.a", `predictions.a: "x" vs "y"`, `"x"`, `"y"`)},
	})
}

func TestOIPV2(t *testing.T) {
	def := spec.Compare{}
	only := spec.Compare{Protocol: spec.ProtocolOIPV2, Outputs: []string{"probs"}}
	argmax := spec.Compare{Protocol: spec.ProtocolOIPV2, Comparator: spec.ComparatorArgmax}
	out := func(outputs ...string) Response {
		return ok200(`{"model_name":"m","id":"1","outputs":[` + strings.Join(outputs, ",") + `]}`)
	}
	probs := `{"name":"probs","shape":[2,3],"datatype":"FP32","data":[0.1,0.2,0.7,0.5,0.3,0.2]}`
	label := `{"name":"label","shape":[2],"datatype":"INT64","data":[2,0]}`
	const o = "oip_v2"
	runCases(t, []compareCase{
		{"equal", def, out(probs, label), out(probs, label), match(o)},
		{"matched by name, not position", def, out(probs, label), out(label, probs), match(o)},
		{"nested data equals flat data", def, out(probs),
			out(`{"name":"probs","shape":[2,3],"datatype":"FP32","data":[[0.1,0.2,0.7],[0.5,0.3,0.2]]}`), match(o)},
		{"element differs, path by shape", def, out(probs),
			out(`{"name":"probs","shape":[2,3],"datatype":"FP32","data":[0.1,0.2,0.7,0.5,0.3,0.25]}`),
			mismatch(o, `outputs["probs"].data[1][2]`, `outputs["probs"].data[1][2]: 0.2 vs 0.25`+tol, "0.2", "0.25")},
		{"shape differs", def, out(probs),
			out(`{"name":"probs","shape":[3,2],"datatype":"FP32","data":[0.1,0.2,0.7,0.5,0.3,0.2]}`),
			mismatch(o, `outputs["probs"].shape`, `outputs["probs"].shape: [2,3] vs [3,2]`, "[2,3]", "[3,2]")},
		{"data length differs", def, out(probs),
			out(`{"name":"probs","shape":[2,3],"datatype":"FP32","data":[0.1,0.2,0.7,0.5,0.3]}`),
			mismatch(o, `outputs["probs"].data`, `outputs["probs"].data: length 6 vs 5`, "[0.1,0.2,0.7,0.5,0.3,0.2]", "[0.1,0.2,0.7,0.5,0.3]")},
		{"datatype may differ when values are equal", def, out(label),
			out(`{"name":"label","shape":[2],"datatype":"FP64","data":[2.0,0.0]}`), match(o)},
		{"datatype is named when values differ", def, out(label),
			out(`{"name":"label","shape":[2],"datatype":"FP64","data":[2.0,1.0]}`),
			mismatch(o, `outputs["label"].data[1]`, `outputs["label"].data[1]: 0 vs 1.0`+tol+` (datatype INT64 vs FP64)`, "0", "1.0")},
		{"output missing in shadow", def, out(probs, label), out(probs),
			mismatch(o, `outputs["label"]`, `outputs["label"]: missing in shadow`, "", "")},
		{"extra output in shadow", def, out(probs), out(probs, label),
			mismatch(o, `outputs["label"]`, `outputs["label"]: missing in live`, "", "")},
		{"configured outputs only", only, out(probs, label), out(probs, `{"name":"label","shape":[2],"datatype":"INT64","data":[1,1]}`), match(o)},
		{"configured output missing in live", only, out(label), out(label),
			Result{Protocol: o, Path: `outputs["probs"]`, Reason: `outputs["probs"]: not in the live answer`}},
		{"configured output missing in shadow", only, out(probs), out(label),
			mismatch(o, `outputs["probs"]`, `outputs["probs"]: missing in shadow`, "", "")},
		{"no shape: compared as written", def, out(`{"name":"x","data":[[1,2],[3,4]]}`), out(`{"name":"x","data":[[1,2],[3,5]]}`),
			mismatch(o, `outputs["x"].data[1][1]`, `outputs["x"].data[1][1]: 4 vs 5`+tol, "4", "5")},
		{"BYTES outputs", def, out(`{"name":"t","shape":[2],"datatype":"BYTES","data":["a","b"]}`),
			out(`{"name":"t","shape":[2],"datatype":"BYTES","data":["a","c"]}`),
			mismatch(o, `outputs["t"].data[1]`, `outputs["t"].data[1]: "b" vs "c"`, `"b"`, `"c"`)},
		{"argmax per row of the last dimension", argmax, out(probs),
			out(`{"name":"probs","shape":[2,3],"datatype":"FP32","data":[0.2,0.2,0.6,0.4,0.35,0.25]}`), match(o)},
		{"argmax differs", argmax, out(probs),
			out(`{"name":"probs","shape":[2,3],"datatype":"FP32","data":[0.2,0.2,0.6,0.3,0.4,0.3]}`),
			mismatch(o, `outputs["probs"].data[1]`, `outputs["probs"].data[1]: argmax 0 vs 1`, "0.5,0.3,0.2", "0.3,0.4,0.3")},
		{"outputs missing in shadow", def, out(probs), ok200(`{"error":"bad"}`),
			mismatch(o, "outputs", "outputs: missing in shadow", short([]byte(`[`+probs+`]`)), "")},
		{"live without outputs", spec.Compare{Protocol: spec.ProtocolOIPV2}, ok200(`{"error":"x"}`), out(probs),
			Result{Protocol: o, Reason: "live answer has no outputs"}},
	})
}

func sse(chunks ...string) string {
	var b strings.Builder
	for _, c := range chunks {
		b.WriteString("data: " + c + "\n\n")
	}
	return b.String()
}

func chat(contents ...string) string {
	var cs []string
	for i, c := range contents {
		cs = append(cs, `{"index":`+itoa(i)+`,"message":{"role":"assistant","content":`+c+`},"finish_reason":"stop"}`)
	}
	return `{"id":"chatcmpl-1","object":"chat.completion","choices":[` + strings.Join(cs, ",") + `],"usage":{"total_tokens":3}}`
}

func TestOpenAI(t *testing.T) {
	def := spec.Compare{}
	text := spec.Compare{Protocol: spec.ProtocolOpenAI, Comparator: spec.ComparatorText}
	exact := spec.Compare{Protocol: spec.ProtocolOpenAI, Comparator: spec.ComparatorExact}
	half := spec.Compare{Similarity: f64(0.5)}
	stream := Response{Status: 200, ContentType: "text/event-stream; charset=utf-8", Body: []byte(sse(
		`{"id":"c","choices":[{"index":0,"delta":{"role":"assistant"},"finish_reason":null}]}`,
		`{"id":"c","choices":[{"index":0,"delta":{"content":"The cat "},"finish_reason":null}]}`,
		`{"id":"c","choices":[{"index":0,"delta":{"content":"sat on the mat."},"finish_reason":"stop"}]}`,
		`{"id":"c","choices":[],"usage":{"total_tokens":9}}`,
		`[DONE]`))}
	const a = "openai"
	runCases(t, []compareCase{
		{"chat equal", def, ok200(chat(`"The cat sat on the mat."`)), ok200(chat(`"The cat sat on the mat."`)), match(a)},
		{"chat similar enough", def, ok200(chat(`"The cat sat on the mat."`)), ok200(chat(`"the cat sat on a mat"`)), match(a)},
		{"chat not similar", def, ok200(chat(`"The cat sat on the mat."`)), ok200(chat(`"A dog ran in the park."`)),
			mismatch(a, "choices[0].message.content", "choices[0].message.content: similarity 0.167 < 0.8", `"The cat sat on the mat."`, `"A dog ran in the park."`)},
		{"threshold configurable", half, ok200(chat(`"The cat sat on the mat."`)), ok200(chat(`"The dog sat on the rug."`)), match(a)},
		{"completions text", def, ok200(`{"choices":[{"index":0,"text":"four"}]}`), ok200(`{"choices":[{"index":0,"text":"five"}]}`),
			mismatch(a, "choices[0].text", "choices[0].text: similarity 0 < 0.8", `"four"`, `"five"`)},
		{"streamed vs non-streamed", def, stream, ok200(chat(`"The cat sat on the mat."`)), match(a)},
		{"non-streamed vs streamed", exact, ok200(chat(`"The cat sat on the mat."`)), stream, match(a)},
		{"streamed vs streamed", exact, stream, stream, match(a)},
		{"streamed differs", exact, stream, ok200(chat(`"The cat sat on the mat!"`)),
			mismatch(a, "choices[0].delta.content", `choices[0].delta.content: "The cat sat on the mat." vs "The cat sat on the mat!"`, `"The cat sat on the mat."`, `"The cat sat on the mat!"`)},
		{"streamed, several choices interleaved", exact,
			ok200(sse(`{"choices":[{"index":1,"delta":{"content":"B"}}]}`, `{"choices":[{"index":0,"delta":{"content":"A"}}]}`, `{"choices":[{"index":1,"delta":{"content":"b"}},{"index":0,"delta":{"content":"a"}}]}`, `[DONE]`)),
			ok200(chat(`"Aa"`, `"Bb"`)), match(a)},
		{"choices matched by index", exact, ok200(`{"choices":[{"index":1,"text":"y"},{"index":0,"text":"x"}]}`), ok200(`{"choices":[{"index":0,"text":"x"},{"index":1,"text":"y"}]}`), match(a)},
		{"choice count differs", def, ok200(chat(`"a"`)), ok200(chat(`"a"`, `"b"`)),
			mismatch(a, "choices", "choices: length 1 vs 2", "1 choices", "2 choices")},
		{"choice index differs", exact, ok200(`{"choices":[{"index":0,"text":"x"}]}`), ok200(`{"choices":[{"index":1,"text":"x"}]}`),
			mismatch(a, "choices[0].text", "choices[0].text: missing in shadow", `"x"`, "")},
		{"text comparator normalises", text, ok200(chat(`"  Hello,\n\tWORLD  "`)), ok200(chat(`"hello, world"`)), match(a)},
		{"text comparator keeps punctuation", text, ok200(chat(`"Hello, world"`)), ok200(chat(`"hello world"`)),
			mismatch(a, "choices[0].message.content", `choices[0].message.content: "Hello, world" vs "hello world" (normalised text)`, `"Hello, world"`, `"hello world"`)},
		{"tool call without content", exact, ok200(`{"choices":[{"index":0,"message":{"content":null,"tool_calls":[]}}]}`), ok200(`{"choices":[{"index":0,"message":{"content":null}}]}`), match(a)},
		{"undecodable shadow stream", def, stream, Response{Status: 200, ContentType: "text/event-stream", Body: []byte("data: {oops\n\n")},
			Result{Compared: true, Protocol: a, Reason: "shadow body: event 1: invalid JSON at offset 1: expected a string key", Shadow: "data: {oops\n\n"}},
		{"live without choices", spec.Compare{Protocol: spec.ProtocolOpenAI}, ok200(`{"error":{"message":"x"}}`), ok200(chat(`"a"`)),
			Result{Protocol: a, Reason: "live body: no choices"}},
	})
}

func TestJSONAndRaw(t *testing.T) {
	paths := spec.Compare{Protocol: spec.ProtocolJSON, Paths: []string{"result.scores", "result.label"}}
	query := spec.Compare{Protocol: spec.ProtocolJSON, Paths: []string{"items.#.score"}}
	rawText := spec.Compare{Protocol: spec.ProtocolRaw, Comparator: spec.ComparatorText}
	rawSim := spec.Compare{Protocol: spec.ProtocolRaw, Comparator: spec.ComparatorSimilarity}
	doc := `{"id":"r1","took_ms":12,"result":{"bad":NaN,"scores":[0.1,0.9],"label":"spam"}}`
	runCases(t, []compareCase{
		{"paths ignore other fields", paths, ok200(doc), ok200(`{"id":"r2","took_ms":40,"result":{"bad":1,"label":"spam","scores":[0.1,0.9000001]}}`), match("json")},
		{"path value differs", paths, ok200(doc), ok200(`{"result":{"scores":[0.1,0.8],"label":"spam"}}`),
			mismatch("json", "result.scores[1]", "result.scores[1]: 0.9 vs 0.8"+tol, "0.9", "0.8")},
		{"second path differs", paths, ok200(doc), ok200(`{"result":{"scores":[0.1,0.9],"label":"ham"}}`),
			mismatch("json", "result.label", `result.label: "spam" vs "ham"`, `"spam"`, `"ham"`)},
		{"path missing in shadow", paths, ok200(doc), ok200(`{"result":{"label":"spam"}}`),
			mismatch("json", "result.scores", "result.scores: missing in shadow", "[0.1,0.9]", "")},
		{"path missing in live", paths, ok200(`{"result":{}}`), ok200(doc),
			Result{Protocol: "json", Path: "result.scores", Reason: "result.scores: not in the live answer"}},
		{"query path builds its result", query, ok200(`{"items":[{"score":1},{"score":2}]}`), ok200(`{"items":[{"score":1},{"score":3}]}`),
			mismatch("json", "items.#.score[1]", "items.#.score[1]: 2 vs 3"+tol, "2", "3")},
		{"whole document by default", spec.Compare{}, ok200(`[1, {"a": [true]}]`), ok200(`[1, {"a": [false]}]`),
			mismatch("json", "[1].a[0]", "[1].a[0]: true vs false", "true", "false")},
		{"root scalars", spec.Compare{}, ok200(`1`), ok200(`2`), mismatch("json", "", "body: 1 vs 2"+tol, "1", "2")},
		{"raw equal", spec.Compare{}, ok200("plain text"), ok200("plain text"), match("raw")},
		{"raw differs", spec.Compare{Protocol: spec.ProtocolRaw}, ok200("label=cat"), ok200("label=dog"),
			Result{Compared: true, Protocol: "raw", Reason: "body: bytes differ at offset 6 (length 9 vs 9)", Live: `"label=cat"`, Shadow: `"label=dog"`}},
		{"raw text", rawText, ok200("Hello  World\n"), ok200("hello world"), match("raw")},
		{"raw similarity at the threshold", rawSim, ok200("the quick brown fox jumps"), ok200("the quick brown fox leaps"), match("raw")},
		{"raw similarity below", rawSim, ok200("the quick brown fox"), ok200("a slow brown dog"),
			mismatch("raw", "", "body: similarity 0.25 < 0.8", `"the quick brown fox"`, `"a slow brown dog"`)},
		{"live not JSON under kserve", spec.Compare{Protocol: spec.ProtocolKServeV1}, ok200(`{"predictions":[1,}`), ok200(`{"predictions":[1]}`),
			Result{Protocol: "kserve_v1", Reason: "live body: invalid JSON at offset 18: unexpected '}'"}},
		{"live without predictions", spec.Compare{Protocol: spec.ProtocolKServeV1}, ok200(`{"error":"x"}`), ok200(`{"predictions":[1]}`),
			Result{Protocol: "kserve_v1", Reason: "live answer has no predictions"}},
		{"shadow not JSON is a mismatch", spec.Compare{}, ok200(`{"predictions":[1]}`), ok200(`<html>502</html>`),
			Result{Compared: true, Protocol: "kserve_v1", Reason: "shadow body: invalid JSON at offset 0: unexpected '<'", Shadow: "<html>502</html>"}},
	})
}

func TestDetect(t *testing.T) {
	c := mustNew(t, spec.Compare{Comparator: spec.ComparatorExact})
	for _, tc := range []struct {
		name string
		live Response
		want string
	}{
		{"kserve", ok200(`{"predictions":[1]}`), "kserve_v1"},
		{"oip", ok200(`{"model_name":"m","outputs":[{"name":"o","data":[1]}]}`), "oip_v2"},
		{"outputs without data", ok200(`{"outputs":[{"name":"o"}]}`), "json"},
		{"openai", ok200(`{"choices":[]}`), "openai"},
		{"openai stream by body", ok200("\ndata: {\"choices\":[]}\n\n"), "openai"},
		{"openai stream by content type", Response{Status: 200, ContentType: "text/event-stream", Body: []byte("event: x\ndata: {\"choices\":[]}\r\n\r\n")}, "openai"},
		{"stream without choices", Response{Status: 200, ContentType: "text/event-stream", Body: []byte("data: {\"x\":1}\n\n")}, "raw"},
		{"stream not JSON", ok200("data: hello\n\n"), "raw"},
		{"other JSON", ok200(`{"result":1}`), "json"},
		{"JSON array", ok200(`[1,2]`), "json"},
		{"not JSON", ok200(`cat`), "raw"},
		{"empty", ok200(``), "raw"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := c.Compare(tc.live, tc.live).Protocol; got != tc.want {
				t.Errorf("Compare(%q).Protocol = %q, want %q", tc.live.Body, got, tc.want)
			}
		})
	}
}

func TestNewRejectsInvalid(t *testing.T) {
	_, err := New(spec.Compare{RTol: f64(-1), Comparator: "fuzzy"})
	var got []string
	for _, p := range spec.Problems(err) {
		got = append(got, p.Error())
	}
	want := []string{
		`comparator: unknown comparator "fuzzy": use one of exact, numeric, label, argmax, text, similarity, status`,
		"rtol: must not be negative",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("New problems (-want +got):\n%s", diff)
	}
}

func TestSimilarity(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want float64
	}{
		{"", "", 1},
		{"...", "!", 1},
		{"a", "", 0},
		{"The cat", "the CAT!", 1},
		{"a a b", "a b b", 2.0 * 2 / 6},
		{"one two three four", "one two", 2.0 * 2 / 6},
		{"Größe 42", "größe 42", 1},
	} {
		if got := similarity([]byte(tc.a), []byte(tc.b)); got != tc.want {
			t.Errorf("similarity(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestNormalizedEqual(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"  Hello \n World ", "hello world", true},
		{"ÉCOLE", "école", true},
		{"a b", "ab", false},
		{"Straße", "STRASSE", false}, // simple case folding only
	} {
		if got := normalizedEqual([]byte(tc.a), []byte(tc.b)); got != tc.want {
			t.Errorf("normalizedEqual(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestCompareAllocs(t *testing.T) {
	c := mustNew(t, spec.Compare{})
	live, shadow := benchBodies()
	c.Compare(live, shadow) // warm the pools
	allocs := testing.AllocsPerRun(100, func() {
		if r := c.Compare(live, shadow); !r.Match {
			t.Fatalf("Compare = %+v, want a match", r)
		}
	})
	// A matching comparison allocates nothing once the pools are warm (a
	// GC may empty them between runs). The race detector drops pooled
	// items at random, so under -race the bound only proves that nothing
	// is allocated per element (the answers hold 100).
	limit := 1.0
	if raceEnabled {
		limit = 40
	}
	if allocs > limit {
		t.Errorf("Compare allocates %v times per run, want at most %v", allocs, limit)
	}
}

// TestConcurrent runs comparisons of every protocol on one Comparator at
// once (for -race): the Comparator is read-only, the scratch is pooled.
func TestConcurrent(t *testing.T) {
	c := mustNew(t, spec.Compare{})
	live, shadow := benchBodies()
	pairs := [][2]Response{
		{live, shadow},
		{ok200(`{"outputs":[{"name":"p","shape":[2],"data":[1,2]}]}`), ok200(`{"outputs":[{"name":"p","shape":[2],"data":[1,3]}]}`)},
		{ok200(sse(`{"choices":[{"index":0,"delta":{"content":"a b"}}]}`)), ok200(chat(`"a b"`))},
		{ok200(`{"x":[1,{"y":NaN}]}`), ok200(`{"x":[1,{"y":"NaN"}]}`)},
		{ok200(`text`), ok200(`text`)},
	}
	want := []bool{true, false, true, true, true}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				k := (g + i) % len(pairs)
				if r := c.Compare(pairs[k][0], pairs[k][1]); r.Match != want[k] {
					t.Errorf("Compare(pair %d) = %+v, want Match %v", k, r, want[k])
					return
				}
			}
		})
	}
	wg.Wait()
}
