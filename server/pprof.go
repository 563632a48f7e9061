//go:build pprof

package server

import (
	"net/http"
	"net/http/pprof"
)

// Profiling endpoints, only in binaries built with `-tags pprof`
// (performance work; never in release builds).
func init() {
	debugHandlers = func(mux *http.ServeMux) {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
}
