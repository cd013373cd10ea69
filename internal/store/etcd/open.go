package etcd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// SchemaVersion is the layout of the keys this modelgate reads and writes
// (see the package comment). A fleet's prefix records the version it was
// created with; a gateway of another version refuses to start on it, so
// that a rolling upgrade to an incompatible layout stops at the first
// replica instead of corrupting the state the others read.
const SchemaVersion = "1"

// Config says how to reach the cluster.
type Config struct {
	Endpoints   []string
	Prefix      string
	DialTimeout time.Duration
	// TLS, when set, is used for https endpoints.
	TLS                *tls.Config
	Username, Password string
	// MaxTxnOps and MaxRequestBytes are the cluster's --max-txn-ops and
	// --max-request-bytes; zero: etcd's defaults (128, 1.5 MiB).
	MaxTxnOps, MaxRequestBytes int
}

// Open connects to the cluster, checks (or, on a new prefix, records) the
// schema version, and returns the store, which owns its client. It fails
// when no member answers within DialTimeout, with the endpoints it tried.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	cli, err := clientv3.New(clientv3.Config{
		// The client sends up to what the cluster takes (its default of
		// 2 MiB would cut a larger limit short).
		MaxCallSendMsgSize: max(cfg.MaxRequestBytes, DefaultMaxRequestBytes) + 1<<20,
		Endpoints:          cfg.Endpoints,
		DialTimeout:        cfg.DialTimeout,
		TLS:                cfg.TLS,
		Username:           cfg.Username,
		Password:           cfg.Password,
		Logger:             zap.NewNop(),
		// A member that stops answering is noticed within a few seconds,
		// and the client moves to another.
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: cfg.DialTimeout,
	})
	if err != nil {
		return nil, fmt.Errorf("etcd %v: %w", cfg.Endpoints, err)
	}
	s := New(cli, cfg.Prefix, true)
	s.timeout = cfg.DialTimeout
	if cfg.MaxTxnOps > 0 {
		s.maxTxnOps = cfg.MaxTxnOps
	}
	if cfg.MaxRequestBytes > 0 {
		s.maxRequestBytes = cfg.MaxRequestBytes
	}
	cctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	if err := s.checkSchema(cctx); err != nil {
		cli.Close()
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("etcd %v: no member answered within %v (state.etcd.dial_timeout): are they running and reachable from here?", cfg.Endpoints, cfg.DialTimeout)
		}
		return nil, err
	}
	return s, nil
}

func (s *Store) schemaKey() string { return s.prefix + "schema" }

// checkSchema records SchemaVersion under a new prefix, or checks the one
// recorded.
func (s *Store) checkSchema(ctx context.Context) error {
	key := s.schemaKey()
	resp, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, SchemaVersion)).Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return fmt.Errorf("etcd: check the schema version at %s: %w", key, err)
	}
	if resp.Succeeded {
		return nil
	}
	kvs := resp.Responses[0].GetResponseRange().GetKvs()
	if len(kvs) == 1 && string(kvs[0].Value) == SchemaVersion {
		return nil
	}
	var got string
	if len(kvs) == 1 {
		got = string(kvs[0].Value)
	}
	return fmt.Errorf("etcd prefix %s holds modelgate state of schema version %q, and this modelgate reads version %q: run the version the other replicas run, or give this one a prefix of its own (state.etcd.prefix)", s.prefix, got, SchemaVersion)
}
