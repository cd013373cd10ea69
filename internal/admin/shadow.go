package admin

import "net/http"

func (s *server) shadowReport(w http.ResponseWriter, r *http.Request) {
	window, err := parseWindow(r.URL.Query().Get("window"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	rep, err := s.shadows.Report(r.Context(), r.PathValue("ep"), window)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}
