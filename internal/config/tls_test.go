package config

import (
	"strings"
	"testing"
)

// TestTLSKeys: both listeners' tls blocks and a deployment's decode; a
// half block, an old version and relative backend files are problems
// with their paths.
func TestTLSKeys(t *testing.T) {
	f, err := Parse([]byte(`
tls: {cert_file: gw.crt, key_file: gw.key, client_ca_file: clients.pem, min_version: "1.3"}
admin:
  tls: {cert_file: admin.crt, key_file: admin.key}
endpoints:
  - name: fraud
    deployments:
      - name: blue
        backends: [https://10.0.0.5:8443]
        tls: {ca_file: /etc/ca.pem, cert_file: /etc/c.crt, key_file: /etc/c.key, server_name: blue.models.internal}
`))
	if err != nil {
		t.Fatal(err)
	}
	if f.TLS.ClientCAFile != "clients.pem" || f.TLS.MinVersion != "1.3" || f.Admin.TLS.CertFile != "admin.crt" || !f.Admin.TLS.Enabled() {
		t.Errorf("listener tls: %+v, admin %+v", f.TLS, f.Admin.TLS)
	}
	if d := f.Endpoints[0].Deployments[0]; d.TLS == nil || d.TLS.ServerName != "blue.models.internal" || d.TLS.CAFile != "/etc/ca.pem" {
		t.Errorf("deployment tls: %+v", d.TLS)
	}
	if Default().TLS.Enabled() || Default().Admin.TLS.Enabled() {
		t.Error("TLS on by default")
	}

	_, err = Parse([]byte(`
tls: {cert_file: gw.crt, min_version: "1.1"}
admin:
  tls: {key_file: admin.key}
endpoints:
  - name: fraud
    deployments:
      - name: blue
        backends: [https://10.0.0.5:8443]
        tls: {ca_file: ca.pem, cert_file: /etc/c.crt, insecure_skip_verify: true}
`))
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		"tls.key_file: is required with tls",
		"tls.min_version: \"1.1\" is not accepted: TLS 1.0 and 1.1 are deprecated",
		"admin.tls.cert_file: is required with admin.tls",
		"endpoints[0].deployments[0].tls: cert_file and key_file go together",
		"endpoints[0].deployments[0].tls.ca_file: \"ca.pem\" is not an absolute path",
		"endpoints[0].deployments[0].tls.insecure_skip_verify: set with ca_file",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("problems do not say %q:\n%v", want, err)
		}
	}
}
