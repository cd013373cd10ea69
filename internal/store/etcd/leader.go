package etcd

import (
	"context"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/modelgate/modelgate/internal/ctxtime"
	"github.com/modelgate/modelgate/internal/store"
)

// DefaultLeaseTTL is how long a leader that stopped renewing its lease
// (crashed, paused, cut off from etcd) keeps leading before another
// gateway takes over, when state.etcd.lease_ttl says nothing.
const DefaultLeaseTTL = 15 * time.Second

// leaderKey is the store key (under the kv namespace, so that a Commit can
// expect its revision) every candidate's election key is made under.
const leaderKey = "leader"

// Term is one gateway's time as the fleet's leader: its context ends when
// the lease is lost (expired, revoked) or the gateway resigns.
type Term struct {
	// Fence is the store key of the leader's election key and the
	// revision it was created at: a Commit made with store.Fenced(ctx,
	// Fence) fails once another gateway could be leading.
	Fence store.Fence
}

// Elect campaigns for leadership of the fleet under the store's prefix,
// announcing value (the gateway's admin URL) to the others, and calls lead
// with each term won, its context ending with the term. It campaigns again
// after a term ends, until ctx ends. ttl is the lease's time to live.
func (s *Store) Elect(ctx context.Context, ttl time.Duration, value string, lead func(ctx context.Context, t Term)) error {
	secs := int((ttl + time.Second - 1) / time.Second)
	for ctx.Err() == nil {
		began := time.Now()
		err := s.term(ctx, secs, value, lead)
		if err == nil && time.Since(began) < time.Second && !ctxtime.Sleep(ctx, time.Second) {
			return nil // a term that ended at once (its lead failed) is not retried in a loop
		}
		if err != nil && ctx.Err() == nil {
			if errors.Is(err, store.ErrClosed) || s.closed.Load() {
				return nil
			}
			if !ctxtime.Sleep(ctx, time.Second) {
				return nil
			}
		}
	}
	return nil
}

// term waits to win one election and leads until the term ends.
func (s *Store) term(ctx context.Context, ttlSecs int, value string, lead func(context.Context, Term)) error {
	sess, err := concurrency.NewSession(s.cli, concurrency.WithTTL(ttlSecs), concurrency.WithContext(ctx))
	if err != nil {
		return s.mapErr(fmt.Errorf("etcd session: %w", err))
	}
	defer s.release(sess) // the next candidate takes over at once
	e := concurrency.NewElection(sess, s.kvKey(leaderKey))
	if err := s.campaign(ctx, e, value); err != nil {
		return s.mapErr(fmt.Errorf("campaign: %w", err))
	}
	tctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-sess.Done(): // the lease expired or was revoked
		case <-s.done:
		case <-tctx.Done():
		}
		cancel()
	}()
	lead(tctx, Term{Fence: store.Fence{Key: e.Key()[len(s.kvKey("")):], Revision: uint64(e.Rev())}})
	return nil
}

// campaign waits to win the election, or for ctx to end. Campaign itself,
// cancelled, resigns with the client's own context, which never ends while
// the client is open: with etcd unreachable it would hold a gateway told
// to stop until etcd came back. So ctx's end is not waited on beyond
// itself: the campaign is left to end with the client (Close), and the
// session's lease, revoked by release or expiring, takes its key away.
func (s *Store) campaign(ctx context.Context, e *concurrency.Election, value string) error {
	won := make(chan error, 1)
	go func() { won <- e.Campaign(ctx, value) }()
	select {
	case err := <-won:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// release ends sess by revoking its lease, which deletes the keys held on
// it (the election key, the replica record): with a context of its own,
// since the one the session was made with has usually ended (a gateway
// shutting down must still hand over at once, not after the lease's TTL).
func (s *Store) release(sess *concurrency.Session) {
	sess.Orphan()
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	_, _ = s.cli.Revoke(ctx, sess.Lease())
}

// Leader returns the value the fleet's leader announced (its admin URL),
// or "" when no gateway leads.
func (s *Store) Leader(ctx context.Context) (string, error) {
	if err := s.check(ctx); err != nil {
		return "", err
	}
	cctx, cancel := s.call(ctx)
	defer cancel()
	resp, err := s.cli.Get(cctx, s.kvKey(leaderKey)+"/", clientv3.WithFirstCreate()...)
	if err != nil {
		return "", s.mapErr(err)
	}
	if len(resp.Kvs) == 0 {
		return "", nil
	}
	return string(resp.Kvs[0].Value), nil
}

// replicasKey is the store key prefix of the gateways' records.
const replicasKey = "replicas/"

// Announce keeps this gateway's record at replicas/<id> in the store while
// ctx lasts: written at once and every ttl/3 with what info returns then,
// on a lease of ttl, so that a gateway that dies drops out of the list
// within ttl. Read the records with List(ctx, "replicas/").
func (s *Store) Announce(ctx context.Context, ttl time.Duration, id string, info func() []byte) {
	secs := int((ttl + time.Second - 1) / time.Second)
	every := ttl / 3
	for ctx.Err() == nil && !s.closed.Load() {
		sess, err := concurrency.NewSession(s.cli, concurrency.WithTTL(secs), concurrency.WithContext(ctx))
		if err != nil {
			if !ctxtime.Sleep(ctx, time.Second) {
				return
			}
			continue
		}
		s.announce(ctx, sess, every, s.kvKey(replicasKey+id), info)
		s.release(sess)
	}
}

// announce writes the record on sess's lease every interval until the
// session or ctx ends.
func (s *Store) announce(ctx context.Context, sess *concurrency.Session, every time.Duration, key string, info func() []byte) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		cctx, cancel := s.call(ctx)
		_, _ = s.cli.Put(cctx, key, string(info()), clientv3.WithLease(sess.Lease()))
		cancel()
		select {
		case <-t.C:
		case <-sess.Done():
			return
		case <-ctx.Done():
			return
		case <-s.done:
			return
		}
	}
}
