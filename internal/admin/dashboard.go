package admin

import (
	"embed"
	"io/fs"
	"net/http"
)

// web holds the dashboard: plain HTML, CSS and JavaScript written for
// modelgate, no build step, no third-party files.
//
//go:embed web
var web embed.FS

// mountDashboard serves the dashboard's static files at / on mux. They
// hold no data and no secret: the page asks for the admin token and sends
// it as the bearer header on every API call, so the files need none.
func mountDashboard(mux *http.ServeMux, refuse http.HandlerFunc) {
	files, err := fs.Sub(web, "web")
	if err != nil {
		panic("admin: embedded dashboard missing: " + err.Error()) // a build defect, not a runtime condition
	}
	static := http.FileServerFS(files)
	// "/" rather than "GET /": a method in this pattern would make it
	// neither more nor less specific than "/api/v1/", which the mux
	// refuses; the method is checked here instead.
	mux.Handle("/", dashboardHeaders(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			refuse(w, r)
			return
		}
		static.ServeHTTP(w, r)
	})))
}

// dashboardHeaders sets headers that keep the dashboard to itself: no
// framing (clickjacking of the action buttons), no script, style, image or
// connection to anywhere but this origin, and no referrer.
func dashboardHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		next.ServeHTTP(w, r)
	})
}
