package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// authenticate lets a request through only with "Authorization: Bearer
// <token>" matching the configured token; otherwise it answers 401 and
// the wrapped handler never runs, so nothing changes.
func (s *server) authenticate(next http.Handler) http.Handler {
	// Compare digests, not the raw strings: ConstantTimeCompare returns
	// early on a length mismatch, which would leak the token's length.
	want := sha256.Sum256(s.token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := bearer(r.Header.Get("Authorization"))
		if !ok || len(s.token) == 0 {
			s.unauthorized(w, r, "missing bearer token: send Authorization: Bearer <token>")
			return
		}
		sum := sha256.Sum256([]byte(got))
		if subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			s.unauthorized(w, r, "invalid bearer token")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *server) unauthorized(w http.ResponseWriter, r *http.Request, msg string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="modelgate"`)
	s.writeError(w, r, &statusError{http.StatusUnauthorized, msg})
}

// bearer extracts the token from an Authorization header value; the
// scheme is case-insensitive (RFC 9110).
func bearer(h string) (string, bool) {
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}
