package server

import (
	"strings"
	"testing"
)

func TestCompleteHTTPURL(t *testing.T) {
	for _, tc := range []struct{ raw, grpc, want string }{
		{"http://:4080", "10.0.0.5:4085", "http://10.0.0.5:4080"},
		{"https://:4080", "lic1.example.com:4085", "https://lic1.example.com:4080"},
		{"http://:4080", "[fd00::5]:4085", "http://[fd00::5]:4080"},
		{"http://10.1.1.1:8080", "10.0.0.5:4085", "http://10.1.1.1:8080"}, // a specific host is kept
		{"", "10.0.0.5:4085", ""},                                      // never heard
		{"ftp://:21", "10.0.0.5:4085", ""},                             // not http(s)
		{"http://:4080", "not-an-address", ""},                         // no host to fill in
		{"javascript:alert(1)", "10.0.0.5:4085", ""},                   // never handed to the page
		{"http://a.example:80/path?q=1", "x:1", "http://a.example:80"}, // base only
	} {
		if got := completeHTTPURL(tc.raw, tc.grpc); got != tc.want {
			t.Errorf("completeHTTPURL(%q, %q) = %q, want %q", tc.raw, tc.grpc, got, tc.want)
		}
	}
}

func TestConfigHTTPAdvertise(t *testing.T) {
	for _, tc := range []struct {
		url     string
		httpTLS bool
		ok      bool
	}{
		{"http://lic1.example.com:4080", false, true},
		{"https://lic1.example.com:4080", true, true},
		{"http://10.0.0.5:4080/", false, true},
		{"https://lic1.example.com:4080", false, false}, // https without --http-tls
		{"http://lic1.example.com:4080", true, false},   // http with --http-tls
		{"lic1.example.com:4080", false, false},
		{"http://lic1.example.com", false, false}, // no port
		{"http://lic1.example.com:4080/dash", false, false},
		{"http://user@lic1.example.com:4080", false, false},
	} {
		c := Config{Name: "m1", DataDir: t.TempDir(), HTTPAdvertise: tc.url, HTTPTLS: tc.httpTLS, Insecure: !tc.httpTLS}
		if tc.httpTLS {
			c.TLSCA, c.TLSCert, c.TLSKey = "ca", "cert", "key"
		}
		err := c.validate()
		if tc.ok && err != nil {
			t.Errorf("--http-advertise %q (http-tls %v): %v", tc.url, tc.httpTLS, err)
		}
		if !tc.ok && (err == nil || !strings.Contains(err.Error(), "--http-advertise")) {
			t.Errorf("--http-advertise %q (http-tls %v) accepted or unclear error: %v", tc.url, tc.httpTLS, err)
		}
	}
}
