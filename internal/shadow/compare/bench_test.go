package compare

import (
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/modelgate/modelgate/internal/spec"
)

// benchBodies returns a KServe v1 answer of 100 floats and a shadow answer
// within the default tolerance of it.
func benchBodies() (live, shadow Response) {
	r := rand.New(rand.NewPCG(1, 2))
	l, s := []byte(`{"predictions":[`), []byte(`{"predictions":[`)
	for i := range 100 {
		if i > 0 {
			l, s = append(l, ','), append(s, ',')
		}
		v := r.Float64()
		l = strconv.AppendFloat(l, v, 'g', -1, 64)
		s = strconv.AppendFloat(s, v*(1+1e-7), 'g', -1, 64)
	}
	l, s = append(l, "]}"...), append(s, "]}"...)
	return Response{Status: 200, ContentType: "application/json", Body: l}, Response{Status: 200, ContentType: "application/json", Body: s}
}

// BenchmarkCompareKServeNumeric compares two KServe v1 answers of 100
// floats with the numeric comparator (protocol detected).
//
//	go test -run '^$' -bench CompareKServeNumeric -benchmem ./internal/shadow/compare/
func BenchmarkCompareKServeNumeric(b *testing.B) {
	c, err := New(spec.Compare{})
	if err != nil {
		b.Fatal(err)
	}
	live, shadow := benchBodies()
	b.SetBytes(int64(len(live.Body) + len(shadow.Body)))
	b.ReportAllocs()
	for b.Loop() {
		if r := c.Compare(live, shadow); !r.Match {
			b.Fatalf("Compare = %+v, want a match", r)
		}
	}
}
