package config

import (
	"testing"

	"github.com/modelgate/modelgate/internal/spec"
)

// TestSyntaxErrorLine: a YAML syntax error is reported at the bad line,
// not at the line where the block it breaks starts (yaml.v3's), and a tab
// in the indentation is named.
func TestSyntaxErrorLine(t *testing.T) {
	for _, tc := range []struct{ name, input, want string }{
		{"key out of its mapping", "listen: 127.0.0.1:8080\nadmin:\n  listen: 127.0.0.1:8081\n token_file: x\n",
			"invalid YAML: line 4: did not find expected key: check its indentation against the block that starts at line 3"},
		{"item under-indented", "listen: 127.0.0.1:8080\nendpoints:\n  - name: fraud\n   deployments: []\n",
			"invalid YAML: line 4: did not find expected '-' indicator: check its indentation against the block that starts at line 2"},
		{"tab", "listen: 127.0.0.1:8080\nadmin:\n\tlisten: 127.0.0.1:8081\n",
			"invalid YAML: line 3: a tab in the indentation: YAML indents with spaces only; replace the tab with spaces"},
		{"yaml's line is right", "endpoints:\n  - name: fraud\n    deployments:\n     - name: blue\n        backends: [http://x]\n",
			"invalid YAML: line 5: mapping values are not allowed in this context"},
		{"one line", `{"listen": 1`, "invalid YAML: line 1: did not find expected ',' or '}'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.input))
			ps := spec.Problems(err)
			if len(ps) != 1 || ps[0].Error() != tc.want {
				t.Errorf("Parse = %v\nwant   %s", err, tc.want)
			}
		})
	}
}
