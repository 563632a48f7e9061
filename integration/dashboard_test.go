package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDashboard loads the dashboard in a real headless Chromium, checks what
// the page's scripts drew from /v1/status, kills a member and checks the page
// follows. Screenshots go to $TRIAD_ARTIFACTS, or integration/artifacts/.
func TestDashboard(t *testing.T) {
	browser := findBrowser(t)
	c := formedWithLicense(t, 5)
	m := c.members[0]
	base := "http://" + m.httpAddr + "/"
	// A license ending within the 7-day warning raises license_expiring.
	c.enroll(c.issue("soon", "--feature", "tmp:1:1", "--valid-until", time.Now().Add(72*time.Hour).UTC().Format(time.RFC3339)))
	waitFor(t, 10*time.Second, "license_expiring alarm in /v1/status", func() error {
		s, err := httpStatusFull(m)
		if err != nil {
			return err
		}
		if !s.hasAlarm("license_expiring") {
			return fmt.Errorf("alarms %+v", s.Alarms)
		}
		return nil
	})

	waitFor(t, 20*time.Second, "cluster operational with three links up", func() error {
		s, err := memberHTTPStatus(m)
		if err != nil {
			return err
		}
		if up := countLinks(s, "up"); s.Status != "operational" || up != 3 {
			return fmt.Errorf("status %q with %d links up", s.Status, up)
		}
		return nil
	})

	t.Run("http", func(t *testing.T) {
		resp := httpGet(t, base)
		if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || !strings.HasPrefix(ct, "text/html") {
			t.Errorf("GET / = %d %q, want 200 text/html", resp.StatusCode, ct)
		}
		for _, path := range []string{"nope", "v1/nope"} {
			if resp := httpGet(t, base+path); resp.StatusCode != http.StatusNotFound {
				t.Errorf("GET /%s = %d, want 404", path, resp.StatusCode)
			}
		}
	})

	page := dumpDOM(t, browser, base)
	if w := statusWord(page); w != "operational" {
		t.Fatalf("status-word = %q, want operational; page:\n%s", w, page)
	}
	if n := len(tagsWith(page, "data-member")); n != 3 {
		t.Errorf("%d elements with data-member, want 3", n)
	}
	if n := len(linksIn(page, "up")); n != 3 {
		t.Errorf("%d links with data-state=\"up\", want 3; links: %v", n, linksIn(page, ""))
	}
	if !strings.Contains(page, "served by "+m.name) {
		t.Errorf("page does not say it is served by %s", m.name)
	}
	// The page refreshes itself: with 5 s of virtual time and a 1.5 s poll
	// it has fetched v1/status several times since it loaded.
	if r := refreshesRe.FindStringSubmatch(page); r == nil {
		t.Errorf("page has no data-refreshes count")
	} else if n, _ := strconv.Atoi(r[1]); n < 2 {
		t.Errorf("page refreshed %d times in 5 s of virtual time, want at least 2", n)
	}
	leader := c.leader(m).name
	if !regexp.MustCompile(`<dt>Leader</dt><dd>` + regexp.QuoteMeta(leader) + `</dd>`).MatchString(page) {
		t.Errorf("page does not name leader %s", leader)
	}
	if !regexp.MustCompile(`<td>cad</td><td>1</td><td>0 / 5</td>`).MatchString(page) {
		t.Errorf("page does not show feature cad v1 with 0 of 5 seats in use")
	}
	soon := serialGranting(t, m.addr, "tmp")
	if alarms := alarmsList(page); !strings.Contains(alarms, ">license expiring<") || !strings.Contains(alarms, "license "+soon+" expires on ") {
		t.Errorf("the alarm list does not show license %s expiring: %q", soon, alarms)
	}
	screenshot(t, browser, base, "dashboard-operational.png")

	victim := c.members[2]
	victim.kill()
	var last string
	waitFor(t, 15*time.Second, "page shows "+victim.name+" cut off", func() error {
		last = dumpDOM(t, browser, base)
		if w := statusWord(last); w != "partially operational" {
			return fmt.Errorf("status-word %q", w)
		}
		down := 0
		for _, l := range linksIn(last, "down") {
			if a, b, _ := strings.Cut(l, "-"); a == victim.name || b == victim.name {
				down++
			}
		}
		if down != 2 {
			return fmt.Errorf("%d of %s's links down; links: %v", down, victim.name, linksIn(last, ""))
		}
		return nil
	})
	screenshot(t, browser, base, "dashboard-member-killed.png")
}

// findBrowser returns Chromium's path, or skips the test when it is missing
// (unless TRIAD_REQUIRE_BROWSER=1, as in CI, where a missing browser fails).
func findBrowser(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("TRIAD_REQUIRE_BROWSER") == "1" {
		t.Fatal("chromium not found and TRIAD_REQUIRE_BROWSER=1: apt-get install chromium")
	}
	t.Skip("chromium not found: apt-get install chromium to run the dashboard browser test")
	return ""
}

// runBrowser runs headless Chromium with args, bounded to 60 s, in its own
// process group so that its helper processes go with it on timeout.
func runBrowser(t *testing.T, browser string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	flags := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
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

func dumpDOM(t *testing.T, browser, url string) string {
	t.Helper()
	return runBrowser(t, browser, "--dump-dom", url)
}

func screenshot(t *testing.T, browser, url, name string) {
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
	runBrowser(t, browser, "--screenshot="+path, "--window-size=1280,900", url)
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		t.Fatalf("no screenshot at %s: %v", path, err)
	}
	t.Logf("screenshot: %s", path)
}

var (
	tagRe       = regexp.MustCompile(`<[^>]+>`)
	attrRe      = regexp.MustCompile(`([a-z-]+)="([^"]*)"`)
	statusRe    = regexp.MustCompile(`id="status-word"[^>]*>([^<]*)<`)
	refreshesRe = regexp.MustCompile(`data-refreshes="([0-9]+)"`)
)

func statusWord(page string) string {
	if m := statusRe.FindStringSubmatch(page); m != nil {
		return strings.TrimSpace(m[1])
	}
	return ""
}

// tagsWith returns the attributes of every start tag that has attribute key.
func tagsWith(page, key string) []map[string]string {
	var tags []map[string]string
	for _, tag := range tagRe.FindAllString(page, -1) {
		attrs := map[string]string{}
		for _, a := range attrRe.FindAllStringSubmatch(tag, -1) {
			attrs[a[1]] = a[2]
		}
		if _, ok := attrs[key]; ok {
			tags = append(tags, attrs)
		}
	}
	return tags
}

// linksIn returns the data-link names of the drawn links in state (any
// state when empty), each with its state when state is empty.
func linksIn(page, state string) []string {
	var links []string
	for _, a := range tagsWith(page, "data-link") {
		switch {
		case state == "":
			links = append(links, a["data-link"]+"="+a["data-state"])
		case a["data-state"] == state:
			links = append(links, a["data-link"])
		}
	}
	return links
}

// alarmsList returns the page's alarm list (the #alarms element's HTML).
func alarmsList(page string) string {
	i := strings.Index(page, `id="alarms"`)
	if i < 0 {
		return ""
	}
	page = page[i:]
	if j := strings.Index(page, "</ul>"); j >= 0 {
		page = page[:j]
	}
	return page
}

func httpGet(t *testing.T, url string) *http.Response {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func countLinks(s status, state string) int {
	n := 0
	for _, l := range s.Links {
		if l.State == state {
			n++
		}
	}
	return n
}
