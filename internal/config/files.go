package config

import (
	"errors"
	"fmt"

	"github.com/modelgate/modelgate/internal/secretfile"
	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/tlsconf"
)

// CheckFiles reads the files endpoint e names (its override secret, its
// deployments' TLS certificates and CAs) as applying it would, and returns
// a problem for each one that cannot be used. `config validate` checks a
// file with it; apply checks each endpoint before committing anything.
func CheckFiles(e spec.Endpoint) error {
	return errors.Join(checkOverrideSecret(e), checkDeploymentTLS(e))
}

// checkOverrideSecret reads the endpoint's override secret file, if it
// names one, before anything is committed: the data plane reads it again
// when the routes are set, and a file it cannot use must refuse the
// change rather than leave it stored but not served.
func checkOverrideSecret(e spec.Endpoint) error {
	path := e.Override.Secret()
	if path == "" {
		return nil
	}
	if _, err := secretfile.Read(path, "secret file"); err != nil {
		return spec.Problemf("override.secret_file", "%v", err)
	}
	return nil
}

// checkDeploymentTLS reads the tls files of every deployment with an
// https backend before anything is committed, as checkOverrideSecret does:
// the data plane and the shadows read them again when the routes are set.
func checkDeploymentTLS(e spec.Endpoint) error {
	var errs []error
	for i, d := range e.Deployments {
		if err := CheckTLSFiles(d); err != nil {
			errs = append(errs, spec.Prefix(fmt.Sprintf("deployments[%d].tls", i), err))
		}
	}
	return errors.Join(errs...)
}

// CheckTLSFiles reads one deployment's tls files as the connections to
// its backends would; nil when it has none.
func CheckTLSFiles(d spec.Deployment) error {
	if d.TLS == nil {
		return nil
	}
	if _, err := tlsconf.NewBackend("", d.TLS, nil); err != nil {
		return spec.Problemf("", "%v", err)
	}
	return nil
}
