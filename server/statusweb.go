package server

import (
	"net"
	"net/http"
	"net/url"
	"strings"
)

// ownHTTPURL is the base URL of this member's status port as it advertises
// it in its heartbeats: --http-advertise when given, else the --http-listen host when it names one, else no
// host (":PORT"), which the reader completes with the host of the member's
// licensing address (completeHTTPURL).
func (s *Server) ownHTTPURL() string {
	if s.cfg.HTTPAdvertise != "" {
		u, _ := url.Parse(s.cfg.HTTPAdvertise) // checked by validate
		return u.Scheme + "://" + u.Host
	}
	scheme := "http"
	if s.cfg.HTTPTLS {
		scheme = "https"
	}
	host, port, err := net.SplitHostPort(s.HTTPAddr())
	if err != nil {
		return ""
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = ""
	}
	if lh, _, err := net.SplitHostPort(s.cfg.HTTPListen); err == nil && lh != "" && net.ParseIP(lh) == nil {
		host = lh // a host name given in --http-listen, kept as written
	}
	return scheme + "://" + joinHost(host, port)
}

func joinHost(host, port string) string {
	if host == "" {
		return ":" + port
	}
	return net.JoinHostPort(host, port)
}

// completeHTTPURL fills in the host of an advertised URL that has none
// from the member's licensing address (HOST:PORT).
func completeHTTPURL(raw, grpcAddr string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return ""
	}
	if u.Hostname() == "" {
		host, _, err := net.SplitHostPort(grpcAddr)
		if err != nil || host == "" {
			return ""
		}
		u.Host = net.JoinHostPort(host, u.Port())
	}
	return u.Scheme + "://" + u.Host
}

// allowCORS lets the dashboard of another member of this cluster read a
// status endpoint from the browser (GET only, no credentials): a page
// served by a member that dies keeps polling the others. Only the
// members' advertised HTTP origins are allowed; any other origin gets no
// CORS header, so the browser withholds the answer from its script.
func (s *Server) allowCORS(w http.ResponseWriter, r *http.Request) {
	origin := r.Header.Get("Origin")
	w.Header().Add("Vary", "Origin")
	if origin == "" || !s.memberOrigin(origin) {
		return
	}
	w.Header().Set("Access-Control-Allow-Origin", origin)
}

// memberOrigin reports whether origin is the HTTP origin of a member of
// this cluster (this one included), as the status lists them.
func (s *Server) memberOrigin(origin string) bool {
	origin = strings.TrimSuffix(strings.ToLower(origin), "/")
	for _, u := range s.memberHTTPURLs() {
		if strings.ToLower(u) == origin {
			return true
		}
	}
	return false
}

// memberHTTPURLs are the known HTTP base URLs of the formed members.
func (s *Server) memberHTTPURLs() []string {
	urls := s.mon.PeerHTTPURLs()
	var out []string
	for _, m := range s.cluster().GetMembers() {
		u := urls[m.GetName()]
		if m.GetName() == s.cfg.Name {
			u = s.mon.HTTPURL()
		}
		if u = completeHTTPURL(u, m.GetGrpcAddress()); u != "" {
			out = append(out, u)
		}
	}
	return out
}
