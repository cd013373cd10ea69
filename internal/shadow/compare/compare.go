// Package compare judges whether a shadow deployment's answer agrees with
// the live answer to the same request. It is pure: no I/O, no clock, no
// goroutines. A Comparator is compiled once from an endpoint's
// spec.Compare and is safe for concurrent use.
//
// The live answer is the reference. Numbers are compared as numpy's
// isclose(shadow, live) does: |shadow-live| <= atol + rtol*|live|.
//
// A comparison has three outcomes: a match, a mismatch (with the first
// differing element's path and both values), or "not compared" when the
// live answer cannot serve as a reference: a body truncated at the capture
// cap, a live body that does not decode as the protocol requires, or a
// configured field (path, output) absent from the live answer. A shadow
// answer that does not decode, or lacks what the live answer has, is a
// mismatch: it is the shadow that disagrees.
//
// Texts (OpenAI choices, strings) are compared byte for byte by default
// comparators; the text comparator first trims them, collapses white space
// runs and folds case; the similarity comparator scores them by the F1 of
// their lowercase word tokens (see spec.ComparatorSimilarity).
package compare

import (
	"bytes"
	"fmt"
	"strconv"
	"sync"

	"github.com/modelgate/modelgate/internal/spec"
)

// Response is one captured answer: the live deployment's or the shadow's.
type Response struct {
	// Status is the HTTP status code.
	Status int
	// ContentType is the Content-Type header; text/event-stream marks a
	// streamed (SSE) answer, which is also recognised from the body.
	ContentType string
	// Body is the captured body, at most the capture cap.
	Body []byte
	// Truncated is set when the body was longer than the cap and Body
	// holds only its beginning. A truncated body is not compared.
	Truncated bool
}

// Result is the outcome of comparing a shadow answer with the live one.
type Result struct {
	// Match is set when the answers agree. It implies Compared.
	Match bool
	// Compared is false when the answers could not be compared (a body
	// truncated at the cap, an undecodable live body, a configured value
	// the live answer lacks); such requests are counted apart, neither
	// as matches nor as mismatches.
	Compared bool
	// Reason says, for a mismatch or an answer not compared, where and
	// how the answers differ, e.g.
	// `predictions[3]: 0.71 vs 0.64 (rtol 1e-05, atol 1e-08)`.
	Reason string
	// Path is the first differing element's path, e.g.
	// `outputs["probs"].data[0][2]`, "status", or "" for the whole body.
	Path string
	// Live and Shadow are short renderings (at most about 80 bytes) of
	// the differing values, for mismatch samples.
	Live, Shadow string
	// Protocol is the protocol used: the configured one, or the one
	// detected from the live answer ("auto" when only the statuses were
	// compared).
	Protocol string
}

// mode is a compiled comparator.
type mode uint8

const (
	modeDefault mode = iota // by protocol
	modeExact
	modeNumeric
	modeLabel
	modeArgmax
	modeText
	modeSimilarity
	modeStatus
)

var modes = map[spec.Comparator]mode{
	"":                        modeDefault,
	spec.ComparatorExact:      modeExact,
	spec.ComparatorNumeric:    modeNumeric,
	spec.ComparatorLabel:      modeLabel,
	spec.ComparatorArgmax:     modeArgmax,
	spec.ComparatorText:       modeText,
	spec.ComparatorSimilarity: modeSimilarity,
	spec.ComparatorStatus:     modeStatus,
}

// Comparator compares shadow answers with live answers under one
// endpoint's settings. Build it with New; it is safe for concurrent use.
type Comparator struct {
	protocol   spec.Protocol
	mode       mode
	rtol, atol float64
	equalNaN   bool
	similarity float64
	paths      []string
	outputs    [][]byte
	// outputLits are the rendered paths of outputs: `outputs["probs"]`.
	outputLits []string
	// tolNote ends a numeric mismatch's reason: " (rtol 1e-05, atol 1e-08)".
	tolNote string
}

// New compiles the comparison settings c (spec defaults applied to unset
// fields). It returns c.Validate()'s problems if c is invalid.
func New(c spec.Compare) (*Comparator, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	d := c.WithDefaults()
	cmp := &Comparator{
		protocol:   d.Protocol,
		mode:       modes[d.Comparator],
		rtol:       *d.RTol,
		atol:       *d.ATol,
		equalNaN:   *d.EqualNaN,
		similarity: *d.Similarity,
		paths:      d.Paths,
	}
	for _, name := range d.Outputs {
		cmp.outputs = append(cmp.outputs, []byte(name))
		cmp.outputLits = append(cmp.outputLits, "outputs["+strconv.Quote(name)+"]")
	}
	cmp.tolNote = fmt.Sprintf(" (rtol %g, atol %g)", cmp.rtol, cmp.atol)
	return cmp, nil
}

// modeFor returns the comparator used for protocol p.
func (c *Comparator) modeFor(p spec.Protocol) mode {
	if c.mode != modeDefault {
		return c.mode
	}
	return modes[spec.DefaultComparator(p)]
}

// state is the scratch memory of one comparison, pooled.
type state struct {
	c      *Comparator
	live   Response
	shadow Response
	w      walker
	// ld and sd are the parsed live and shadow bodies; ldParsed tells
	// whether ld holds live.Body, ldErr the outcome.
	ld, sd   *doc
	ldParsed bool
	ldErr    error
	extra    []*doc
	// sseDone is set when detection assembled the live stream into
	// liveSSE (liveSSEOK: a chunk had choices; liveSSEErr: it failed).
	sseDone    bool
	liveSSE    []choice
	liveSSEOK  bool
	liveSSEErr error
}

var statePool = sync.Pool{New: func() any { return &state{ld: new(doc), sd: new(doc)} }}

func (st *state) release() {
	for _, d := range st.extra {
		putDoc(d)
	}
	st.extra = st.extra[:0]
	st.ld.src, st.sd.src = nil, nil
	st.live, st.shadow = Response{}, Response{}
	st.sseDone, st.liveSSE, st.liveSSEErr = false, nil, nil
	st.w.reset(nil, 0)
	// Do not keep the memory of unusually large answers around.
	const keep = 1 << 16
	if cap(st.ld.nodes) > keep || cap(st.sd.nodes) > keep || cap(st.ld.kids) > keep || cap(st.sd.kids) > keep ||
		cap(st.w.lflat) > keep || cap(st.w.sflat) > keep {
		return
	}
	statePool.Put(st)
}

// Compare compares the shadow's answer with the live answer (the
// reference). It never panics and never fails: every input yields a
// Result.
//
// Statuses come first. With the status comparator only the codes are
// compared, and must be equal. Otherwise answers whose status classes
// differ (2xx vs 5xx) mismatch at "status"; two non-2xx answers match when
// their codes are equal (their bodies are not compared) and mismatch
// otherwise; two 2xx answers have their bodies compared by protocol.
func (c *Comparator) Compare(live, shadow Response) Result {
	if c.mode == modeStatus {
		res := Result{Compared: true, Match: live.Status == shadow.Status, Protocol: string(c.protocol)}
		if !res.Match {
			statusMismatch(&res, live.Status, shadow.Status)
		}
		return res
	}
	if live.Status/100 != shadow.Status/100 || live.Status/100 != 2 {
		res := Result{Compared: true, Match: live.Status == shadow.Status, Protocol: string(c.protocol)}
		if !res.Match {
			statusMismatch(&res, live.Status, shadow.Status)
		}
		return res
	}
	if live.Truncated || shadow.Truncated {
		side := "live"
		if !live.Truncated {
			side = "shadow"
		}
		return Result{Protocol: string(c.protocol), Reason: side + " body truncated at the capture limit"}
	}
	st := statePool.Get().(*state)
	defer st.release()
	st.c, st.live, st.shadow = c, live, shadow
	st.ldParsed = false
	proto := c.protocol
	if proto == spec.ProtocolAuto {
		proto = st.detect()
	}
	m := c.modeFor(proto)
	st.w.reset(c, m)
	var res Result
	switch proto {
	case spec.ProtocolRaw:
		res = st.raw(m)
	case spec.ProtocolOpenAI:
		res = st.openai()
	default:
		res = st.structured(proto)
	}
	res.Protocol = string(proto)
	return res
}

func statusMismatch(res *Result, live, shadow int) {
	res.Path = "status"
	res.Reason = fmt.Sprintf("status %d vs %d", live, shadow)
	res.Live, res.Shadow = strconv.Itoa(live), strconv.Itoa(shadow)
}

// parseLive parses the live body once.
func (st *state) parseLive() error {
	if !st.ldParsed {
		st.ldParsed = true
		st.ldErr = st.ld.parse(st.live.Body)
	}
	return st.ldErr
}

// detect picks the protocol from the live answer (see spec.ProtocolAuto).
func (st *state) detect() spec.Protocol {
	if isSSE(st.live) {
		st.sseDone = true
		st.liveSSE, st.liveSSEOK, st.liveSSEErr = assembleSSE(st.live.Body)
		if st.liveSSEErr == nil && st.liveSSEOK {
			return spec.ProtocolOpenAI
		}
		return spec.ProtocolRaw
	}
	if st.parseLive() != nil {
		return spec.ProtocolRaw
	}
	d := st.ld
	if d.get(0, "predictions") >= 0 {
		return spec.ProtocolKServeV1
	}
	if outs := d.get(0, "outputs"); outs >= 0 && d.nodes[outs].kind == kindArray && d.nodes[outs].n > 0 {
		if d.get(d.elem(outs, 0), "data") >= 0 {
			return spec.ProtocolOIPV2
		}
	}
	if ch := d.get(0, "choices"); ch >= 0 && d.nodes[ch].kind == kindArray {
		return spec.ProtocolOpenAI
	}
	return spec.ProtocolJSON
}

// uncompared is a Result for answers that cannot be compared.
func uncompared(format string, args ...any) Result {
	return Result{Reason: fmt.Sprintf(format, args...)}
}

// undecodableShadow is the mismatch of a shadow body that does not decode.
func undecodableShadow(err error, body []byte) Result {
	return Result{Compared: true, Reason: "shadow body: " + err.Error(), Shadow: short(body)}
}

// structured compares JSON answers: kserve_v1, oip_v2 and json.
func (st *state) structured(proto spec.Protocol) Result {
	if err := st.parseLive(); err != nil {
		return uncompared("live body: %v", err)
	}
	if err := st.sd.parse(st.shadow.Body); err != nil {
		return undecodableShadow(err, st.shadow.Body)
	}
	w := &st.w
	w.l, w.s = st.ld, st.sd
	switch proto {
	case spec.ProtocolKServeV1:
		lp := w.l.get(0, "predictions")
		if lp < 0 {
			return uncompared("live answer has no predictions")
		}
		w.push(seg{kind: segLit, lit: "predictions"})
		if sp := w.s.get(0, "predictions"); sp < 0 {
			w.fail("missing in shadow", short(w.l.raw(lp)), "")
		} else {
			w.value(lp, sp)
		}
	case spec.ProtocolOIPV2:
		w.oip()
	default:
		if len(st.c.paths) == 0 {
			w.value(0, 0)
			break
		}
		for _, p := range st.c.paths {
			if !st.jsonPath(p) {
				break
			}
		}
	}
	return w.result()
}

// raw compares bodies as bytes, or as text with the text and similarity
// comparators.
func (st *state) raw(m mode) Result {
	l, s := st.live.Body, st.shadow.Body
	if m == modeText || m == modeSimilarity {
		st.w.texts(l, s)
		return st.w.result()
	}
	if bytes.Equal(l, s) {
		return Result{Compared: true, Match: true}
	}
	off := 0
	for off < len(l) && off < len(s) && l[off] == s[off] {
		off++
	}
	from := max(0, off-16)
	return Result{
		Compared: true,
		Reason:   fmt.Sprintf("body: bytes differ at offset %d (length %d vs %d)", off, len(l), len(s)),
		Live:     strconv.Quote(short(l[min(from, len(l)):])),
		Shadow:   strconv.Quote(short(s[min(from, len(s)):])),
	}
}
