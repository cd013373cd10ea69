package compare

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
)

// choice is the text of one OpenAI choice, assembled for a streamed answer.
type choice struct {
	index int
	text  []byte
	// field names where the text was found: "message.content", "text"
	// or "delta.content".
	field string
}

// maxChoices bounds the distinct choice indexes of one answer.
const maxChoices = 1 << 10

// openai compares OpenAI chat/completions answers choice by choice (by
// their index); each side may be streamed (SSE) or not.
func (st *state) openai() Result {
	var lc []choice
	var err error
	switch {
	case st.sseDone:
		lc, err = st.liveSSE, st.liveSSEErr
		if err == nil && !st.liveSSEOK {
			err = errors.New("no chunk has choices")
		}
	case isSSE(st.live):
		lc, err = choicesOf(st.live, st.ld)
	default:
		if err = st.parseLive(); err == nil {
			lc, err = docChoices(st.ld)
		}
	}
	if err != nil {
		return uncompared("live body: %v", err)
	}
	sc, err := choicesOf(st.shadow, st.sd)
	if err != nil {
		return undecodableShadow(err, st.shadow.Body)
	}
	w := &st.w
	w.push(seg{kind: segLit, lit: "choices"})
	if len(lc) != len(sc) {
		w.fail(fmt.Sprintf("length %d vs %d", len(lc), len(sc)), fmt.Sprintf("%d choices", len(lc)), fmt.Sprintf("%d choices", len(sc)))
		return w.result()
	}
	for i, l := range lc {
		w.push(seg{kind: segIndex, i: l.index})
		w.push(seg{kind: segLit, lit: l.field})
		var s *choice
		if sc[i].index == l.index { // both sorted by index
			s = &sc[i]
		}
		if s == nil {
			w.fail("missing in shadow", quoted(l.text), "")
			break
		}
		if !w.texts(l.text, s.text) {
			break
		}
		w.pop()
		w.pop()
	}
	return w.result()
}

// choicesOf extracts the choices of an answer, streamed or not, sorted by
// index. An answer without choices is an error.
func choicesOf(r Response, d *doc) ([]choice, error) {
	if isSSE(r) {
		cs, ok, err := assembleSSE(r.Body)
		if err == nil && !ok {
			err = errors.New("no chunk has choices")
		}
		return cs, err
	}
	if err := d.parse(r.Body); err != nil {
		return nil, err
	}
	return docChoices(d)
}

// docChoices extracts the choices of a parsed, non-streamed answer.
func docChoices(d *doc) ([]choice, error) {
	ch := d.get(0, "choices")
	if ch < 0 || d.nodes[ch].kind != kindArray {
		return nil, errors.New("no choices")
	}
	out := make([]choice, 0, d.nodes[ch].n)
	for i := range d.nodes[ch].n {
		c := d.elem(ch, i)
		idx, err := choiceIndex(d, c, i)
		if err != nil {
			return nil, err
		}
		text, field := choiceText(d, c, "message")
		out = append(out, choice{index: idx, text: text, field: field})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].index < out[j].index })
	for i := 1; i < len(out); i++ {
		if out[i].index == out[i-1].index {
			return nil, fmt.Errorf("choice index %d appears twice", out[i].index)
		}
	}
	return out, nil
}

// choiceIndex reads a choice's index; pos (its position) when absent.
func choiceIndex(d *doc, c, pos int) (int, error) {
	i := d.get(c, "index")
	if i < 0 || d.nodes[i].kind == kindNull {
		return pos, nil
	}
	n := d.nodes[i]
	if n.kind != kindNumber || n.num != math.Trunc(n.num) || n.num < 0 || n.num >= maxChoices {
		return 0, fmt.Errorf("invalid choice index %s", short(d.raw(i)))
	}
	return int(n.num), nil
}

// choiceText returns the text of a choice: obj.content (obj is "message"
// for a chat completion, "delta" for a chunk) or text (completions), and
// where it was found. A null or absent content (a tool call) is empty.
func choiceText(d *doc, c int, obj string) ([]byte, string) {
	if m := d.get(c, obj); m >= 0 && d.nodes[m].kind == kindObject {
		if t := d.get(m, "content"); t >= 0 && d.nodes[t].kind == kindString {
			return d.strBytes(t), obj + ".content"
		}
		return nil, obj + ".content"
	}
	if t := d.get(c, "text"); t >= 0 && d.nodes[t].kind == kindString {
		return d.strBytes(t), "text"
	}
	return nil, obj + ".content"
}

// isSSE reports whether an answer is a server-sent event stream: by its
// Content-Type, or by a body that starts with an SSE field.
func isSSE(r Response) bool {
	mt, _, _ := strings.Cut(r.ContentType, ";")
	if strings.EqualFold(strings.TrimSpace(mt), "text/event-stream") {
		return true
	}
	b := r.Body[skipSpace(r.Body, 0):]
	for _, p := range [...]string{"data:", "event:", "id:", "retry:", ":"} {
		if bytes.HasPrefix(b, []byte(p)) {
			return true
		}
	}
	return false
}

// assembleSSE assembles a streamed OpenAI answer: it reads the events'
// `data:` lines (several in one event are joined with "\n"), skips
// `[DONE]`, parses each chunk as JSON and appends each choice's
// delta.content (chat) or text (completions) to the text of its index.
// It returns the choices sorted by index, and whether any chunk had
// choices. A chunk that is not JSON is an error; a chunk without choices
// (usage, or `"choices": null`) is skipped.
func assembleSSE(body []byte) ([]choice, bool, error) {
	d := getDoc()
	defer putDoc(d)
	var (
		out   []choice
		slot  = map[int]int{}
		data  []byte
		have  bool
		saw   bool
		event int
	)
	dispatch := func() error {
		if !have {
			return nil
		}
		event++
		chunk := bytes.TrimSpace(data)
		data, have = data[:0], false
		if len(chunk) == 0 || string(chunk) == "[DONE]" {
			return nil
		}
		if err := d.parse(chunk); err != nil {
			return fmt.Errorf("event %d: %w", event, err)
		}
		ch := d.get(0, "choices")
		if ch < 0 || d.nodes[ch].kind != kindArray {
			return nil
		}
		saw = true
		for i := range d.nodes[ch].n {
			c := d.elem(ch, i)
			idx, err := choiceIndex(d, c, i)
			if err != nil {
				return fmt.Errorf("event %d: %w", event, err)
			}
			text, field := choiceText(d, c, "delta")
			k, ok := slot[idx]
			if !ok {
				k = len(out)
				slot[idx] = k
				out = append(out, choice{index: idx, field: field})
			}
			if text != nil {
				if len(out[k].text) == 0 {
					out[k].field = field
				}
				out[k].text = append(out[k].text, text...)
			}
		}
		return nil
	}
	for len(body) > 0 {
		var line []byte
		if i := bytes.IndexAny(body, "\r\n"); i >= 0 {
			line = body[:i]
			if body[i] == '\r' && i+1 < len(body) && body[i+1] == '\n' {
				i++
			}
			body = body[i+1:]
		} else {
			line, body = body, nil
		}
		if len(line) == 0 {
			if err := dispatch(); err != nil {
				return nil, false, err
			}
			continue
		}
		name, value, _ := bytes.Cut(line, []byte(":"))
		if string(name) != "data" {
			continue // event:, id:, retry:, comments
		}
		value = bytes.TrimPrefix(value, []byte(" "))
		if have {
			data = append(data, '\n')
		}
		data = append(data, value...)
		have = true
	}
	// A captured stream may end without the blank line after its last event.
	if err := dispatch(); err != nil {
		return nil, false, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].index < out[j].index })
	for i := range out {
		if out[i].text == nil {
			out[i].text = []byte{}
		}
	}
	return out, saw, nil
}
