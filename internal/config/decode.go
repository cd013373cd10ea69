package config

import (
	"bytes"
	"encoding"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"strconv"
	"strings"
	"sync"

	"github.com/modelgate/modelgate/internal/spec"
	"go.yaml.in/yaml/v3"
)

// Decode decodes the single YAML document in data into the value that into
// points to, strictly: a key the Go type does not declare, a duplicate key,
// a value of the wrong type, a second document or a syntax error is a
// problem. JSON is YAML, so request bodies decode the same way.
//
// Every problem found is returned at once, each a *spec.Problem at its field
// path ("endpoints[0].deployments[1].timeout"), joined with errors.Join; for
// a document of more than one line the message ends with the line, e.g.
// "unknown key (line 12)".
//
// Fields are matched by their `yaml` tag (the lowercased field name without
// one). Supported are structs, slices, maps with string keys, pointers,
// strings, integers, floats, booleans, spec.Percent (through
// spec.ParsePercent, from the scalar's text), types implementing
// yaml.Unmarshaler or encoding.TextUnmarshaler (such as spec.Duration), and
// empty interfaces. A null value sets the zero value; an empty document
// leaves into unchanged. Anchors, aliases and merge keys (<<) work as in
// YAML; a self-referencing alias is a problem.
//
// into must be a non-nil pointer; otherwise Decode returns a plain error.
func Decode(data []byte, into any) error {
	rv := reflect.ValueOf(into)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("decode: need a non-nil pointer, got %T", into)
	}
	return errors.Join(decode(data, rv.Elem()).problems...)
}

// decoded is the outcome of decoding one document.
type decoded struct {
	// problems in document order.
	problems []error
	// syntax is set when the document could not be parsed at all.
	syntax bool
	// lines maps a field path to the line it was written on.
	lines map[string]int
	// failed are the field paths whose value could not be decoded.
	failed []string
	// withLines is set when messages name lines (the input has several).
	withLines bool
}

// decode parses data and decodes its document into v.
func decode(data []byte, v reflect.Value) decoded {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return decoded{}
		}
		return decoded{problems: []error{syntaxProblem(data, err)}, syntax: true}
	}
	var out decoded
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return decoded{problems: []error{syntaxProblem(data, err)}, syntax: true}
	default:
		out.problems = append(out.problems, spec.Problemf("",
			"more than one YAML document (a second starts at line %d); a file holds exactly one", extra.Line))
	}
	root := &doc
	if doc.Kind == yaml.DocumentNode {
		if len(doc.Content) == 0 {
			return out
		}
		root = doc.Content[0]
	}
	d := &decoder{
		lines:     map[string]int{},
		withLines: bytes.Contains(bytes.TrimRight(data, " \t\r\n"), []byte("\n")),
		open:      map[*yaml.Node]bool{},
	}
	// Aliases can make a small document expand exponentially ("billion
	// laughs"), so the work is bounded by a multiple of its real size.
	d.budget = 10*countNodes(root) + 1000
	d.decode(root, v, "")
	out.problems = append(d.problems, out.problems...)
	out.lines = d.lines
	out.failed = d.failed
	out.withLines = d.withLines
	return out
}

// syntaxProblem turns a yaml.v3 parse error ("yaml: line 3: ...") into a
// problem at the line that is wrong. yaml.v3 names the line where the
// block the error breaks starts (often line 1), not the bad line, so:
// a tab in a line's indentation is named as such, at its line; otherwise
// the bad line is the first one whose prefix of the file (lines 1 to it)
// fails to parse with the same error, searched from yaml's line on, in
// files of at most maxSearchLines lines.
func syntaxProblem(data []byte, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	lines := strings.Split(string(data), "\n")
	line, what, ok := yamlLine(msg)
	if !ok {
		return spec.Problemf("", "invalid YAML: %s", msg)
	}
	bad := badLine(lines, line, what)
	for i := 0; i < bad && i < len(lines); i++ {
		l := lines[i]
		if indent := l[:len(l)-len(strings.TrimLeft(l, " \t"))]; strings.Contains(indent, "\t") {
			return spec.Problemf("", "invalid YAML: line %d: a tab in the indentation: YAML indents with spaces only; replace the tab with spaces", i+1)
		}
	}
	if bad != line {
		return spec.Problemf("", "invalid YAML: line %d: %s: check its indentation against the block that starts at line %d", bad, what, line)
	}
	return spec.Problemf("", "invalid YAML: %s", msg)
}

// badLine is the first line from line on whose prefix of the file fails
// to parse with the error what; line itself when none does or the file is
// over maxSearchLines lines.
func badLine(lines []string, line int, what string) int {
	if len(lines) > maxSearchLines {
		return line
	}
	for k := line; k <= len(lines); k++ {
		var n yaml.Node
		err := yaml.Unmarshal([]byte(strings.Join(lines[:k], "\n")), &n)
		if err == nil {
			continue
		}
		if _, w, ok := yamlLine(strings.TrimPrefix(err.Error(), "yaml: ")); ok && w == what {
			return k
		}
		return line
	}
	return line
}

// maxSearchLines bounds syntaxProblem's search for the bad line: at most
// that many parses of at most that many lines.
const maxSearchLines = 2000

// yamlLine splits "line 3: what" into 3 and "what".
func yamlLine(msg string) (int, string, bool) {
	rest, ok := strings.CutPrefix(msg, "line ")
	if !ok {
		return 0, "", false
	}
	num, what, ok := strings.Cut(rest, ": ")
	n, err := strconv.Atoi(num)
	if !ok || err != nil || n < 1 {
		return 0, "", false
	}
	return n, what, true
}

func countNodes(n *yaml.Node) int {
	c := 1
	for _, child := range n.Content {
		c += countNodes(child)
	}
	return c
}

type decoder struct {
	problems  []error
	lines     map[string]int
	failed    []string
	withLines bool
	budget    int
	exhausted bool
	// open holds the anchored nodes being decoded, to catch an alias
	// that refers to a node containing it.
	open map[*yaml.Node]bool
}

// fail records a problem with the value at path, naming n's line.
func (d *decoder) fail(path string, n *yaml.Node, format string, args ...any) {
	d.note(path, n, format, args...)
	d.failed = append(d.failed, path)
}

// note records a problem at path that leaves the decoded value intact (an
// unknown key, a bad merge), so validation still checks that value.
func (d *decoder) note(path string, n *yaml.Node, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if d.withLines && n != nil && n.Line > 0 {
		msg += fmt.Sprintf(" (line %d)", n.Line)
	}
	d.problems = append(d.problems, &spec.Problem{Field: path, Message: msg})
}

// spend counts one node of work and reports whether the budget allows it.
func (d *decoder) spend(path string, n *yaml.Node) bool {
	d.budget--
	if d.budget >= 0 {
		return true
	}
	if !d.exhausted {
		d.exhausted = true
		d.fail(path, n, "too many alias expansions: the document expands to far more values than it holds")
	}
	return false
}

// enter marks anchored node n as being decoded; it reports false, with a
// problem, when n is already open (an alias inside its own anchor).
func (d *decoder) enter(path string, n *yaml.Node) bool {
	if n.Anchor == "" {
		return true
	}
	if d.open[n] {
		d.fail(path, n, "alias *%s refers to a value that contains it", n.Anchor)
		return false
	}
	d.open[n] = true
	return true
}

func (d *decoder) leave(n *yaml.Node) {
	if n.Anchor != "" {
		delete(d.open, n)
	}
}

var (
	percentType      = reflect.TypeFor[spec.Percent]()
	stageType        = reflect.TypeFor[spec.Stage]()
	durationType     = reflect.TypeFor[spec.Duration]()
	unmarshalerType  = reflect.TypeFor[yaml.Unmarshaler]()
	textUnmarshalerT = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// decode sets v, which must be settable, from n.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if !d.spend(path, n) {
		return
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			d.fail(path, n, "unknown alias *%s", n.Value)
			return
		}
		d.decode(n.Alias, v, path)
		return
	}
	if !d.enter(path, n) {
		return
	}
	defer d.leave(n)

	if isNull(n) {
		v.Set(reflect.Zero(v.Type()))
		return
	}
	t := v.Type()
	switch {
	case t == percentType:
		if n.Kind != yaml.ScalarNode {
			d.mismatch(path, n, t)
			return
		}
		p, err := spec.ParsePercent(n.Value)
		if err != nil {
			d.fail(path, n, "invalid percent %q: %v", n.Value, err)
			return
		}
		v.SetInt(int64(p))
		return
	case t == stageType && n.Kind == yaml.ScalarNode:
		// The stage shorthand: `stages: [5, 25, 50, 100]`.
		d.decode(n, v.FieldByName("Weight"), path+".weight")
		return
	case reflect.PointerTo(t).Implements(unmarshalerType):
		u := v.Addr().Interface().(yaml.Unmarshaler)
		if err := u.UnmarshalYAML(n); err != nil {
			d.fail(path, n, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
		}
		return
	case reflect.PointerTo(t).Implements(textUnmarshalerT):
		if n.Kind != yaml.ScalarNode {
			d.mismatch(path, n, t)
			return
		}
		u := v.Addr().Interface().(encoding.TextUnmarshaler)
		if err := u.UnmarshalText([]byte(n.Value)); err != nil {
			d.fail(path, n, "%v", err)
		}
		return
	}

	switch t.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(t.Elem()))
		}
		d.decode(n, v.Elem(), path)
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Map:
		d.decodeMap(n, v, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.mismatch(path, n, t)
			return
		}
		s := reflect.MakeSlice(t, len(n.Content), len(n.Content))
		for i, item := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			d.lines[p] = item.Line
			d.decode(item, s.Index(i), p)
		}
		v.Set(s)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.mismatch(path, n, t)
			return
		}
		if n.ShortTag() == "!!binary" {
			b, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(n.Value), ""))
			if err != nil {
				d.fail(path, n, "invalid !!binary value: %v", err)
				return
			}
			v.SetString(string(b))
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
			d.mismatch(path, n, t)
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		var i int64
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&i) != nil {
			if tooLarge(n) {
				d.fail(path, n, "%s is out of range", n.Value)
				return
			}
			d.mismatch(path, n, t)
			return
		}
		if v.OverflowInt(i) {
			d.fail(path, n, "%s is out of range", n.Value)
			return
		}
		v.SetInt(i)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		var u uint64
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&u) != nil {
			if tooLarge(n) {
				d.fail(path, n, "%s is out of range", n.Value)
				return
			}
			d.mismatch(path, n, t)
			return
		}
		if v.OverflowUint(u) {
			d.fail(path, n, "%s is out of range", n.Value)
			return
		}
		v.SetUint(u)
	case reflect.Float32, reflect.Float64:
		var f float64
		tag := n.ShortTag()
		if n.Kind != yaml.ScalarNode || (tag != "!!float" && tag != "!!int") || n.Decode(&f) != nil {
			d.mismatch(path, n, t)
			return
		}
		if v.OverflowFloat(f) {
			d.fail(path, n, "%s is out of range", n.Value)
			return
		}
		v.SetFloat(f)
	case reflect.Interface:
		if t.NumMethod() != 0 {
			d.fail(path, n, "cannot decode into Go type %s", t)
			return
		}
		var x any
		if err := n.Decode(&x); err != nil {
			d.fail(path, n, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
			return
		}
		if x != nil {
			v.Set(reflect.ValueOf(x))
		}
	default:
		d.fail(path, n, "cannot decode into Go type %s", t)
	}
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.mismatch(path, n, v.Type())
		return
	}
	fields := structFields(v.Type())
	for _, e := range d.entries(n, path) {
		p := join(path, e.key)
		d.lines[p] = e.k.Line
		i, ok := fields.index[e.key]
		if !ok {
			if s := suggest(e.key, fields.names); s != "" {
				d.note(p, e.k, "unknown key, did you mean %q?", s)
			} else {
				d.note(p, e.k, "unknown key")
			}
			continue
		}
		d.decode(e.v, v.FieldByIndex(i), p)
	}
}

func (d *decoder) decodeMap(n *yaml.Node, v reflect.Value, path string) {
	t := v.Type()
	if t.Key().Kind() != reflect.String {
		d.fail(path, n, "cannot decode into Go type %s: map keys must be strings", t)
		return
	}
	if n.Kind != yaml.MappingNode {
		d.mismatch(path, n, t)
		return
	}
	if v.IsNil() {
		v.Set(reflect.MakeMapWithSize(t, len(n.Content)/2))
	}
	for _, e := range d.entries(n, path) {
		p := join(path, e.key)
		d.lines[p] = e.k.Line
		elem := reflect.New(t.Elem()).Elem()
		before := len(d.problems)
		d.decode(e.v, elem, p)
		if len(d.problems) == before {
			v.SetMapIndex(reflect.ValueOf(e.key).Convert(t.Key()), elem)
		}
	}
}

// entry is one key and value of a mapping.
type entry struct {
	key  string
	k, v *yaml.Node
}

// entries returns the key/value pairs of mapping n in document order, with
// merge keys (<<) expanded in place and overridden by the explicit keys of
// n. Duplicate explicit keys and keys that are not scalars are problems.
func (d *decoder) entries(n *yaml.Node, path string) []entry {
	explicit := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := resolveAlias(n.Content[i])
		if isMerge(k) {
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.note(path, k, "a key must be a string, got %s", describe(k))
			continue
		}
		key := keyText(k)
		if first, dup := explicit[key]; dup {
			// The value is ignored; validation must not judge the
			// object without it.
			d.failed = append(d.failed, join(path, key))
			if d.withLines {
				d.note(join(path, key), nil, "duplicate key on line %d (first on line %d)", k.Line, first.Line)
			} else {
				d.note(join(path, key), nil, "duplicate key")
			}
			continue
		}
		explicit[key] = k
	}
	var out []entry
	merged := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := resolveAlias(n.Content[i]), n.Content[i+1]
		if isMerge(k) {
			for _, e := range d.mergeSources(val, path) {
				if explicit[e.key] != nil || merged[e.key] {
					continue
				}
				merged[e.key] = true
				out = append(out, e)
			}
			continue
		}
		// Only the first of duplicate keys is decoded.
		if k.Kind != yaml.ScalarNode || explicit[keyText(k)] != k {
			continue
		}
		out = append(out, entry{key: keyText(k), k: k, v: val})
	}
	return out
}

// mergeSources returns the entries a merge key's value brings in: a mapping,
// or a sequence of mappings where the earlier ones win.
func (d *decoder) mergeSources(val *yaml.Node, path string) []entry {
	if !d.spend(path, val) {
		return nil
	}
	src := resolveAlias(val)
	if !d.enter(path, src) {
		return nil
	}
	defer d.leave(src)
	switch src.Kind {
	case yaml.MappingNode:
		return d.entries(src, path)
	case yaml.SequenceNode:
		var out []entry
		seen := map[string]bool{}
		for _, item := range src.Content {
			m := resolveAlias(item)
			if m.Kind != yaml.MappingNode {
				d.note(path, item, "a merge (<<) takes a mapping or a list of mappings, got %s", describe(m))
				continue
			}
			for _, e := range d.mergeSources(item, path) {
				if !seen[e.key] {
					seen[e.key] = true
					out = append(out, e)
				}
			}
		}
		return out
	default:
		d.note(path, val, "a merge (<<) takes a mapping or a list of mappings, got %s", describe(src))
		return nil
	}
}

// tooLarge reports whether n is a whole number too large for 64 bits
// (yaml.v3 resolves those as floats).
func tooLarge(n *yaml.Node) bool {
	var f float64
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!float" || n.Decode(&f) != nil {
		return false
	}
	return f == math.Trunc(f) && math.Abs(f) >= 1<<63
}

func resolveAlias(n *yaml.Node) *yaml.Node {
	// A chain of aliases cannot loop: an alias only refers to an anchor
	// defined before it. The bound is there all the same.
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func isMerge(k *yaml.Node) bool {
	return k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge"
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func keyText(k *yaml.Node) string {
	if isNull(k) {
		return ""
	}
	return k.Value
}

// join appends a key to a field path: "traffic.green", or
// `traffic["a b"]` for a key that would make the path ambiguous.
func join(path, key string) string {
	simple := key != ""
	for _, c := range key {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			simple = false
			break
		}
	}
	switch {
	case !simple:
		return path + "[" + strconv.Quote(key) + "]"
	case path == "":
		return key
	default:
		return path + "." + key
	}
}

// mismatch records that n is not what type t needs.
func (d *decoder) mismatch(path string, n *yaml.Node, t reflect.Type) {
	d.fail(path, n, "expected %s, got %s", expected(t), describe(n))
}

// expected describes what a value of type t is written as.
func expected(t reflect.Type) string {
	switch t {
	case percentType:
		return "a percent such as 5 or 12.5"
	case durationType:
		return "a duration such as 10s"
	}
	if reflect.PointerTo(t).Implements(textUnmarshalerT) {
		return "a string"
	}
	switch t.Kind() {
	case reflect.Pointer:
		return expected(t.Elem())
	case reflect.Struct, reflect.Map:
		return "a mapping"
	case reflect.Slice:
		return "a list"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return t.String()
}

// describe names what n holds, for "expected X, got Y".
func describe(n *yaml.Node) string {
	n = resolveAlias(n)
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if isNull(n) {
			return "null"
		}
		v := n.Value
		if len(v) > 40 {
			v = v[:40] + "..."
		}
		return strconv.Quote(v)
	}
	return "nothing"
}

// fieldSet is the decodable fields of a struct type by key. Fields of a
// struct tagged `yaml:",inline"` are keys of the outer mapping.
type fieldSet struct {
	index map[string][]int
	names []string
}

var fieldCache sync.Map // reflect.Type -> *fieldSet

func structFields(t reflect.Type) *fieldSet {
	if fs, ok := fieldCache.Load(t); ok {
		return fs.(*fieldSet)
	}
	fs := &fieldSet{index: map[string][]int{}}
	addFields(fs, t, nil)
	fieldCache.Store(t, fs)
	return fs
}

func addFields(fs *fieldSet, t reflect.Type, parent []int) {
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		idx := append(append([]int(nil), parent...), i)
		if name == "" && opts == "inline" && f.Type.Kind() == reflect.Struct {
			addFields(fs, f.Type, idx)
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		fs.index[name] = idx
		fs.names = append(fs.names, name)
	}
}

// suggest returns the known key closest to key, if it is close enough to
// be a likely typo.
func suggest(key string, known []string) string {
	best, bestDist := "", 3
	for _, k := range known {
		if strings.EqualFold(k, key) {
			return k
		}
		if len(key) > 64 || len(k) > 64 {
			continue
		}
		if dist := spec.Distance(key, k); dist < bestDist {
			best, bestDist = k, dist
		}
	}
	if bestDist >= len(key) {
		return ""
	}
	return best
}
