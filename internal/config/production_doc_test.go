package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/testcert"
)

// TestProductionGuideConfig: the config docs/production.md tells people to
// start from is valid, with the certificate and key files it names read as
// serve reads them (here written at test time where the page says
// /etc/modelgate/tls/).
func TestProductionGuideConfig(t *testing.T) {
	page, err := os.ReadFile("../../docs/production.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindSubmatch(page)
	if m == nil {
		t.Fatal("docs/production.md has no yaml block")
	}
	dir := t.TempDir()
	ca := testcert.NewCA(t, "guide CA")
	for _, name := range []string{"gateway", "admin"} {
		ca.Server(t, name).Files(t, dir, name)
	}
	file := strings.NewReplacer("/etc/modelgate/tls/", dir+"/", "/etc/modelgate/", dir+"/",
		"/var/lib/modelgate/", dir+"/", "/var/log/modelgate/", dir+"/").Replace(string(m[1]))
	path := filepath.Join(dir, "modelgate.yaml")
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := Load(path)
	if err != nil {
		t.Fatalf("the guide's config: %v\n%s", err, file)
	}
	errs := []error{f.CheckListenerFiles()}
	for i, e := range f.EndpointsWithDefaults() {
		errs = append(errs, spec.Prefix(fmt.Sprintf("endpoints[%d]", i), CheckFiles(e)))
	}
	if err := errors.Join(errs...); err != nil {
		t.Errorf("the guide's config names files serve cannot use: %v", err)
	}
	if f.TLS.CertFile == "" || f.Admin.TLS.CertFile == "" || f.Admin.ReadOnlyTokenFile == "" || len(f.Endpoints) == 0 {
		t.Errorf("the guide's config lost what it is there to show (TLS on both listeners, a read-only token, an endpoint): %+v", f)
	}
}
