package daemon

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/modelgate/modelgate/internal/admin"
	"github.com/modelgate/modelgate/internal/api"
	"github.com/modelgate/modelgate/internal/fleet"
	"github.com/modelgate/modelgate/internal/tlsconf"
	"github.com/modelgate/modelgate/internal/version"
)

// replicaID names this gateway among the fleet's: hostname, process id
// and a random part (two gateways may run in one process, as in tests).
func replicaID() string {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	var r [3]byte
	_, _ = rand.Read(r[:])
	return fmt.Sprintf("%s-%d-%x", host, os.Getpid(), r)
}

// self is this gateway's record, seen now.
func (d *Daemon) self(now time.Time) api.Replica {
	return api.Replica{ID: d.id, AdminURL: d.cfg.AdminURL(d.adminLn.Addr().String()), DataPlane: d.ProxyAddr(),
		Version: version.String(), StartedAt: d.started, LastSeen: now}
}

// replicas answers GET /api/v1/replicas: the records the fleet's gateways
// keep in etcd (cluster mode), or this gateway alone.
type replicas struct{ d *Daemon }

// DataPlane is this gateway's data plane address (admin.DataPlaner).
func (r replicas) DataPlane() string { return r.d.ProxyAddr() }

func (r replicas) Replicas(ctx context.Context) ([]api.Replica, error) {
	d := r.d
	if d.fleet == nil {
		me := d.self(time.Now().UTC())
		me.Leader, me.Self = true, true
		return []api.Replica{me}, nil
	}
	kvs, err := d.fleet.List(ctx, "replicas/")
	if err != nil {
		return nil, err
	}
	leader, err := d.fleet.Leader(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]api.Replica, 0, len(kvs))
	for _, kv := range kvs {
		var rep api.Replica
		if err := json.Unmarshal(kv.Value, &rep); err != nil {
			continue // a record of another version: shown by its own replica
		}
		rep.Leader = rep.AdminURL == leader
		rep.Self = rep.ID == d.id
		out = append(out, rep)
	}
	return out, nil
}

// announce keeps this gateway's record in the fleet's list.
func (d *Daemon) announce(ctx context.Context) {
	d.fleet.Announce(ctx, d.cfg.State.Etcd.LeaseTTL.D(), d.id, func() []byte {
		b, _ := json.Marshal(d.self(time.Now().UTC()))
		return b
	})
}

// newPeerClient is how this gateway calls the other replicas' admin APIs
// (cluster mode): with the admin token every replica shares, over
// state.etcd.peer_tls for https admin URLs.
func (d *Daemon) newPeerClient() (*fleet.Client, error) {
	peerTLS, err := tlsconf.NewBackend("state.etcd.peer_tls", d.cfg.State.Etcd.PeerTLS, nil)
	if err != nil {
		return nil, err
	}
	return fleet.NewClient(peerTLS.For(""), d.tokens.admin), nil
}

// newGatherer is the leader's evidence gatherer (cluster mode): it pulls
// from the replicas listed in etcd.
func (d *Daemon) newGatherer() *fleet.Gatherer {
	e := d.cfg.State.Etcd
	return fleet.NewGatherer(fleet.GatherOptions{Self: d.id, Peers: d.peers, Client: d.peerClient,
		Interval: e.EvidenceInterval.D(), Grace: e.EvidenceGrace.D(), Logger: d.log.With("component", "fleet")})
}

// peers are the fleet's replicas as etcd lists them.
func (d *Daemon) peers(ctx context.Context) ([]fleet.Peer, error) {
	rs, err := replicas{d}.Replicas(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]fleet.Peer, 0, len(rs))
	for _, r := range rs {
		out = append(out, fleet.Peer{ID: r.ID, AdminURL: r.AdminURL})
	}
	return out, nil
}

// reporter answers the leader's evidence pulls (cluster mode; nil
// otherwise: the route answers 404).
func (d *Daemon) reporter() admin.Evidence {
	if d.fleet == nil {
		return nil
	}
	return fleet.NewReporter(d.id, d.telemetry, shadowCounts{d.shadows}, nil)
}
