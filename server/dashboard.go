package server

import (
	"embed"
	"io/fs"
	"net/http"
)

// The dashboard is plain HTML, CSS and JavaScript that polls /v1/status from
// the browser. It is embedded so every member serves it with no build step
// and no external URLs: an operator on an isolated network still gets it.
//
//go:embed dashboard
var dashboardFiles embed.FS

// dashboardHandler serves the page at / and its assets; any other path is 404
// (http.FileServerFS answers 404 for files that are not embedded).
//
// It is registered as "/" rather than "GET /" and checks the method itself:
// "GET /" would conflict with the method-less "/debug/pprof/" patterns of
// pprof builds, and ServeMux panics on conflicting patterns.
func dashboardHandler() http.Handler {
	sub, err := fs.Sub(dashboardFiles, "dashboard")
	if err != nil {
		panic(err) // the directory is embedded above; this cannot fail
	}
	files := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		// Embedded files carry no modification time, so ask browsers to
		// revalidate: after an upgrade they must not keep an old script.
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}
