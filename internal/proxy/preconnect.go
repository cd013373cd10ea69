package proxy

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelgate/modelgate/third_party/gnet"
)

// preconnectPerBackend is how many connections Preconnect opens to each
// backend on the goroutine path (the loops open one each).
const preconnectPerBackend = 4

// Preconnect opens connections to every backend of the endpoint's
// deployment before it serves live traffic, and keeps them idle for its
// first requests: a canary whose first requests paid for new connections
// looked slower than a stable whose connections were warm. On a server
// with event loops each loop that has served a client opens one per
// backend (a loop uses its own connections; a gateway that has served the
// stable for a while has them all); without loops, or for a deployment
// with an https backend, the goroutine path opens preconnectPerBackend. Every
// connection counts against the backend's connection limit
// (maxConnsPerBackend), so Preconnect opens fewer, or none, at it. It
// returns the
// number opened once every dial has ended or ctx is done; a failed dial is
// not an error (the backend's first request will try again and count the
// failure then). An unknown endpoint or deployment opens none.
func (s *Server) Preconnect(ctx context.Context, endpoint, dep string) int {
	rt := s.routes.Load()
	if rt == nil {
		return 0
	}
	ep := rt.endpoints[endpoint]
	if ep == nil {
		return 0
	}
	var d *deployment
	for _, x := range ep.deps {
		if x.name == dep {
			d = x
		}
	}
	if d == nil {
		return 0
	}
	deadline := time.Now().Add(maxDialTimeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	var opened atomic.Int32
	var wg sync.WaitGroup
	open := func(f func() bool) {
		wg.Go(func() {
			if f() {
				opened.Add(1)
			}
		})
	}
	for _, b := range d.pool.backends {
		if s.loops != nil && d.pool.loopable() {
			for _, ls := range s.loops.loopStates() {
				if b.conns.reserve() {
					open(func() bool { return s.loops.preconnect(ls, b, deadline) })
				}
			}
			continue
		}
		for range preconnectPerBackend {
			if b.conns.reserve() {
				open(func() bool { return b.conns.preconnect(deadline) })
			}
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	return int(opened.Load())
}

// preconnect opens a connection in a slot already reserved and puts it
// idle in the pool; false (the slot freed) when the dial fails.
func (p *connPool) preconnect(deadline time.Time) bool {
	c, err := p.connect(deadline)
	if err != nil {
		p.freeSlot()
		return false
	}
	p.release(c, time.Now().UnixNano())
	return true
}

// loopStates returns the states of the loops that have held a
// connection: those a client's requests can run on.
func (l *evloops) loopStates() []*loopState {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]*loopState, 0, len(l.states))
	for _, ls := range l.states {
		out = append(out, ls)
	}
	return out
}

// preconnect opens a connection to b in a slot already reserved and
// enrolls it in ls's loop, which keeps it idle (OnOpen); false (the slot
// freed) when the dial or the enrolment fails.
func (l *evloops) preconnect(ls *loopState, b *backend, deadline time.Time) bool {
	p := b.conns
	timeout := min(time.Until(deadline), maxDialTimeout)
	if timeout <= 0 {
		p.freeSlot()
		return false
	}
	c, err := p.dial(p.addr, timeout)
	if err == nil {
		if _, tcp := c.(*net.TCPConn); !tcp {
			_ = c.Close()
			err = errors.New("event loop: backend connection is not TCP")
		}
	}
	if err != nil {
		p.freeSlot()
		return false
	}
	ch, err := ls.el.Enroll(gnet.NewContext(context.Background(), &backConn{ls: ls, b: b}), c)
	if err == nil {
		err = (<-ch).Err
	}
	if err != nil {
		// Not registered: no OnOpen, so nothing else frees the slot.
		_ = c.Close()
		p.freeSlot()
		return false
	}
	return true
}
