package admin

import (
	"net/http"

	"github.com/modelgate/modelgate/internal/api"
)

// DataPlaner is implemented by a Replicas that knows this gateway's data
// plane address (host:port), named in the answer to a request that was
// meant for the data plane but sent to the admin listener.
type DataPlaner interface {
	DataPlane() string
}

// notAPI answers a request the admin listener does not take: a method
// other than GET or HEAD outside /api/v1 and /debug/pprof, most often a
// prediction POSTed to the admin port. 405, naming the data plane.
func (s *server) notAPI(w http.ResponseWriter, r *http.Request) {
	var dataPlane string
	if dp, ok := s.replicas.(DataPlaner); ok {
		dataPlane = dp.DataPlane()
	}
	w.Header().Set("Allow", "GET, HEAD")
	writeJSON(w, http.StatusMethodNotAllowed, api.ErrorBody{Error: notAPIMessage(r.Method, r.URL.Path, dataPlane)})
}

// notAPIMessage is notAPI's error text.
func notAPIMessage(method, path, dataPlane string) string {
	msg := "method " + method + " not allowed on " + path + ": this is modelgate's admin API and dashboard (the API is under /api/v1/); "
	if dataPlane == "" {
		return msg + "send predictions to the data plane (listen in the config)"
	}
	return msg + "send predictions to the data plane at " + dataPlane + path
}
