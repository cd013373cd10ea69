package api

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/modelgate/modelgate/internal/spec"
)

// MaxDepth bounds the nesting of a request body DecodeJSON accepts: the
// API's bodies nest a few levels; a deeper one is refused before it is
// walked.
const MaxDepth = 32

// DecodeJSON decodes the single JSON value in data into the value that into
// points to, strictly: a field the Go type does not declare (matched by its
// `json` name, case and all), a value of the wrong type, a value its type
// refuses (a percent with three decimals, a duration without a unit), a
// second value after the first, an empty body, or a syntax error is a
// problem. Every problem found is returned at once, each a *spec.Problem at
// its field path ("plan.stages[0].weight"), joined with errors.Join; into is
// only written when there is none.
//
// into must be a non-nil pointer; otherwise DecodeJSON returns a plain
// error.
func DecodeJSON(data []byte, into any) error {
	rv := reflect.ValueOf(into)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("decode: need a non-nil pointer, got %T", into)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	w := walker{data: data, offsets: map[string]int64{}}
	tree, err := w.parse(dec, "", 0)
	if err != nil {
		return syntaxProblem(data, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return spec.Problemf("", "more than one JSON value in the body: send one object")
	}
	if len(w.problems) > 0 { // duplicate keys
		return errors.Join(w.problems...)
	}
	w.walk(tree, rv.Type().Elem(), "")
	if len(w.problems) > 0 {
		return errors.Join(w.problems...)
	}
	// The walk found nothing to refuse; the standard decoder fills into.
	strict := json.NewDecoder(bytes.NewReader(data))
	strict.DisallowUnknownFields()
	if err := strict.Decode(into); err != nil {
		return spec.Problemf("", "%v", err) // a case the walk does not foresee
	}
	return nil
}

// syntaxProblem explains a body that is not one JSON value.
func syntaxProblem(data []byte, err error) error {
	if errors.Is(err, io.EOF) {
		return spec.Problemf("", "the body is empty: send a JSON object")
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		// The token reader's offset is its last token's; the whole
		// decoder's is the bad character's.
		var v any
		var whole *json.SyntaxError
		if errors.As(json.Unmarshal(data, &v), &whole) {
			se = whole
		}
		line, col := position(data, se.Offset)
		return spec.Problemf("", "invalid JSON at line %d, column %d: %s", line, col, se.Error())
	}
	if errors.Is(err, errTooDeep) {
		return spec.Problemf("", "%v", err)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return spec.Problemf("", "invalid JSON: the body ends before its value does")
	}
	return spec.Problemf("", "invalid JSON: %v", err)
}

// position is the 1-based line and column of byte offset off in data.
func position(data []byte, off int64) (line, col int) {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	before := data[:off]
	line = bytes.Count(before, []byte("\n")) + 1
	col = int(off) - (bytes.LastIndexByte(before, '\n') + 1)
	return line, max(col, 1)
}

// object is a decoded JSON object with its keys in document order, so
// that problems are listed in the order they were written.
type object struct {
	keys []string
	vals map[string]any
}

// errTooDeep refuses a body nested deeper than MaxDepth.
var errTooDeep = fmt.Errorf("the body nests more than %d levels deep", MaxDepth)

// parse reads one JSON value from dec into a tree of object, []any,
// string, json.Number, bool and nil, noting a duplicate key (which
// encoding/json would let the last one win silently) as a problem.
func (w *walker) parse(dec *json.Decoder, path string, depth int) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	w.offsets[path] = dec.InputOffset()
	d, ok := tok.(json.Delim)
	if !ok {
		return tok, nil
	}
	if depth >= MaxDepth {
		return nil, errTooDeep
	}
	switch d {
	case '{':
		o := object{vals: map[string]any{}}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return nil, err
			}
			k := kt.(string) // the decoder only gives a string here
			v, err := w.parse(dec, join(path, k), depth+1)
			if err != nil {
				return nil, err
			}
			if _, dup := o.vals[k]; dup {
				w.note(join(path, k), "given twice")
				continue
			}
			o.keys = append(o.keys, k)
			o.vals[k] = v
		}
		_, err := dec.Token() // }
		return o, err
	default: // '['
		var a []any
		for dec.More() {
			v, err := w.parse(dec, fmt.Sprintf("%s[%d]", path, len(a)), depth+1)
			if err != nil {
				return nil, err
			}
			a = append(a, v)
		}
		_, err := dec.Token() // ]
		return a, err
	}
}

// walker checks a decoded JSON tree against a Go type, collecting a
// problem at the path of every value the type does not take.
type walker struct {
	problems []error
	// data is the body; offsets map each value's path to the offset just
	// past its first token, for the line a message names.
	data    []byte
	offsets map[string]int64
}

// note adds a problem at path; in a body of more than one line its
// message ends with the value's line, as the config file's do.
func (w *walker) note(path, format string, args ...any) {
	p := spec.Problemf(path, format, args...)
	if off, ok := w.offsets[path]; ok && bytes.Count(bytes.TrimSpace(w.data), []byte("\n")) > 0 {
		line, _ := position(w.data, off)
		p.Message += fmt.Sprintf(" (line %d)", line)
	}
	w.problems = append(w.problems, p)
}

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

func (w *walker) walk(v any, t reflect.Type, path string) {
	if v == nil {
		return // null sets the zero value
	}
	pt := reflect.PointerTo(t)
	_, isObject := v.(object)
	switch {
	case pt.Implements(jsonUnmarshaler) && !(isObject && t.Kind() == reflect.Struct):
		// An object given to a struct that reads itself (spec.Stage: a
		// percent or the stage's fields) is walked as the struct below,
		// which names the field at fault.
		// The type reads itself (spec.Percent, spec.Stage): ask it.
		if err := json.Unmarshal(encode(v), reflect.New(t).Interface()); err != nil {
			w.note(path, "%s", unmarshalText(err))
		}
		return
	case pt.Implements(textUnmarshaler):
		// A number given for a string the type reads (a duration
		// without quotes) gets the type's own message about its text.
		text, ok := v.(string)
		if n, isNumber := v.(json.Number); isNumber {
			text = n.String()
		}
		err := reflect.New(t).Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(text))
		switch {
		case err != nil && (ok || text != ""):
			w.note(path, "%s", unmarshalText(err))
		case !ok:
			w.note(path, "%s, want a string", describe(v))
		}
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		w.walk(v, t.Elem(), path)
	case reflect.Interface:
		// any value
	case reflect.Struct:
		obj, ok := v.(object)
		if !ok {
			w.note(path, "%s, want an object", describe(v))
			return
		}
		fields := jsonFields(t)
		for _, k := range obj.keys {
			f, ok := fields[k]
			if !ok {
				w.note(join(path, k), "unknown field%s", spec.Known(k, slices.Sorted(maps.Keys(fields)), "fields"))
				continue
			}
			w.walk(obj.vals[k], t.FieldByIndex(f).Type, join(path, k))
		}
	case reflect.Map:
		obj, ok := v.(object)
		if !ok {
			w.note(path, "%s, want an object", describe(v))
			return
		}
		if t.Key().Kind() != reflect.String {
			w.note(path, "cannot be decoded (a map keyed by %s)", t.Key())
			return
		}
		for _, k := range obj.keys {
			w.walk(obj.vals[k], t.Elem(), join(path, k))
		}
	case reflect.Slice, reflect.Array:
		arr, ok := v.([]any)
		if !ok {
			w.note(path, "%s, want a list", describe(v))
			return
		}
		if t.Kind() == reflect.Array && len(arr) > t.Len() {
			w.note(path, "has %d values, at most %d allowed", len(arr), t.Len())
			return
		}
		for i, e := range arr {
			w.walk(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	case reflect.String:
		if _, ok := v.(string); !ok {
			w.note(path, "%s, want a string", describe(v))
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			w.note(path, "%s, want true or false", describe(v))
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := v.(json.Number)
		if !ok {
			w.note(path, "%s, want a whole number", describe(v))
			return
		}
		i, err := strconv.ParseInt(n.String(), 10, 64)
		if err != nil || reflect.New(t).Elem().OverflowInt(i) {
			w.note(path, "%s is not a whole number from %d to %d", n, minInt(t), maxInt(t))
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := v.(json.Number)
		if !ok {
			w.note(path, "%s, want a whole number", describe(v))
			return
		}
		u, err := strconv.ParseUint(n.String(), 10, 64)
		if err != nil || reflect.New(t).Elem().OverflowUint(u) {
			w.note(path, "%s is not a whole number from 0 to %d", n, uint64(math.MaxUint64)>>(64-t.Bits()))
		}
	case reflect.Float32, reflect.Float64:
		n, ok := v.(json.Number)
		if !ok {
			w.note(path, "%s, want a number", describe(v))
			return
		}
		if _, err := strconv.ParseFloat(n.String(), t.Bits()); err != nil {
			w.note(path, "%s is out of range", n)
		}
	default:
		w.note(path, "cannot be decoded (a %s)", t.Kind())
	}
}

// jsonFields maps each JSON name of struct t's fields, embedded structs'
// promoted ones included, to the field's index, as encoding/json names
// them (the tag's name, or the Go name; "-" and unexported fields left out).
func jsonFields(t reflect.Type) map[string][]int {
	out := map[string][]int{}
	var add func(t reflect.Type, index []int)
	add = func(t reflect.Type, index []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag := f.Tag.Get("json")
			if tag == "-" {
				continue
			}
			name, _, _ := strings.Cut(tag, ",")
			idx := append(slices.Clone(index), i)
			if f.Anonymous && name == "" {
				ft := f.Type
				if ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				if ft.Kind() == reflect.Struct {
					add(ft, idx)
					continue
				}
			}
			if !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			if _, dup := out[name]; !dup || len(idx) < len(out[name]) {
				out[name] = idx
			}
		}
	}
	add(t, nil)
	return out
}

// encode writes a parsed tree back as JSON, for a type that reads itself.
func encode(v any) []byte {
	switch v := v.(type) {
	case object:
		var b bytes.Buffer
		b.WriteByte('{')
		for i, k := range v.keys {
			if i > 0 {
				b.WriteByte(',')
			}
			kb, _ := json.Marshal(k)
			b.Write(kb)
			b.WriteByte(':')
			b.Write(encode(v.vals[k]))
		}
		b.WriteByte('}')
		return b.Bytes()
	case []any:
		var b bytes.Buffer
		b.WriteByte('[')
		for i, e := range v {
			if i > 0 {
				b.WriteByte(',')
			}
			b.Write(encode(e))
		}
		b.WriteByte(']')
		return b.Bytes()
	}
	b, _ := json.Marshal(v) // string, json.Number, bool, nil: cannot fail
	return b
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// describe names a decoded JSON value's kind for a message: `"5%" is a
// string`.
func describe(v any) string {
	switch v := v.(type) {
	case string:
		if len(v) > 40 {
			v = v[:40] + "..."
		}
		return strconv.Quote(v) + " is a string"
	case json.Number:
		return v.String() + " is a number"
	case bool:
		return strconv.FormatBool(v) + " is a boolean"
	case []any:
		return "a list"
	case object:
		return "an object"
	}
	return fmt.Sprintf("%v", v)
}

// unmarshalText is a type's own refusal without encoding/json's prefix.
func unmarshalText(err error) string {
	return strings.TrimPrefix(err.Error(), "json: ")
}

func minInt(t reflect.Type) int64 { return -1 << (t.Bits() - 1) }
func maxInt(t reflect.Type) int64 { return 1<<(t.Bits()-1) - 1 }
