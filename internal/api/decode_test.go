package api

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/modelgate/modelgate/internal/spec"
)

// problems is err's problems as "field: message" lines.
func problems(err error) []string {
	var out []string
	for _, p := range spec.Problems(err) {
		out = append(out, p.Error())
	}
	return out
}

func TestDecodeJSONAcceptsTheAPIsBodies(t *testing.T) {
	var req StartRequest
	body := `{"canary":"green","stages":[5,{"weight":25,"bake":"1m"},100],"progress_deadline":"10m","force":true}`
	if err := DecodeJSON([]byte(body), &req); err != nil {
		t.Fatalf("DecodeJSON: %v", err)
	}
	want := StartRequest{Canary: "green", Force: true, Plan: spec.Plan{
		Stages:           []spec.Stage{{Weight: 500}, {Weight: 2500, Bake: spec.Duration(60e9)}, {Weight: spec.Full}},
		ProgressDeadline: spec.Duration(600e9),
	}}
	if diff := cmp.Diff(want, req); diff != "" {
		t.Errorf("decoded (-want +got):\n%s", diff)
	}
	var w spec.Weights
	if err := DecodeJSON([]byte(`{"blue": 95, "green": 5.5}`), &w); err != nil {
		t.Fatalf("DecodeJSON weights: %v", err)
	}
	if w["blue"] != 9500 || w["green"] != 550 {
		t.Errorf("weights = %v, want blue=95 green=5.5", w)
	}
	w = nil
	if err := DecodeJSON([]byte(`{"blue": "94.5%", "green": "5.5"}`), &w); err != nil {
		t.Fatalf("DecodeJSON weights as strings: %v", err)
	}
	if w["blue"] != 9450 || w["green"] != 550 {
		t.Errorf("weights = %v, want blue=94.5 green=5.5", w)
	}
}

// TestDecodeJSONRefusesAndNamesEveryProblem: each refusal names the field
// at fault, in the order written, and nothing is written to the target.
func TestDecodeJSONRefusesAndNamesEveryProblem(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       []string
	}{
		{"unknown field", `{"canary":"green","canery":"x"}`,
			[]string{`canery: unknown field; did you mean "canary"?`}},
		{"field in another case", `{"Canary":"green"}`,
			[]string{`Canary: unknown field; did you mean "canary"?`}},
		{"unknown field in a stage", `{"canary":"green","stages":[5,{"weight":25,"bak":"1m"}]}`,
			[]string{`stages[1].bak: unknown field; did you mean "bake"?`}},
		{"every problem in order", `{"stable":1,"canary":"green","force":"yes","stages":[5.555]}`,
			[]string{`stable: 1 is a number, want a string`, `force: "yes" is a string, want true or false`,
				`stages[0]: invalid percent "5.555": must be a number from 0 to 100 with at most 2 decimals`}},
		{"duration without a unit", `{"canary":"g","progress_deadline":10}`,
			[]string{`progress_deadline: invalid duration "10": use a number with a unit, e.g. 500ms, 10s, 1m`}},
		{"duration of the wrong kind", `{"canary":"g","progress_deadline":true}`,
			[]string{`progress_deadline: true is a boolean, want a string`}},
		{"key twice", `{"canary":"green","canary":"red"}`, []string{`canary: given twice`}},
		{"line of a multi-line body", "{\n  \"canary\": \"green\",\n  \"force\": 1\n}",
			[]string{`force: 1 is a number, want true or false (line 3)`}},
		{"empty", ``, []string{`the body is empty: send a JSON object`}},
		{"not JSON", "{\"canary\":\n green}", []string{`invalid JSON at line 2, column 2: invalid character 'g' looking for beginning of value`}},
		{"cut short", `{"canary":"gr`, []string{`invalid JSON: the body ends before its value does`}},
		{"two values", `{"canary":"green"} {"canary":"red"}`, []string{`more than one JSON value in the body: send one object`}},
		{"not an object", `["green"]`, []string{`a list, want an object`}},
		{"too deep", `{"canary":"g","stages":[{"weight":5,"gates":[{"type":"error_rate","max":0.1,"x":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}]}]}`,
			[]string{`the body nests more than 32 levels deep`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var req StartRequest
			err := DecodeJSON([]byte(tc.body), &req)
			got := problems(err)
			for i := range got { // the lists of known names are long
				got[i], _, _ = strings.Cut(got[i], " (fields:")
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
			if !reflect.DeepEqual(req, StartRequest{}) {
				t.Errorf("a refused body wrote %+v", req)
			}
		})
	}
}

func TestDecodeJSONNeedsAPointer(t *testing.T) {
	var req StartRequest
	if err := DecodeJSON([]byte(`{}`), req); err == nil || errors.As(err, new(*spec.Problem)) {
		t.Errorf("a non-pointer target: %v, want a plain error", err)
	}
}

// TestJSONNamesMatchYAMLNames: a request body names each field as the
// config file does, so a stage or a deployment written for one works in
// the other.
func TestJSONNamesMatchYAMLNames(t *testing.T) {
	seen := map[reflect.Type]bool{}
	var check func(t reflect.Type, path string)
	check = func(rt reflect.Type, path string) {
		for rt.Kind() == reflect.Pointer || rt.Kind() == reflect.Slice || rt.Kind() == reflect.Map {
			rt = rt.Elem()
		}
		if rt.Kind() != reflect.Struct || seen[rt] || rt.PkgPath() == "time" {
			return
		}
		seen[rt] = true
		for i := range rt.NumField() {
			f := rt.Field(i)
			if !f.IsExported() {
				continue
			}
			jsonName, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			yamlTag := f.Tag.Get("yaml")
			yamlName, yamlOpts, _ := strings.Cut(yamlTag, ",")
			if f.Anonymous && jsonName == "" && strings.Contains(yamlOpts, "inline") {
				check(f.Type, path)
				continue
			}
			if jsonName != yamlName && !(jsonName == "-" && yamlName == "-") {
				t.Errorf("%s%s.%s: json %q, yaml %q", path, rt.Name(), f.Name, jsonName, yamlName)
			}
			check(f.Type, path)
		}
	}
	for _, v := range []any{StartRequest{}, spec.Deployment{}, spec.Endpoint{}, spec.Weights{}} {
		check(reflect.TypeOf(v), "")
	}
	if len(seen) < 5 {
		t.Fatalf("walked %d struct types; the walk is broken", len(seen))
	}
}

func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{
		`{"canary":"green","stages":[5,{"weight":25,"bake":"1m"},100]}`,
		`{"canary":"green","canary":"red"}`, `[1,2]`, `{"stages":[{"gates":[{"type":"error_rate","max":0.1}]}]}`,
		`{"stable":1e400}`, `{"force":null}`, `"x"`, `{"stages":[[[[]]]]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var req StartRequest
		err := DecodeJSON(b, &req)
		if err != nil {
			for _, p := range spec.Problems(err) {
				if p.Message == "" {
					t.Fatalf("a problem without a message: %+v", p)
				}
			}
			if !reflect.DeepEqual(req, StartRequest{}) {
				t.Fatalf("a refused body wrote %+v", req)
			}
			return
		}
		var w spec.Weights
		_ = DecodeJSON(b, &w)
	})
}
