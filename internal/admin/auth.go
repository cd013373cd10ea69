package admin

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/modelgate/modelgate/internal/api"
	"github.com/modelgate/modelgate/internal/authtoken"
)

type tokenKey struct{}

// tokenMatch is what the token the request was authenticated with may do.
func tokenMatch(r *http.Request) authtoken.Match {
	m, _ := r.Context().Value(tokenKey{}).(authtoken.Match)
	return m
}

// tokenKind is the kind of token the request was authenticated with.
func tokenKind(r *http.Request) authtoken.Kind { return tokenMatch(r).Kind }

// readOnly reports whether the request presented the read-only token.
func readOnly(r *http.Request) bool { return tokenKind(r) == authtoken.ReadOnly }

// authenticate lets a request through only with "Authorization: Bearer
// <token>" naming a token of the set; otherwise it answers 401 and the
// wrapped handler never runs, so nothing changes. The read-only token
// passes only for reads (GET, HEAD) that expose no secret: anything else
// is answered 403 and likewise changes nothing. A replaced token still in
// its overlap passes with a Warning header saying when it stops.
func (s *server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := bearer(r.Header.Get("Authorization"))
		if !ok {
			s.unauthorized(w, r, "missing bearer token: send Authorization: Bearer <token>")
			return
		}
		m := s.tokens.Check(got)
		if m.Kind == authtoken.None {
			s.unauthorized(w, r, "invalid bearer token: read the token from its file again (a replaced token is refused once admin.token_overlap has passed)")
			return
		}
		if m.Kind == authtoken.ReadOnly {
			if why := readOnlyRefusal(r); why != "" {
				s.writeError(w, r, &statusError{http.StatusForbidden, why})
				return
			}
		}
		w.Header().Set(api.TokenKindHeader, m.Kind.String())
		if d, ok := s.backend.(interface{ Degraded() string }); ok {
			if why := d.Degraded(); why != "" {
				// Every answer says so, so that the dashboard can show it
				// on whatever page it is.
				w.Header().Set(api.DegradedHeader, strings.ReplaceAll(why, "\n", " "))
			}
		}
		if !m.Until.IsZero() {
			// RFC 9111's Warning is obsolete but still what clients print;
			// the CLI shows it on standard error.
			w.Header().Set("Warning", fmt.Sprintf(`299 modelgate "this %s token was replaced and is accepted until %s: read the new one from its file"`,
				m.Kind, m.Until.UTC().Format(time.RFC3339)))
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), tokenKey{}, m)))
	})
}

// readOnlyRefusal is why the read-only token may not make request r, or
// "" when it may: it reads (GET or HEAD), and what it reads holds no
// secret (a state backup holds the webhooks' signing secrets; profiles
// show the process's internals).
func readOnlyRefusal(r *http.Request) string {
	switch {
	case r.Method != http.MethodGet && r.Method != http.MethodHead:
		return fmt.Sprintf("the read-only token may only read: %s %s changes the gateway and needs the admin token (admin.token_file)", r.Method, r.URL.Path)
	case r.URL.Path == "/api/v1/state/backup":
		return "the read-only token may not take a state backup: it holds the webhooks' signing secrets; use the admin token (admin.token_file)"
	case strings.HasPrefix(r.URL.Path, "/debug/pprof/"):
		return "the read-only token may not profile the process: profiles show its internals; use the admin token (admin.token_file)"
	}
	return ""
}

// tokenInfo answers GET /api/v1/token: the kind of token presented and, for
// a replaced one, until when it is accepted.
func (s *server) tokenInfo(w http.ResponseWriter, r *http.Request) {
	m := tokenMatch(r) // as authenticated: a rotation since changes nothing here
	info := api.TokenInfo{Kind: m.Kind.String()}
	if !m.Until.IsZero() {
		u := m.Until.UTC()
		info.ValidUntil = &u
	}
	writeJSON(w, http.StatusOK, info)
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
