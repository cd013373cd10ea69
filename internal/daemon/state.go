package daemon

import (
	"context"
	"fmt"

	"github.com/modelgate/modelgate/internal/config"
	"github.com/modelgate/modelgate/internal/secretfile"
	"github.com/modelgate/modelgate/internal/store"
	"github.com/modelgate/modelgate/internal/store/bolt"
	"github.com/modelgate/modelgate/internal/store/etcd"
	"github.com/modelgate/modelgate/internal/tlsconf"
)

// openState opens the store the config names: the bbolt file at
// state.path, or the etcd cluster of state.etcd (cluster mode). snap is
// nil for etcd, whose backup is the cluster's own snapshot.
func openState(ctx context.Context, cfg *config.File) (st store.Store, snap store.Snapshotter, err error) {
	e := cfg.State.Etcd
	if e == nil {
		b, err := bolt.Open(cfg.State.Path)
		if err != nil {
			return nil, nil, fmt.Errorf("open state: %w", err)
		}
		return b, b, nil
	}
	ec := etcd.Config{Endpoints: e.Endpoints, Prefix: e.Prefix, DialTimeout: e.DialTimeout.D(), Username: e.Username,
		MaxTxnOps: e.MaxTxnOps, MaxRequestBytes: e.MaxRequestBytes}
	if e.PasswordFile != "" {
		if ec.Password, err = secretfile.Read(e.PasswordFile, "etcd password file"); err != nil {
			return nil, nil, fmt.Errorf("state.etcd.password_file: %w", err)
		}
	}
	if e.TLS != nil {
		b, err := tlsconf.NewBackend("state.etcd.tls", e.TLS, nil)
		if err != nil {
			return nil, nil, err
		}
		ec.TLS = b.For("")
	}
	s, err := etcd.Open(ctx, ec)
	if err != nil {
		return nil, nil, fmt.Errorf("open state: %w", err)
	}
	return s, nil, nil
}
