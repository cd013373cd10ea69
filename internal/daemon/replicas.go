package daemon

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/modelgate/modelgate/internal/admin"
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
func (d *Daemon) self(now time.Time) admin.Replica {
	return admin.Replica{ID: d.id, AdminURL: d.cfg.AdminURL(d.adminLn.Addr().String()), DataPlane: d.ProxyAddr(),
		Version: version.String(), StartedAt: d.started, LastSeen: now}
}

// replicas answers GET /api/v1/replicas: the records the fleet's gateways
// keep in etcd (cluster mode), or this gateway alone.
type replicas struct{ d *Daemon }

func (r replicas) Replicas(ctx context.Context) ([]admin.Replica, error) {
	d := r.d
	if d.fleet == nil {
		me := d.self(time.Now().UTC())
		me.Leader, me.Self = true, true
		return []admin.Replica{me}, nil
	}
	kvs, err := d.fleet.List(ctx, "replicas/")
	if err != nil {
		return nil, err
	}
	leader, err := d.fleet.Leader(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]admin.Replica, 0, len(kvs))
	for _, kv := range kvs {
		var rep admin.Replica
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
