package compare

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"
)

// segKind is the kind of one step of a path.
type segKind uint8

const (
	segIndex segKind = iota // [i]
	segKey                  // .key or ["key"], i is the key node in the live doc
	segLit                  // a rendered step, e.g. `outputs["probs"]`
	segFlat                 // a flat tensor index i unravelled over shape
)

// seg is one step of the path to the element being compared. Steps are
// rendered into a string only when a mismatch is reported.
type seg struct {
	kind  segKind
	i     int
	lit   string
	shape []int
}

// walker compares two parsed documents element by element and records the
// first difference.
type walker struct {
	c    *Comparator
	mode mode
	l, s *doc
	segs []seg
	// note is appended to a mismatch's reason, e.g. " (datatype FP32 vs FP64)".
	note string
	// done is set once an outcome other than a match is recorded.
	done bool
	res  Result
	// scratch for OIP tensors.
	lflat, sflat   []int
	lshape, sshape []int
}

func (w *walker) reset(c *Comparator, m mode) {
	w.c, w.mode = c, m
	w.l, w.s = nil, nil
	w.segs = w.segs[:0]
	w.note = ""
	w.done = false
	w.res = Result{}
}

func (w *walker) push(s seg) { w.segs = append(w.segs, s) }
func (w *walker) pop()       { w.segs = w.segs[:len(w.segs)-1] }

// result returns the outcome: a match unless a difference was recorded.
func (w *walker) result() Result {
	if !w.done {
		return Result{Compared: true, Match: true}
	}
	return w.res
}

// fail records a mismatch at the current path and returns false.
func (w *walker) fail(reason, live, shadow string) bool {
	if w.done {
		return false
	}
	w.done = true
	p := w.path()
	prefix := p
	if prefix == "" {
		prefix = "body"
	}
	w.res = Result{Compared: true, Path: p, Reason: prefix + ": " + reason + w.note, Live: live, Shadow: shadow}
	return false
}

// skip records that the answers cannot be compared and returns false.
func (w *walker) skip(reason string) bool {
	if w.done {
		return false
	}
	w.done = true
	p := w.path()
	if p != "" {
		reason = p + ": " + reason
	}
	w.res = Result{Reason: reason, Path: p}
	return false
}

// path renders the current path, e.g. `predictions[3]` or `result.scores[0]`.
func (w *walker) path() string {
	var b []byte
	for _, s := range w.segs {
		switch s.kind {
		case segIndex:
			b = appendIndex(b, s.i)
		case segKey:
			b = appendKey(b, w.l.text(s.i))
		case segLit:
			if len(b) > 0 && s.lit != "" && s.lit[0] != '[' {
				b = append(b, '.')
			}
			b = append(b, s.lit...)
		case segFlat:
			rest := s.i
			idx := make([]int, len(s.shape))
			for d := len(s.shape) - 1; d >= 0; d-- {
				if s.shape[d] > 0 {
					idx[d] = rest % s.shape[d]
					rest /= s.shape[d]
				}
			}
			for _, i := range idx {
				b = appendIndex(b, i)
			}
		}
	}
	return string(b)
}

func appendIndex(b []byte, i int) []byte {
	b = append(b, '[')
	b = strconv.AppendInt(b, int64(i), 10)
	return append(b, ']')
}

// appendKey appends an object key: `.key`, or `["a key"]` when the key is
// not a plain identifier.
func appendKey(b []byte, key string) []byte {
	plain := key != ""
	for _, c := range []byte(key) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			plain = false
			break
		}
	}
	if !plain {
		b = append(b, '[')
		b = strconv.AppendQuote(b, key)
		return append(b, ']')
	}
	if len(b) > 0 {
		b = append(b, '.')
	}
	return append(b, key...)
}

// maxShort bounds a rendered value.
const maxShort = 80

// short renders b, cut to about maxShort bytes at a rune boundary.
func short(b []byte) string {
	if len(b) <= maxShort {
		return string(b)
	}
	cut := maxShort
	for cut > 0 && !utf8.RuneStart(b[cut]) {
		cut--
	}
	return string(b[:cut]) + "…"
}

// quoted renders text as a quoted, shortened string.
func quoted(b []byte) string { return strconv.Quote(short(b)) }

// value compares live node li with shadow node si.
func (w *walker) value(li, si int) bool {
	l, s := w.l.nodes[li], w.s.nodes[si]
	switch w.mode {
	case modeArgmax:
		if w.l.isNumRow(li) {
			return w.argmaxRow(li, si)
		}
	case modeLabel:
		if ll := w.l.get(li, "label"); ll >= 0 {
			if sl := w.s.get(si, "label"); sl >= 0 {
				w.push(seg{kind: segLit, lit: "label"})
				ok := w.value(ll, sl)
				w.pop()
				return ok
			}
		}
	}
	switch {
	case l.kind == kindArray && s.kind == kindArray:
		if l.n != s.n {
			return w.fail(fmt.Sprintf("length %d vs %d", l.n, s.n), short(w.l.raw(li)), short(w.s.raw(si)))
		}
		for i := range l.n {
			w.push(seg{kind: segIndex, i: i})
			ok := w.value(w.l.elem(li, i), w.s.elem(si, i))
			w.pop()
			if !ok {
				return false
			}
		}
		return true
	case l.kind == kindObject && s.kind == kindObject:
		return w.object(li, si)
	}
	return w.leaf(li, si)
}

// object compares two objects key by key: every live key must be in the
// shadow with an equal value, and the shadow must have no other key. Of
// duplicate keys the first counts, on both sides (as gjson reads them).
func (w *walker) object(li, si int) bool {
	ln, sn := w.l.nodes[li].n, w.s.nodes[si].n
	var lIndex, sIndex map[string]int
	if ln > 32 || sn > 32 {
		// Large objects: index the keys once instead of scanning for
		// every key.
		lIndex, sIndex = keyIndex(w.l, li), keyIndex(w.s, si)
	}
	lookup := func(d *doc, obj int, index map[string]int, key []byte) int {
		if index != nil {
			return index[string(key)] - 1
		}
		return findKey(d, obj, key)
	}
	for i := range ln {
		k, lv := w.l.member(li, i)
		key := w.l.strBytes(k)
		if lookup(w.l, li, lIndex, key) != lv {
			continue // a duplicate key
		}
		sv := lookup(w.s, si, sIndex, key)
		w.push(seg{kind: segKey, i: k})
		ok := true
		if sv < 0 {
			ok = w.fail("missing in shadow", short(w.l.raw(lv)), "")
		} else {
			ok = w.value(lv, sv)
		}
		w.pop()
		if !ok {
			return false
		}
	}
	for i := range sn {
		k, sv := w.s.member(si, i)
		key := w.s.strBytes(k)
		if lookup(w.l, li, lIndex, key) < 0 {
			w.push(seg{kind: segLit, lit: string(appendKey(nil, string(key)))})
			w.fail("missing in live", "", short(w.s.raw(sv)))
			w.pop()
			return false
		}
	}
	return true
}

// keyIndex maps the keys of obj to 1 + the node of their first value.
func keyIndex(d *doc, obj int) map[string]int {
	n := d.nodes[obj].n
	index := make(map[string]int, n)
	for i := range n {
		k, v := d.member(obj, i)
		if key := string(d.strBytes(k)); index[key] == 0 {
			index[key] = v + 1
		}
	}
	return index
}

// findKey returns the value of obj's first member named key, or -1.
func findKey(d *doc, obj int, key []byte) int {
	for i := range d.nodes[obj].n {
		k, v := d.member(obj, i)
		if bytes.Equal(d.strBytes(k), key) {
			return v
		}
	}
	return -1
}

// leaf compares scalars, or values of different kinds.
func (w *walker) leaf(li, si int) bool {
	l, s := w.l.nodes[li], w.s.nodes[si]
	ln, lok := w.l.number(li)
	sn, sok := w.s.number(si)
	if lok && sok && (l.kind == kindNumber || s.kind == kindNumber || w.mode == modeNumeric) {
		return w.numbers(li, si, ln, sn)
	}
	switch {
	case l.kind == kindString && s.kind == kindString:
		return w.texts(w.l.strBytes(li), w.s.strBytes(si))
	case l.kind == s.kind && (l.kind == kindNull || l.kind == kindTrue || l.kind == kindFalse):
		return true
	}
	lr, sr := short(w.l.raw(li)), short(w.s.raw(si))
	return w.fail(lr+" vs "+sr, lr, sr)
}

// numbers compares live number a with shadow number b: with isclose
// tolerance under the numeric comparator, exactly (by value) otherwise.
func (w *walker) numbers(li, si int, a, b float64) bool {
	var ok bool
	note := ""
	if w.mode == modeNumeric {
		ok = w.c.close(a, b)
		note = w.c.tolNote
	} else {
		ok = w.exactNumbers(li, si, a, b)
	}
	if ok {
		return true
	}
	if math.IsNaN(a) && math.IsNaN(b) {
		note = " (equal_nan false)"
	}
	lr, sr := short(w.l.raw(li)), short(w.s.raw(si))
	return w.fail(lr+" vs "+sr+note, lr, sr)
}

// exactNumbers compares numbers by value; two integer literals are
// compared digit by digit, so that integers beyond 2^53 (ids) are exact.
func (w *walker) exactNumbers(li, si int, a, b float64) bool {
	l, s := w.l.nodes[li], w.s.nodes[si]
	if l.kind == kindNumber && s.kind == kindNumber && l.intLit && s.intLit {
		return intEqual(w.l.raw(li), w.s.raw(si))
	}
	if math.IsNaN(a) || math.IsNaN(b) {
		return w.c.equalNaN && math.IsNaN(a) && math.IsNaN(b)
	}
	return a == b
}

// intEqual compares two JSON integer literals by value.
func intEqual(a, b []byte) bool {
	an, bn := len(a) > 0 && a[0] == '-', len(b) > 0 && b[0] == '-'
	a, b = bytes.TrimLeft(bytes.TrimPrefix(a, []byte("-")), "0"), bytes.TrimLeft(bytes.TrimPrefix(b, []byte("-")), "0")
	if len(a) == 0 && len(b) == 0 {
		return true // 0 == -0
	}
	return an == bn && bytes.Equal(a, b)
}

// close reports whether shadow number s is close to live number l:
// |s-l| <= atol + rtol*|l| (numpy isclose with l as the reference). An
// infinity equals only the same infinity; NaN equals NaN when equal_nan.
func (c *Comparator) close(l, s float64) bool {
	switch {
	case math.IsNaN(l) || math.IsNaN(s):
		return c.equalNaN && math.IsNaN(l) && math.IsNaN(s)
	case math.IsInf(l, 0) || math.IsInf(s, 0):
		return l == s
	}
	return math.Abs(s-l) <= c.atol+c.rtol*math.Abs(l)
}

// texts compares two strings under the walker's comparator: normalised
// with text, by token overlap with similarity, byte for byte otherwise.
func (w *walker) texts(l, s []byte) bool {
	switch w.mode {
	case modeText:
		if normalizedEqual(l, s) {
			return true
		}
		lq, sq := quoted(l), quoted(s)
		return w.fail(lq+" vs "+sq+" (normalised text)", lq, sq)
	case modeSimilarity:
		f := similarity(l, s)
		if f >= w.c.similarity {
			return true
		}
		return w.fail(fmt.Sprintf("similarity %s < %g", strconv.FormatFloat(f, 'g', 3, 64), w.c.similarity), quoted(l), quoted(s))
	}
	if bytes.Equal(l, s) {
		return true
	}
	lq, sq := quoted(l), quoted(s)
	return w.fail(lq+" vs "+sq, lq, sq)
}

// isNumRow reports whether node i is a non-empty array of numbers.
func (d *doc) isNumRow(i int) bool {
	n := d.nodes[i]
	if n.kind != kindArray || n.n == 0 {
		return false
	}
	for j := range n.n {
		if _, ok := d.number(d.elem(i, j)); !ok {
			return false
		}
	}
	return true
}

// argmaxRow compares the argmax of live row li with shadow node si.
func (w *walker) argmaxRow(li, si int) bool {
	l, s := w.l.nodes[li], w.s.nodes[si]
	if !w.s.isNumRow(si) || l.n != s.n {
		if s.kind == kindArray && l.n != s.n {
			return w.fail(fmt.Sprintf("length %d vs %d", l.n, s.n), short(w.l.raw(li)), short(w.s.raw(si)))
		}
		lr, sr := short(w.l.raw(li)), short(w.s.raw(si))
		return w.fail(lr+" vs "+sr, lr, sr)
	}
	la := argmax(w.l, w.l.kids[l.first:l.first+l.n])
	sa := argmax(w.s, w.s.kids[s.first:s.first+s.n])
	if la == sa {
		return true
	}
	return w.fail(fmt.Sprintf("argmax %d vs %d", la, sa), short(w.l.raw(li)), short(w.s.raw(si)))
}

// argmax returns the index of the largest of the numeric nodes idx, the
// first one on ties. As in numpy, a NaN is the maximum (the first NaN).
// A non-numeric node counts as NaN.
func argmax(d *doc, idx []int) int {
	best, bestV := 0, math.Inf(-1)
	for i, n := range idx {
		v, ok := d.number(n)
		if !ok || math.IsNaN(v) {
			return i
		}
		if i == 0 || v > bestV {
			best, bestV = i, v
		}
	}
	return best
}
