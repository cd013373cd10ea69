package policy

// Failure is how an attempt to get a backend's answer failed.
type Failure uint8

const (
	// FailDial: the connection could not be opened. Nothing was sent.
	FailDial Failure = iota
	// FailStale: a kept-alive connection broke before any byte of the
	// answer (EOF or reset): the backend had closed it while idle, or it
	// crashed while working on the request; which of the two is unknown.
	FailStale
	// FailOther: any other failure (timeout, a broken answer, a connection
	// limit).
	FailOther
)

// Action is what to do after a failed attempt.
type Action uint8

const (
	// GiveUp: answer the client with the failure.
	GiveUp Action = iota
	// RetryFresh: send the request again to the same backend on a new
	// connection.
	RetryFresh
	// RetryOther: send the request to another healthy backend of the
	// deployment.
	RetryOther
)

// Attempts is the retry state of one request: which retries it has used.
// The zero value is a request's first attempt.
type Attempts struct {
	fresh, other bool
}

// Next decides what follows a failed attempt, as Go's http.Transport
// does: a request of which nothing was sent (a failed connect) may go to
// another backend, once; one that may have reached the backend (a stale
// connection) is sent again only if it is safe to repeat (Replayable), on a
// new connection to the same backend, once; then a failed connect of that
// retry may still go to another backend. Anything else is answered with the
// failure. Both engines follow it, so a request gets the same answer
// whichever engine serves it.
func (a *Attempts) Next(f Failure, replayable bool) Action {
	switch {
	case f == FailDial && !a.other:
		a.other = true
		return RetryOther
	case f == FailStale && replayable && !a.fresh:
		a.fresh = true
		return RetryFresh
	}
	return GiveUp
}

// Replayable reports whether a request may be sent again after it may
// have reached the backend: its method is safe (GET, HEAD, OPTIONS,
// TRACE), or the client marked it with an Idempotency-Key (or
// X-Idempotency-Key) header, Go's rule. A POST to a model is not: a
// model server that crashed mid-prediction would get it twice.
func Replayable(method []byte, idempotencyKey bool) bool {
	switch string(method) {
	case "GET", "HEAD", "OPTIONS", "TRACE":
		return true
	}
	return idempotencyKey
}

// Idempotency-Key header names, for the engines' lookup.
var (
	HeaderIdempotencyKey  = []byte("Idempotency-Key")
	HeaderXIdempotencyKey = []byte("X-Idempotency-Key")
)
