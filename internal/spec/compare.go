package spec

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Protocol names the wire format of a model's answers, which decides what
// part of an answer a shadow comparison looks at.
type Protocol string

// Protocols a comparison understands.
const (
	// ProtocolAuto detects the protocol from each live answer:
	// `predictions` → kserve_v1; `outputs` whose entries carry `data` →
	// oip_v2; `choices`, or an SSE body of `data: {...}` chunks with
	// `choices` → openai; any other JSON → json (the whole document);
	// anything else → raw.
	ProtocolAuto Protocol = "auto"
	// ProtocolKServeV1 compares the `predictions` field (KServe v1).
	ProtocolKServeV1 Protocol = "kserve_v1"
	// ProtocolOIPV2 compares `outputs[].data` matched by output name, and
	// their shapes (Open Inference Protocol v2).
	ProtocolOIPV2 Protocol = "oip_v2"
	// ProtocolOpenAI compares the text of each choice: `message.content`
	// (chat) or `text` (completions); a streamed (SSE) answer's `delta`
	// chunks are assembled first.
	ProtocolOpenAI Protocol = "openai"
	// ProtocolJSON compares the values at Compare.Paths, or the whole
	// document when no path is given.
	ProtocolJSON Protocol = "json"
	// ProtocolRaw compares the bodies as bytes (or as text, with the
	// text and similarity comparators).
	ProtocolRaw Protocol = "raw"
)

// Protocols lists every valid Protocol, auto first.
var Protocols = []Protocol{ProtocolAuto, ProtocolKServeV1, ProtocolOIPV2, ProtocolOpenAI, ProtocolJSON, ProtocolRaw}

// Comparator names how two extracted answers are judged equal.
type Comparator string

// Comparators a comparison offers.
const (
	// ComparatorExact: equal JSON values (numbers by value, so 1 equals
	// 1.0; strings byte for byte), or equal bytes for raw bodies.
	ComparatorExact Comparator = "exact"
	// ComparatorNumeric: numbers element by element with numpy isclose
	// semantics (see Compare.RTol), everything else exactly.
	ComparatorNumeric Comparator = "numeric"
	// ComparatorLabel: class outputs, compared as labels: scalars exactly;
	// an object with a "label" key is compared by that label alone.
	ComparatorLabel Comparator = "label"
	// ComparatorArgmax: probability vectors, compared by the index of
	// their largest element per row (ties: the first index).
	ComparatorArgmax Comparator = "argmax"
	// ComparatorText: strings compared after normalisation (trimmed,
	// whitespace runs collapsed to one space, case-folded).
	ComparatorText Comparator = "text"
	// ComparatorSimilarity: strings compared by token overlap (F1 over
	// lowercase word tokens) at or above Compare.Similarity.
	ComparatorSimilarity Comparator = "similarity"
	// ComparatorStatus: only the HTTP status codes, which must be equal.
	ComparatorStatus Comparator = "status"
)

// Comparators lists every valid Comparator.
var Comparators = []Comparator{ComparatorExact, ComparatorNumeric, ComparatorLabel, ComparatorArgmax,
	ComparatorText, ComparatorSimilarity, ComparatorStatus}

// Defaults of an endpoint's comparison settings (see Compare).
const (
	DefaultCompareRTol          = 1e-5
	DefaultCompareATol          = 1e-8
	DefaultCompareEqualNaN      = true
	DefaultCompareSimilarity    = 0.8
	DefaultCompareMaxBodyBytes  = 1 << 20 // 1 MiB
	DefaultCompareShadowTimeout = 10 * time.Second
	DefaultCompareQueue         = 1000
	DefaultCompareWorkers       = 4
)

// Compare configures how an endpoint's shadow answers are captured and
// compared with the live answers (the endpoint's `compare:` section). The
// zero value, like a nil *Compare, means every default. Tolerances are
// pointers because zero is a meaningful value for them, distinct from
// "not set".
type Compare struct {
	// Protocol is the answers' wire format. Empty: auto, detected from
	// each live answer.
	Protocol Protocol `yaml:"protocol,omitempty" json:"protocol,omitempty"`
	// Comparator judges the extracted answers. Empty: by protocol,
	// numeric for kserve_v1, oip_v2 and json; similarity for openai;
	// exact for raw.
	Comparator Comparator `yaml:"comparator,omitempty" json:"comparator,omitempty"`
	// RTol is the relative tolerance of the numeric comparator: a shadow
	// number s matches the live number l when
	// |s-l| <= atol + rtol*|l| (numpy isclose, the live answer being
	// the reference). Nil: 1e-5. Zero: no relative tolerance.
	RTol *float64 `yaml:"rtol,omitempty" json:"rtol,omitempty"`
	// ATol is the absolute tolerance of the numeric comparator. Nil:
	// 1e-8. Zero: no absolute tolerance.
	ATol *float64 `yaml:"atol,omitempty" json:"atol,omitempty"`
	// EqualNaN makes NaN equal to NaN. Nil: true. False: NaN equals
	// nothing, as in IEEE 754.
	EqualNaN *bool `yaml:"equal_nan,omitempty" json:"equal_nan,omitempty"`
	// Paths are gjson paths (e.g. result.scores) of the values to compare
	// with protocol json, each with the comparator. Empty: the whole
	// document. Only allowed with protocol json.
	Paths []string `yaml:"paths,omitempty" json:"paths,omitempty"`
	// Outputs are the OIP v2 output names to compare. Empty: every output
	// of the live answer, matched by name. Only allowed with protocol
	// oip_v2 or auto.
	Outputs []string `yaml:"outputs,omitempty" json:"outputs,omitempty"`
	// Similarity is the similarity comparator's threshold, 0..1. Nil:
	// 0.8. Zero: any two texts match.
	Similarity *float64 `yaml:"similarity,omitempty" json:"similarity,omitempty"`
	// MaxBodyBytes caps how much of each answer is captured for the
	// comparison; a longer answer is not compared (counted apart). Zero:
	// 1 MiB.
	MaxBodyBytes int64 `yaml:"max_body_bytes,omitempty" json:"max_body_bytes,omitempty"`
	// ShadowTimeout bounds a shadow request as a whole, body included.
	// Zero: 10s.
	ShadowTimeout Duration `yaml:"shadow_timeout,omitempty" json:"shadow_timeout,omitempty"`
	// Queue is how many shadow copies may wait per shadow deployment; a
	// copy arriving at a full queue is dropped and counted. Zero: 1000.
	Queue int `yaml:"queue,omitempty" json:"queue,omitempty"`
	// Workers is how many shadow requests run at once per shadow
	// deployment. Zero: 4.
	Workers int `yaml:"workers,omitempty" json:"workers,omitempty"`
	// SampleRequests keeps, with each sampled mismatch, the request that
	// gave it (method, path and the start of its body), so that the shadow
	// report shows the input. Nil: true. False keeps no request data (the
	// differing values of the answers are still shown).
	SampleRequests *bool `yaml:"sample_requests,omitempty" json:"sample_requests,omitempty"`
}

// Clone returns a deep copy of c; nil stays nil.
func (c *Compare) Clone() *Compare {
	if c == nil {
		return nil
	}
	out := *c
	out.RTol = clonePtr(c.RTol)
	out.ATol = clonePtr(c.ATol)
	out.EqualNaN = clonePtr(c.EqualNaN)
	out.Similarity = clonePtr(c.Similarity)
	out.Paths = append([]string(nil), c.Paths...)
	out.Outputs = append([]string(nil), c.Outputs...)
	return &out
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// WithDefaults returns a deep copy of c with every unset field at its
// default: the protocol auto, the tolerances, threshold, capture cap,
// timeout, queue and workers filled in. The comparator stays empty when
// the protocol is auto (it is then chosen per detected protocol). A nil c
// gives every default.
func (c *Compare) WithDefaults() Compare {
	var out Compare
	if c != nil {
		out = *c.Clone()
	}
	if out.Protocol == "" {
		out.Protocol = ProtocolAuto
	}
	if out.Comparator == "" && out.Protocol != ProtocolAuto {
		out.Comparator = DefaultComparator(out.Protocol)
	}
	if out.RTol == nil {
		out.RTol = ptr(DefaultCompareRTol)
	}
	if out.ATol == nil {
		out.ATol = ptr(DefaultCompareATol)
	}
	if out.EqualNaN == nil {
		out.EqualNaN = ptr(DefaultCompareEqualNaN)
	}
	if out.Similarity == nil {
		out.Similarity = ptr(DefaultCompareSimilarity)
	}
	if out.MaxBodyBytes == 0 {
		out.MaxBodyBytes = DefaultCompareMaxBodyBytes
	}
	if out.ShadowTimeout == 0 {
		out.ShadowTimeout = Duration(DefaultCompareShadowTimeout)
	}
	if out.Queue == 0 {
		out.Queue = DefaultCompareQueue
	}
	if out.Workers == 0 {
		out.Workers = DefaultCompareWorkers
	}
	if out.SampleRequests == nil {
		out.SampleRequests = ptr(true)
	}
	return out
}

func ptr[T any](v T) *T { return &v }

// DefaultComparator returns the comparator used with protocol p when none
// is configured: numeric for kserve_v1, oip_v2 and json, similarity for
// openai, exact for raw (and for an unknown or auto protocol).
func DefaultComparator(p Protocol) Comparator {
	switch p {
	case ProtocolKServeV1, ProtocolOIPV2, ProtocolJSON:
		return ComparatorNumeric
	case ProtocolOpenAI:
		return ComparatorSimilarity
	default:
		return ComparatorExact
	}
}

// Validate checks the comparison settings and returns every problem with
// its field path relative to the compare section. A nil c is valid.
// Comparators that cannot apply to an explicit protocol are rejected:
// numeric, label and argmax need structured numbers, so they do not go
// with openai or raw.
func (c *Compare) Validate() error {
	if c == nil {
		return nil
	}
	var errs []error
	protoOK := c.Protocol == ""
	for _, p := range Protocols {
		protoOK = protoOK || c.Protocol == p
	}
	if !protoOK {
		errs = append(errs, Problemf("protocol", "unknown protocol %q: use one of %s", c.Protocol, listOf(Protocols)))
	}
	cmpOK := c.Comparator == ""
	for _, k := range Comparators {
		cmpOK = cmpOK || c.Comparator == k
	}
	if !cmpOK {
		errs = append(errs, Problemf("comparator", "unknown comparator %q: use one of %s", c.Comparator, listOf(Comparators)))
	}
	if c.Protocol == ProtocolOpenAI || c.Protocol == ProtocolRaw {
		switch c.Comparator {
		case ComparatorNumeric, ComparatorLabel, ComparatorArgmax:
			errs = append(errs, Problemf("comparator", "%s does not apply to protocol %s: use exact, text, similarity or status", c.Comparator, c.Protocol))
		}
	}
	errs = append(errs, nonNegative("rtol", c.RTol), nonNegative("atol", c.ATol))
	if s := c.Similarity; s != nil && (math.IsNaN(*s) || *s < 0 || *s > 1) {
		errs = append(errs, Problemf("similarity", "must be from 0 to 1, got %v", *s))
	}
	if len(c.Paths) > 0 && c.Protocol != ProtocolJSON {
		errs = append(errs, Problemf("paths", "only used with protocol json; set protocol: json"))
	}
	errs = append(errs, uniqueNonEmpty("paths", c.Paths)...)
	if len(c.Outputs) > 0 && c.Protocol != "" && c.Protocol != ProtocolAuto && c.Protocol != ProtocolOIPV2 {
		errs = append(errs, Problemf("outputs", "only used with protocol oip_v2 (or auto)"))
	}
	errs = append(errs, uniqueNonEmpty("outputs", c.Outputs)...)
	if c.MaxBodyBytes < 0 {
		errs = append(errs, Problemf("max_body_bytes", "must not be negative"))
	}
	if c.ShadowTimeout < 0 {
		errs = append(errs, Problemf("shadow_timeout", "must not be negative"))
	}
	if c.Queue < 0 {
		errs = append(errs, Problemf("queue", "must not be negative"))
	}
	if c.Workers < 0 {
		errs = append(errs, Problemf("workers", "must not be negative"))
	}
	return errors.Join(errs...)
}

func nonNegative(field string, v *float64) error {
	switch {
	case v == nil:
		return nil
	case math.IsNaN(*v) || math.IsInf(*v, 0):
		return Problemf(field, "must be a finite number, got %v", *v)
	case *v < 0:
		return Problemf(field, "must not be negative")
	}
	return nil
}

func uniqueNonEmpty(field string, vs []string) []error {
	var errs []error
	seen := map[string]int{}
	for i, v := range vs {
		path := fmt.Sprintf("%s[%d]", field, i)
		if v == "" {
			errs = append(errs, Problemf(path, "must not be empty"))
			continue
		}
		if j, dup := seen[v]; dup {
			errs = append(errs, Problemf(path, "duplicate %q (also %s[%d])", v, field, j))
			continue
		}
		seen[v] = i
	}
	return errs
}

func listOf[T ~string](vs []T) string {
	s := ""
	for i, v := range vs {
		if i > 0 {
			s += ", "
		}
		s += string(v)
	}
	return s
}
