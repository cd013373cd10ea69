package compare

import (
	"bytes"
	"fmt"
	"sort"
	"strconv"

	"github.com/tidwall/gjson"
)

// oip compares Open Inference Protocol v2 answers: outputs matched by
// name (the configured ones, or all of the live answer's), each by shape
// and data.
func (w *walker) oip() bool {
	lo, so := w.l.get(0, "outputs"), w.s.get(0, "outputs")
	if lo < 0 || w.l.nodes[lo].kind != kindArray {
		return w.skip("live answer has no outputs")
	}
	if so < 0 || w.s.nodes[so].kind != kindArray {
		w.push(seg{kind: segLit, lit: "outputs"})
		var sr string
		if so >= 0 {
			sr = short(w.s.raw(so))
		}
		return w.fail("missing in shadow", short(w.l.raw(lo)), sr)
	}
	if len(w.c.outputs) > 0 {
		for i, name := range w.c.outputs {
			w.push(seg{kind: segLit, lit: w.c.outputLits[i]})
			lOut := findOutput(w.l, lo, name)
			if lOut < 0 {
				return w.skip("not in the live answer")
			}
			if !w.namedOutput(lOut, so, name) {
				return false
			}
		}
		return true
	}
	// Entries that are not objects are not outputs and are ignored.
	for i := range w.l.nodes[lo].n {
		lOut := w.l.elem(lo, i)
		if w.l.nodes[lOut].kind != kindObject {
			continue
		}
		name := outputName(w.l, lOut)
		w.push(seg{kind: segLit, lit: "outputs[" + strconv.Quote(string(name)) + "]"})
		if !w.namedOutput(lOut, so, name) {
			return false
		}
	}
	for i := range w.s.nodes[so].n {
		sOut := w.s.elem(so, i)
		if w.s.nodes[sOut].kind != kindObject {
			continue
		}
		name := outputName(w.s, sOut)
		if findOutput(w.l, lo, name) < 0 {
			w.push(seg{kind: segLit, lit: "outputs[" + strconv.Quote(string(name)) + "]"})
			w.fail("missing in live", "", "")
			w.pop()
			return false
		}
	}
	return true
}

// outputName returns an output's name, or nil when it has none.
func outputName(d *doc, out int) []byte {
	n := d.get(out, "name")
	if n < 0 || d.nodes[n].kind != kindString {
		return nil
	}
	return d.strBytes(n)
}

// findOutput returns the first output of array outs named name, or -1.
func findOutput(d *doc, outs int, name []byte) int {
	for i := range d.nodes[outs].n {
		o := d.elem(outs, i)
		if d.nodes[o].kind == kindObject && bytes.Equal(outputName(d, o), name) {
			return o
		}
	}
	return -1
}

// namedOutput compares the live output lOut with the shadow output of the
// same name in the array so, failing when the shadow has none, and pops
// the path segment the caller pushed for it.
func (w *walker) namedOutput(lOut, so int, name []byte) bool {
	sOut := findOutput(w.s, so, name)
	ok := false
	if sOut < 0 {
		ok = w.fail("missing in shadow", "", "")
	} else {
		ok = w.output(lOut, sOut)
	}
	w.pop()
	return ok
}

// output compares one OIP output. Data may be nested or flat: both are
// flattened (row-major) and indexed by the live shape. Datatypes may
// differ: values are compared by value, and a differing datatype is noted
// in a mismatch's reason.
func (w *walker) output(lOut, sOut int) bool {
	ld, sd := w.l.get(lOut, "data"), w.s.get(sOut, "data")
	if ld < 0 {
		return w.skip("live output has no data")
	}
	if lt, st := w.l.get(lOut, "datatype"), w.s.get(sOut, "datatype"); lt >= 0 && st >= 0 &&
		w.l.nodes[lt].kind == kindString && w.s.nodes[st].kind == kindString {
		if a, b := w.l.strBytes(lt), w.s.strBytes(st); !bytes.Equal(a, b) {
			w.note = fmt.Sprintf(" (datatype %s vs %s)", short(a), short(b))
		}
	}
	defer func() { w.note = "" }()
	var lok, sok bool
	w.lshape, lok = readShape(w.l, w.l.get(lOut, "shape"), w.lshape[:0])
	w.sshape, sok = readShape(w.s, w.s.get(sOut, "shape"), w.sshape[:0])
	if lok && sok && !equalInts(w.lshape, w.sshape) {
		w.push(seg{kind: segLit, lit: "shape"})
		lr, sr := short(w.l.raw(w.l.get(lOut, "shape"))), short(w.s.raw(w.s.get(sOut, "shape")))
		return w.fail(lr+" vs "+sr, lr, sr)
	}
	w.push(seg{kind: segLit, lit: "data"})
	defer w.pop()
	if sd < 0 {
		return w.fail("missing in shadow", short(w.l.raw(ld)), "")
	}
	w.lflat = flatten(w.l, ld, w.lflat[:0])
	w.sflat = flatten(w.s, sd, w.sflat[:0])
	lf, sf := w.lflat, w.sflat
	if len(lf) != len(sf) {
		return w.fail(fmt.Sprintf("length %d vs %d", len(lf), len(sf)), short(w.l.raw(ld)), short(w.s.raw(sd)))
	}
	if !lok || product(w.lshape) != len(lf) {
		// No usable shape: compare the data as written.
		return w.value(ld, sd)
	}
	shape := w.lshape
	if w.mode == modeArgmax && len(shape) > 0 && shape[len(shape)-1] > 0 {
		row := shape[len(shape)-1]
		for r := 0; r*row < len(lf); r++ {
			lrow, srow := lf[r*row:(r+1)*row], sf[r*row:(r+1)*row]
			w.push(seg{kind: segFlat, i: r, shape: shape[:len(shape)-1]})
			ok := w.flatRow(lrow, srow)
			w.pop()
			if !ok {
				return false
			}
		}
		return true
	}
	for i := range lf {
		w.push(seg{kind: segFlat, i: i, shape: shape})
		ok := w.value(lf[i], sf[i])
		w.pop()
		if !ok {
			return false
		}
	}
	return true
}

// flatRow compares one row of a flat tensor by argmax, or element by
// element when it is not all numbers.
func (w *walker) flatRow(l, s []int) bool {
	numeric := true
	for i := range l {
		_, lok := w.l.number(l[i])
		_, sok := w.s.number(s[i])
		numeric = numeric && lok && sok
	}
	if !numeric {
		for i := range l {
			if !w.value(l[i], s[i]) {
				return false
			}
		}
		return true
	}
	la, sa := argmax(w.l, l), argmax(w.s, s)
	if la == sa {
		return true
	}
	return w.fail(fmt.Sprintf("argmax %d vs %d", la, sa), spanOf(w.l, l), spanOf(w.s, s))
}

// spanOf renders the text from the first to the last of nodes idx.
func spanOf(d *doc, idx []int) string {
	if len(idx) == 0 {
		return "[]"
	}
	return short(d.src[d.nodes[idx[0]].start:d.nodes[idx[len(idx)-1]].end])
}

// flatten appends the leaves of node i in row-major order.
func flatten(d *doc, i int, out []int) []int {
	n := d.nodes[i]
	if n.kind != kindArray {
		return append(out, i)
	}
	for j := range n.n {
		out = flatten(d, d.elem(i, j), out)
	}
	return out
}

// readShape reads a shape: an array of non-negative integers.
func readShape(d *doc, i int, out []int) ([]int, bool) {
	if i < 0 || d.nodes[i].kind != kindArray {
		return out, false
	}
	for j := range d.nodes[i].n {
		e := d.nodes[d.elem(i, j)]
		if e.kind != kindNumber || !e.intLit || e.num < 0 || e.num > 1<<31 {
			return out, false
		}
		out = append(out, int(e.num))
	}
	return out, true
}

// product multiplies the dimensions of a shape, or returns -1 on overflow.
func product(shape []int) int {
	p := 1
	for _, d := range shape {
		if d != 0 && p > (1<<62)/d {
			return -1
		}
		p *= d
	}
	return p
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// jsonPath compares the values at gjson path p and reports whether the
// comparison may go on to the next path.
func (st *state) jsonPath(p string) bool {
	w := &st.w
	ld, li, lok := st.locate(st.ld, st.live.Body, p)
	w.segs = append(w.segs[:0], seg{kind: segLit, lit: p})
	if !lok {
		return w.skip("not in the live answer")
	}
	sd, si, sok := st.locate(st.sd, st.shadow.Body, p)
	w.l = ld
	if !sok {
		return w.fail("missing in shadow", short(ld.raw(li)), "")
	}
	w.s = sd
	return w.value(li, si)
}

// locate finds gjson path p in body, parsed as d: the node holding the
// result when the result is a value of the document, else a new document
// parsed from the result (a query or modifier builds its result).
func (st *state) locate(d *doc, body []byte, p string) (*doc, int, bool) {
	r := gjson.GetBytes(body, p)
	if !r.Exists() {
		return nil, 0, false
	}
	i := sort.Search(len(d.nodes), func(i int) bool { return d.nodes[i].start >= r.Index })
	if r.Index > 0 && i < len(d.nodes) && d.nodes[i].start == r.Index && d.nodes[i].end-d.nodes[i].start == len(r.Raw) {
		return d, i, true
	}
	if r.Index == 0 && len(d.nodes) > 0 && string(d.raw(0)) == r.Raw {
		return d, 0, true
	}
	x := getDoc()
	st.extra = append(st.extra, x)
	if err := x.parse([]byte(r.Raw)); err != nil {
		return nil, 0, false
	}
	return x, 0, true
}
