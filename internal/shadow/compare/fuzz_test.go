package compare

import (
	"encoding/json"
	"testing"

	"github.com/modelgate/modelgate/internal/spec"
)

var fuzzSeeds = []string{
	`{"predictions":[1,2.5,NaN,Infinity,-Infinity,"NaN",[1,[2]],{"label":"a","score":0.5}]}`,
	`{"outputs":[{"name":"p","shape":[2,2],"datatype":"FP32","data":[[0.1,0.9],[0.8,0.2]]},{"name":"l","shape":[2],"data":[1,0]}]}`,
	`{"outputs":[{"name":"p","shape":[-1,99999999999],"data":[1]}]}`,
	`{"choices":[{"index":0,"message":{"content":"Hello \u00e9 \ud83d\ude00"}},{"index":1,"text":"x"}]}`,
	"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: [DONE]\n\n",
	`{"result":{"scores":[0.1,0.9],"label":"spam"},"items":[{"score":1}]}`,
	`[[[[[]]]]]`, `"\ud800"`, `-0`, `1e999`, `plain text`, ``,
}

// FuzzCompare checks that Compare never panics, that a match is always a
// comparison, that an answer compared with itself never mismatches, and
// that the tolerant parser accepts all valid JSON.
func FuzzCompare(f *testing.F) {
	for i, l := range fuzzSeeds {
		f.Add([]byte(l), []byte(fuzzSeeds[(i+1)%len(fuzzSeeds)]), uint8(i), uint8(i))
		f.Add([]byte(l), []byte(l), uint8(i), uint8(i+3))
	}
	f.Fuzz(func(t *testing.T, live, shadow []byte, proto, comparator uint8) {
		cfg := spec.Compare{
			Protocol:   spec.Protocols[int(proto)%len(spec.Protocols)],
			Comparator: spec.Comparators[int(comparator)%len(spec.Comparators)],
		}
		switch cfg.Protocol {
		case spec.ProtocolJSON:
			cfg.Paths = []string{"result.scores", "items.#.score"}
		case spec.ProtocolOpenAI, spec.ProtocolRaw:
			if m := modes[cfg.Comparator]; m == modeNumeric || m == modeLabel || m == modeArgmax {
				cfg.Comparator = spec.ComparatorExact
			}
		}
		if comparator&0x80 != 0 {
			cfg.Comparator = "" // default by protocol
		}
		c, err := New(cfg)
		if err != nil {
			t.Fatalf("New(%+v) = %v", cfg, err)
		}
		l := Response{Status: 200, Body: live}
		s := Response{Status: 200, Body: shadow}
		if proto&0x80 != 0 {
			l.ContentType, s.ContentType = "text/event-stream", "text/event-stream"
		}
		r := c.Compare(l, s)
		if r.Match && !r.Compared {
			t.Fatalf("Compare = %+v: a match that was not compared", r)
		}
		if len(r.Live) > 8*maxShort || len(r.Shadow) > 8*maxShort {
			t.Fatalf("Compare rendered %d and %d bytes, want them short", len(r.Live), len(r.Shadow))
		}
		if self := c.Compare(l, l); self.Compared && !self.Match {
			t.Fatalf("Compare(x, x) = %+v, want a match or no comparison", self)
		}
		if json.Valid(live) {
			d := getDoc()
			defer putDoc(d)
			if err := d.parse(live); err != nil {
				t.Fatalf("parse(%q) = %v, but it is valid JSON", live, err)
			}
		}
	})
}

// FuzzSSEAssemble checks that assembling any stream never panics and that
// every choice appears once, in index order.
func FuzzSSEAssemble(f *testing.F) {
	f.Add([]byte("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\ndata: [DONE]\n\n"))
	f.Add([]byte("event: x\r\ndata: {\"choices\":[{\"index\":1,\"text\":\"b\"},{\"text\":\"c\"}]}\r\ndata: \r\n\r\n: comment\n"))
	f.Add([]byte("data: {\"choices\":null}\n\ndata: {\"choices\":[{\"index\":1e9}]}\n\n"))
	f.Add([]byte("data: {\n" + "data: \"choices\":[]}\n\n"))
	f.Add([]byte("data"))
	f.Fuzz(func(t *testing.T, body []byte) {
		cs, _, err := assembleSSE(body)
		if err != nil {
			return
		}
		for i := 1; i < len(cs); i++ {
			if cs[i].index <= cs[i-1].index {
				t.Fatalf("assembleSSE(%q): choices %d and %d out of order", body, cs[i-1].index, cs[i].index)
			}
		}
	})
}
