package server

import (
	"encoding/json"
	"net/http"

	"google.golang.org/protobuf/encoding/protojson"
)

// debugHandlers adds profiling endpoints in builds tagged pprof.
var debugHandlers = func(*http.ServeMux) {}

// httpHandler serves the ops endpoints. /v1/status carries the same picture
// as `triadctl cluster status`.
func (s *Server) httpHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		s.allowCORS(w, r)
		w.Write([]byte("ok\n"))
	})
	// /readyz: 200 "ready: operational" or "ready: partially operational";
	// 503 "not ready: not operational (why)" — the status word of
	// `triadctl cluster status`, whose exit code says the same (0, 1, 2).
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		s.allowCORS(w, r)
		ok, word := s.ready()
		if !ok {
			http.Error(w, "not ready: "+word, http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready: " + word + "\n"))
	})
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		s.allowCORS(w, r)
		b, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(s.ClusterStatus(r.Context()))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		var v any
		json.Unmarshal(b, &v)
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(v)
	})
	mux.HandleFunc("GET /v1/history/{kind}", s.historyHTTP)
	mux.Handle("/", dashboardHandler())
	mux.Handle("GET /metrics", s.metrics.handler())
	debugHandlers(mux)
	return mux
}
