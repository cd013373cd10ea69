package compare

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"sync"
	"unicode/utf16"
	"unicode/utf8"
)

// kind is the type of a JSON value.
type kind uint8

const (
	kindNull kind = iota
	kindFalse
	kindTrue
	kindNumber
	kindString
	kindArray
	kindObject
)

// node is one value of a parsed document. Nodes are stored in pre-order,
// so their start offsets strictly increase; the children of a container
// are contiguous in doc.kids (for an object: key, value, key, value...).
type node struct {
	kind kind
	// esc is set for a string holding escape sequences.
	esc bool
	// intLit is set for a number written as an integer (no '.', 'e').
	intLit bool
	// start and end delimit the value's text in doc.src (a string's
	// text includes its quotes).
	start, end int
	// num is a number's value.
	num float64
	// first and n locate the children in doc.kids; n counts elements of
	// an array and members of an object.
	first, n int
}

// maxDepth bounds nesting, so that a hostile body cannot exhaust the stack.
const maxDepth = 512

// doc is a parsed JSON document. The parser is tolerant where model
// servers are known to deviate from RFC 8259: it accepts the tokens NaN,
// Infinity and -Infinity (Python's json module writes them) as numbers,
// and numbers beyond float64 range as ±Inf. Docs are pooled, so a
// comparison allocates nothing for the tree.
type doc struct {
	src   []byte
	nodes []node
	kids  []int
	stack []int
}

var docPool = sync.Pool{New: func() any { return new(doc) }}

func getDoc() *doc { return docPool.Get().(*doc) }

func putDoc(d *doc) {
	// Do not keep the memory of an unusually large document around.
	if cap(d.nodes) > 1<<16 || cap(d.kids) > 1<<16 {
		return
	}
	d.src = nil
	docPool.Put(d)
}

// syntaxError is a JSON body that could not be parsed.
type syntaxError struct {
	offset int
	msg    string
}

func (e *syntaxError) Error() string {
	return fmt.Sprintf("invalid JSON at offset %d: %s", e.offset, e.msg)
}

// parse reads src into d, replacing what d held. The root is node 0.
func (d *doc) parse(src []byte) error {
	d.src = src
	d.nodes = d.nodes[:0]
	d.kids = d.kids[:0]
	d.stack = d.stack[:0]
	i := skipSpace(src, 0)
	if i == len(src) {
		return &syntaxError{i, "empty body"}
	}
	_, i, err := d.value(i, 0)
	if err != nil {
		return err
	}
	if i = skipSpace(src, i); i != len(src) {
		return &syntaxError{i, "data after the JSON value"}
	}
	return nil
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// value parses the value at src[i] and returns its node index and the
// offset after it.
func (d *doc) value(i, depth int) (int, int, error) {
	src := d.src
	if i >= len(src) {
		return 0, i, &syntaxError{i, "unexpected end of input"}
	}
	switch c := src[i]; {
	case c == '{' || c == '[':
		if depth >= maxDepth {
			return 0, i, &syntaxError{i, "nested too deeply"}
		}
		return d.container(i, depth)
	case c == '"':
		return d.str(i)
	case c == 't':
		return d.literal(i, "true", kindTrue, 0)
	case c == 'f':
		return d.literal(i, "false", kindFalse, 0)
	case c == 'n':
		return d.literal(i, "null", kindNull, 0)
	case c == 'N':
		return d.literal(i, "NaN", kindNumber, math.NaN())
	case c == 'I':
		return d.literal(i, "Infinity", kindNumber, math.Inf(1))
	case c == '-' && bytes.HasPrefix(src[i:], []byte("-Infinity")):
		return d.literal(i, "-Infinity", kindNumber, math.Inf(-1))
	case c == '-' || c >= '0' && c <= '9':
		return d.parseNumber(i)
	default:
		return 0, i, &syntaxError{i, fmt.Sprintf("unexpected %q", c)}
	}
}

func (d *doc) add(n node) int {
	d.nodes = append(d.nodes, n)
	return len(d.nodes) - 1
}

func (d *doc) literal(i int, lit string, k kind, num float64) (int, int, error) {
	if !bytes.HasPrefix(d.src[i:], []byte(lit)) {
		return 0, i, &syntaxError{i, "invalid literal"}
	}
	return d.add(node{kind: k, start: i, end: i + len(lit), num: num}), i + len(lit), nil
}

func (d *doc) parseNumber(i int) (int, int, error) {
	src := d.src
	j := i
	if src[j] == '-' {
		j++
	}
	digits := j
	for j < len(src) && src[j] >= '0' && src[j] <= '9' {
		j++
	}
	if j == digits {
		return 0, i, &syntaxError{i, "invalid number"}
	}
	isInt := true
	if j < len(src) && src[j] == '.' {
		isInt = false
		j++
		k := j
		for j < len(src) && src[j] >= '0' && src[j] <= '9' {
			j++
		}
		if j == k {
			return 0, i, &syntaxError{i, "invalid number"}
		}
	}
	if j < len(src) && (src[j] == 'e' || src[j] == 'E') {
		isInt = false
		j++
		if j < len(src) && (src[j] == '+' || src[j] == '-') {
			j++
		}
		k := j
		for j < len(src) && src[j] >= '0' && src[j] <= '9' {
			j++
		}
		if j == k {
			return 0, i, &syntaxError{i, "invalid number"}
		}
	}
	// A range error leaves ±Inf (or 0 for underflow), which is the value
	// the writer meant as closely as a float64 can hold it.
	f, err := strconv.ParseFloat(string(src[i:j]), 64)
	if err != nil && f == 0 && !isRangeErr(err) {
		return 0, i, &syntaxError{i, "invalid number"}
	}
	return d.add(node{kind: kindNumber, intLit: isInt, start: i, end: j, num: f}), j, nil
}

func isRangeErr(err error) bool {
	ne, ok := err.(*strconv.NumError)
	return ok && ne.Err == strconv.ErrRange
}

func (d *doc) str(i int) (int, int, error) {
	src := d.src
	esc := false
	for j := i + 1; j < len(src); j++ {
		switch src[j] {
		case '"':
			return d.add(node{kind: kindString, esc: esc, start: i, end: j + 1}), j + 1, nil
		case '\\':
			esc = true
			j++
			if j >= len(src) {
				return 0, j, &syntaxError{j, "unterminated string"}
			}
			switch src[j] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if j+4 >= len(src) || !isHex4(src[j+1:j+5]) {
					return 0, j, &syntaxError{j, "invalid \\u escape"}
				}
				j += 4
			default:
				return 0, j, &syntaxError{j, "invalid escape"}
			}
		}
	}
	return 0, len(src), &syntaxError{i, "unterminated string"}
}

func isHex4(b []byte) bool {
	for _, c := range b[:4] {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

func (d *doc) container(i, depth int) (int, int, error) {
	src := d.src
	obj := src[i] == '{'
	closer := byte(']')
	k := kindArray
	if obj {
		closer, k = '}', kindObject
	}
	idx := d.add(node{kind: k, start: i})
	mark := len(d.stack)
	j := skipSpace(src, i+1)
	if j < len(src) && src[j] == closer {
		j++
	} else {
		for {
			if obj {
				if j >= len(src) || src[j] != '"' {
					return 0, j, &syntaxError{j, "expected a string key"}
				}
				key, next, err := d.str(j)
				if err != nil {
					return 0, next, err
				}
				j = skipSpace(src, next)
				if j >= len(src) || src[j] != ':' {
					return 0, j, &syntaxError{j, "expected ':'"}
				}
				j = skipSpace(src, j+1)
				d.stack = append(d.stack, key)
			}
			v, next, err := d.value(j, depth+1)
			if err != nil {
				return 0, next, err
			}
			d.stack = append(d.stack, v)
			j = skipSpace(src, next)
			if j >= len(src) {
				return 0, j, &syntaxError{j, "unexpected end of input"}
			}
			if src[j] == closer {
				j++
				break
			}
			if src[j] != ',' {
				return 0, j, &syntaxError{j, "expected ',' or a closing bracket"}
			}
			j = skipSpace(src, j+1)
		}
	}
	n := &d.nodes[idx]
	n.end = j
	n.first = len(d.kids)
	n.n = len(d.stack) - mark
	if obj {
		n.n /= 2
	}
	d.kids = append(d.kids, d.stack[mark:]...)
	d.stack = d.stack[:mark]
	return idx, j, nil
}

// elem returns the node index of array element i.
func (d *doc) elem(arr, i int) int { return d.kids[d.nodes[arr].first+i] }

// member returns the key and value node indexes of object member i.
func (d *doc) member(obj, i int) (key, val int) {
	f := d.nodes[obj].first + 2*i
	return d.kids[f], d.kids[f+1]
}

// get returns the value of the first member of obj named key, or -1.
func (d *doc) get(obj int, key string) int {
	if obj < 0 || d.nodes[obj].kind != kindObject {
		return -1
	}
	for i := range d.nodes[obj].n {
		k, v := d.member(obj, i)
		if d.keyIs(k, key) {
			return v
		}
	}
	return -1
}

// keyIs reports whether string node k spells key.
func (d *doc) keyIs(k int, key string) bool {
	n := d.nodes[k]
	if !n.esc {
		return string(d.src[n.start+1:n.end-1]) == key
	}
	return d.text(k) == key
}

// raw returns a node's text as written.
func (d *doc) raw(i int) []byte {
	n := d.nodes[i]
	return d.src[n.start:n.end]
}

// strBytes returns a string node's content, unescaped. It allocates only
// when the string holds escapes.
func (d *doc) strBytes(i int) []byte {
	n := d.nodes[i]
	body := d.src[n.start+1 : n.end-1]
	if !n.esc {
		return body
	}
	return unescape(body)
}

// text returns a string node's content, unescaped.
func (d *doc) text(i int) string { return string(d.strBytes(i)) }

// unescape decodes the JSON escapes of a string's content (validated by
// the parser); an unpaired surrogate becomes U+FFFD.
func unescape(s []byte) []byte {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 >= len(s) {
			out = append(out, c)
			continue
		}
		i++
		switch s[i] {
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			if i+4 >= len(s) {
				out = append(out, s[i-1:]...)
				return out
			}
			r := rune(hex4(s[i+1 : i+5]))
			i += 4
			if utf16.IsSurrogate(r) {
				r2 := rune(-1)
				if i+6 < len(s) && s[i+1] == '\\' && s[i+2] == 'u' && isHex4(s[i+3:i+7]) {
					r2 = rune(hex4(s[i+3 : i+7]))
				}
				if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
					i += 6
					r = dec
				} else {
					r = utf8.RuneError
				}
			}
			out = utf8.AppendRune(out, r)
		default:
			out = append(out, s[i])
		}
	}
	return out
}

func hex4(b []byte) int {
	v := 0
	for _, c := range b[:4] {
		v <<= 4
		switch {
		case c >= '0' && c <= '9':
			v |= int(c - '0')
		case c >= 'a' && c <= 'f':
			v |= int(c-'a') + 10
		case c >= 'A' && c <= 'F':
			v |= int(c-'A') + 10
		}
	}
	return v
}

// number returns the numeric value of node i: a number, or a string
// spelling NaN, Infinity or -Infinity (as some servers write values JSON
// cannot hold).
func (d *doc) number(i int) (float64, bool) {
	n := d.nodes[i]
	switch n.kind {
	case kindNumber:
		return n.num, true
	case kindString:
		if n.esc {
			return 0, false
		}
		return specialFloat(d.src[n.start+1 : n.end-1])
	}
	return 0, false
}

// specialFloat recognises the spellings of NaN and the infinities that
// Python, JavaScript and numpy write: NaN, nan, Infinity, inf, with an
// optional sign (case-insensitive).
func specialFloat(s []byte) (float64, bool) {
	sign := 1.0
	if len(s) > 0 && (s[0] == '-' || s[0] == '+') {
		if s[0] == '-' {
			sign = -1
		}
		s = s[1:]
	}
	switch {
	case bytes.EqualFold(s, []byte("nan")):
		return math.NaN(), true
	case bytes.EqualFold(s, []byte("inf")), bytes.EqualFold(s, []byte("infinity")):
		return math.Inf(int(sign)), true
	}
	return 0, false
}
