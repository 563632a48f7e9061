package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The dashboard's charts (dashboard/charts.js) checked in headless
// Chromium against fake members that serve contract-shaped history
// (docs/reports.md): the drawn elements carry the data they were drawn
// from. The same page on real members is integration.TestDashboardCharts.

// fakeHistory serves /v1/status and /v1/history/* like a member.
type fakeHistory struct {
	name string
	urls func() map[string]string // member name -> base URL
	// dieAfterStatus: after answering one /v1/status, answer every /v1
	// request 503, as a member that died just after the page loaded.
	dieAfterStatus bool
	down           bool
	mu             sync.Mutex
	queries        []string // history requests seen: path?query
}

// chartPoints: minute points over the last 60 minutes of the period:
// peak 0..3 rising, capacity 4, denials at i = 20 (2 no_seat) and i = 45
// (1 no_seat, 1 rule).
const chartPoints = 60

func (f *fakeHistory) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Access-Control-Allow-Origin", "*")
	f.mu.Lock()
	down := f.down
	if r.URL.Path == "/v1/status" && f.dieAfterStatus {
		f.down = true
	}
	f.mu.Unlock()
	if down {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	q := r.URL.Query()
	from, _ := strconv.ParseInt(q.Get("from"), 10, 64)
	to, _ := strconv.ParseInt(q.Get("to"), 10, 64)
	var v any
	switch r.URL.Path {
	case "/v1/status":
		var members []map[string]any
		for _, n := range []string{"alpha", "bravo"} {
			members = append(members, map[string]any{"name": n, "role": "follower", "http_url": f.urls()[n]})
		}
		v = map[string]any{"member": f.name, "status": "operational", "leader": "alpha", "members": members,
			"features": []map[string]any{{"feature": "cad", "version": 1, "capacity": 4, "in_use": 3}, {"feature": "sim", "version": 1, "capacity": 1}}}
	case "/v1/history/usage":
		if q.Get("feature") != "cad" || from == 0 || to <= from {
			w.WriteHeader(http.StatusBadRequest)
			json.NewEncoder(w).Encode(map[string]string{"error": "bad query " + r.URL.RawQuery})
			return
		}
		step := map[string]int64{"minute": 60e3, "hour": 3600e3, "day": 86400e3}[q.Get("step")]
		var pts []map[string]any
		for i := 0; i < chartPoints; i++ {
			p := map[string]any{"t": to - int64(chartPoints-i)*step, "peak": i / 15, "average": float64(i/15) * 0.75, "capacity": 4,
				"denials": map[string]int{}}
			switch i {
			case 20:
				p["denials"] = map[string]int{"no_seat": 2}
			case 45:
				p["denials"] = map[string]int{"no_seat": 1, "rule": 1}
			}
			pts = append(pts, p)
		}
		v = map[string]any{"feature": "cad", "step": q.Get("step"), "from": from, "to": to, "points": pts}
	case "/v1/history/utilization":
		v = map[string]any{"feature": "cad", "capacity": 4, "buckets": []map[string]any{
			{"seats": 0, "share": 0.25, "ms": 900000}, {"seats": 1, "share": 0.25, "ms": 900000},
			{"seats": 2, "share": 0.25, "ms": 900000}, {"seats": 3, "share": 0.25, "ms": 900000}}}
	case "/v1/history/users":
		v = map[string]any{"feature": "cad", "by": q.Get("by"), "rows": []map[string]any{
			{"name": "alice", "hours": 12.5}, {"name": "bob", "hours": 3}, {"name": "carol", "hours": 0.25}}}
	default:
		http.NotFound(w, r)
		return
	}
	if strings.HasPrefix(r.URL.Path, "/v1/history/") {
		f.mu.Lock()
		f.queries = append(f.queries, r.URL.Path+"?"+r.URL.RawQuery)
		f.mu.Unlock()
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func (f *fakeHistory) seen() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.queries...)
}

// fakeMembers starts alpha (serving the page) and bravo.
func fakeMembers(t *testing.T) (alpha, bravo *fakeHistory, alphaURL, bravoURL string) {
	// Guarded: the servers read them on their goroutines (the browser's
	// requests give the race detector no happens-before edge).
	var mu sync.Mutex
	urls := map[string]string{}
	get := func() map[string]string {
		mu.Lock()
		defer mu.Unlock()
		return maps.Clone(urls)
	}
	alpha, bravo = &fakeHistory{name: "alpha", urls: get}, &fakeHistory{name: "bravo", urls: get}
	mux := http.NewServeMux()
	mux.Handle("/v1/", alpha)
	mux.Handle("/", dashboardHandler())
	a := httptest.NewServer(mux)
	b := httptest.NewServer(bravo)
	t.Cleanup(a.Close)
	t.Cleanup(b.Close)
	mu.Lock()
	urls["alpha"], urls["bravo"] = a.URL, b.URL
	mu.Unlock()
	return alpha, bravo, a.URL, b.URL
}

func TestDashboardChartsDrawHistory(t *testing.T) {
	browser := chromium(t)
	alpha, _, base, _ := fakeMembers(t)
	page := browse(t, browser, "--dump-dom", base+"/#range=day")
	usage := attrsOf(page, `id="usage-chart"`)
	for k, want := range map[string]string{"data-feature": "cad", "data-range": "day", "data-step": "minute",
		"data-points": strconv.Itoa(chartPoints), "data-peak": "3", "data-capacity": "4", "data-denials": "4", "data-source": ""} {
		if usage[k] != want {
			t.Errorf("usage chart %s=%q, want %q (attributes %v)", k, usage[k], want, usage)
		}
	}
	denials := elements(page, `class="denial"`)
	if len(denials) != 2 || denials[0]["data-denials"] != "2" || denials[1]["data-denials"] != "2" {
		t.Errorf("denial marks %v, want 2 marks of 2 denials each", denials)
	}
	for _, series := range []string{"peak", "capacity"} {
		if n := len(elements(page, `data-series="`+series+`"`)); n != 1 {
			t.Errorf("%d %s lines, want 1", n, series)
		}
	}
	bars := elements(page, `data-seats=`)
	if len(bars) != 4 {
		t.Fatalf("%d utilization bars, want 4: %v", len(bars), bars)
	}
	for i, b := range bars {
		if b["data-seats"] != strconv.Itoa(i) || b["data-share"] != "0.25" {
			t.Errorf("bar %d: %v, want seats %d share 0.25", i, b, i)
		}
	}
	top := elements(page, `data-hours=`)
	if got := fmt.Sprint(top); len(top) != 3 || top[0]["data-name"] != "alice" || top[0]["data-hours"] != "12.5" || top[2]["data-name"] != "carol" {
		t.Errorf("top users %s, want alice 12.5, bob, carol", got)
	}
	if !strings.Contains(page, ">Top users by hours<") {
		t.Errorf("the top list is not titled for users")
	}
	// The requests asked for the chosen period and step.
	checkQueries(t, alpha.seen(), 86400e3, "step=minute", "by=user", "top=10")
	keepScreenshot(t, browser, base+"/#range=day", "dashboard-charts.png")

	// The year at a daily step, top hosts.
	alpha.mu.Lock()
	alpha.queries = nil
	alpha.mu.Unlock()
	page = browse(t, browser, "--dump-dom", base+"/#range=year&by=host")
	if u := attrsOf(page, `id="usage-chart"`); u["data-range"] != "year" || u["data-step"] != "day" {
		t.Errorf("year view: %v", u)
	}
	if !strings.Contains(page, ">Top hosts by hours<") {
		t.Errorf("the top list is not titled for hosts")
	}
	checkQueries(t, alpha.seen(), 365*86400e3, "step=day", "by=host")
}

// TestDashboardChartsFailOver: the member that served the page dies just
// after its first status answer: the charts come from the other member,
// and the page says so.
func TestDashboardChartsFailOver(t *testing.T) {
	browser := chromium(t)
	alpha, bravo, base, bravoURL := fakeMembers(t)
	alpha.mu.Lock()
	alpha.dieAfterStatus = true
	alpha.mu.Unlock()
	page := browse(t, browser, "--dump-dom", base+"/")
	u := attrsOf(page, `id="usage-chart"`)
	if u["data-source"] != bravoURL || u["data-points"] != strconv.Itoa(chartPoints) || u["data-denials"] != "4" {
		t.Errorf("charts %v, want %d points and 4 denials from %s", u, chartPoints, bravoURL)
	}
	if n := len(elements(page, `data-seats=`)); n != 4 {
		t.Errorf("%d utilization bars from bravo, want 4", n)
	}
	if len(bravo.seen()) < 3 {
		t.Errorf("bravo saw %v, want the three history requests", bravo.seen())
	}
	if len(alpha.seen()) != 0 {
		t.Errorf("dead alpha answered history requests %v", alpha.seen())
	}
	if !strings.Contains(page, "from "+bravoURL) {
		t.Errorf("the page does not say the charts come from %s", bravoURL)
	}
}

func checkQueries(t *testing.T, seen []string, span int64, parts ...string) {
	t.Helper()
	paths := map[string]bool{}
	for _, q := range seen {
		path, query, _ := strings.Cut(q, "?")
		paths[path] = true
		m := regexp.MustCompile(`from=(\d+)&to=(\d+)`).FindStringSubmatch(query)
		if m == nil {
			t.Errorf("%s has no from/to", q)
			continue
		}
		from, _ := strconv.ParseInt(m[1], 10, 64)
		to, _ := strconv.ParseInt(m[2], 10, 64)
		if to-from != span {
			t.Errorf("%s spans %d ms, want %d", q, to-from, span)
		}
		if !strings.Contains(query, "feature=cad") {
			t.Errorf("%s does not ask for cad", q)
		}
	}
	for _, p := range []string{"/v1/history/usage", "/v1/history/utilization", "/v1/history/users"} {
		if !paths[p] {
			t.Errorf("no request for %s (saw %v)", p, seen)
		}
	}
	all := strings.Join(seen, " ")
	for _, p := range parts {
		if !strings.Contains(all, p) {
			t.Errorf("no request with %s (saw %v)", p, seen)
		}
	}
}

// chromium returns the browser's path, or skips when it is missing unless
// TRIAD_REQUIRE_BROWSER=1 (CI), where a missing browser fails.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("TRIAD_REQUIRE_BROWSER") == "1" {
		t.Fatal("chromium not found and TRIAD_REQUIRE_BROWSER=1: apt-get install chromium")
	}
	t.Skip("chromium not found: apt-get install chromium to run the dashboard browser tests")
	return ""
}

// browse runs headless Chromium (bounded to 60 s, its own process group).
func browse(t *testing.T, browser string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	flags := []string{"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + t.TempDir(), "--virtual-time-budget=5000"}
	cmd := exec.CommandContext(ctx, browser, append(flags, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, errb.String())
	}
	return out.String()
}

func keepScreenshot(t *testing.T, browser, url, name string) {
	t.Helper()
	dir := os.Getenv("TRIAD_ARTIFACTS")
	if dir == "" {
		dir = "artifacts"
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path, err := filepath.Abs(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	browse(t, browser, "--screenshot="+path, "--window-size=1280,1600", url)
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		t.Fatalf("no screenshot at %s: %v", path, err)
	}
	t.Logf("screenshot: %s", path)
}

var (
	chartTagRe  = regexp.MustCompile(`<[a-zA-Z][^>]*>`)
	chartAttrRe = regexp.MustCompile(`([a-z-]+)="([^"]*)"`)
)

// elements returns the attributes of every start tag containing marker.
func elements(page, marker string) []map[string]string {
	var out []map[string]string
	for _, tag := range chartTagRe.FindAllString(page, -1) {
		if !strings.Contains(tag, marker) {
			continue
		}
		attrs := map[string]string{}
		for _, a := range chartAttrRe.FindAllStringSubmatch(tag, -1) {
			attrs[a[1]] = a[2]
		}
		out = append(out, attrs)
	}
	return out
}

func attrsOf(page, marker string) map[string]string {
	if e := elements(page, marker); len(e) > 0 {
		return e[0]
	}
	return map[string]string{}
}
