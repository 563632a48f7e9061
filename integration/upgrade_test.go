package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/triadlm/triad/fsm"
)

// memberFormats reads each member's version and command format from the
// status answered by m.
func memberFormats(t *testing.T, m *member) map[string]string {
	var st struct {
		Members []struct {
			Name          string `json:"name"`
			Version       string `json:"version"`
			FormatVersion int    `json:"format_version"`
		} `json:"members"`
		Build struct {
			Version       string `json:"version"`
			Commit        string `json:"commit"`
			GoVersion     string `json:"go_version"`
			FormatVersion int    `json:"format_version"`
		} `json:"build"`
	}
	// cluster status exits 1 or 2 while not operational; its JSON is
	// still the answer.
	out, err := ctlOn(t, m.addr, "--output", "json", "cluster", "status")
	if jerr := json.Unmarshal([]byte(out), &st); jerr != nil {
		t.Fatalf("cluster status on %s: %v %q", m.name, err, out)
	}
	if st.Build.Version == "" || st.Build.Commit == "" || !strings.HasPrefix(st.Build.GoVersion, "go") || st.Build.FormatVersion == 0 {
		t.Fatalf("status of %s has no build info: %+v", m.name, st.Build)
	}
	formats := map[string]string{}
	for _, x := range st.Members {
		formats[x.Name] = fmt.Sprintf("%s/%d", x.Version, x.FormatVersion)
	}
	return formats
}

// TestRollingUpgradeWithPreviousFormat (issue 12.5): bravo runs as the
// previous build (command format 1, --test-format-version). The cluster
// keeps serving, also through bravo; a format-2 command (vendor trust add)
// is refused with a message naming bravo, through any member, until bravo
// is upgraded (restarted without the flag); then it works and every
// member applied it.
func TestRollingUpgradeWithPreviousFormat(t *testing.T) {
	// A cluster of the previous build (format 3: the leader of this build
	// starts the usage history, a format-4 command, as soon as every
	// member runs format 4, and a member rolled back past it would halt;
	// TestRolledBackMemberHaltsInsteadOfDiverging).
	c := &cluster{t: t, dir: t.TempDir()}
	if _, err := ctlOn(t, "127.0.0.1:1", "vendor", "keygen", "--out", filepath.Join(c.dir, "vendor")); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"alpha", "bravo", "charlie"} {
		c.members = append(c.members, newMember(t, n, filepath.Join(c.dir, "vendor.pub"), "--test-format-version", "3"))
	}
	c.form()
	c.enroll(c.issue("cad", "--feature", "cad:1:5", "--valid-until", time.Now().AddDate(1, 0, 0).Format("2006-01-02")))
	bravo := c.member("bravo")
	other := filepath.Join(c.dir, "other")
	if _, err := ctlOn(t, "127.0.0.1:1", "vendor", "keygen", "--out", other); err != nil {
		t.Fatal(err)
	}
	// alpha and charlie are upgraded; bravo goes back to an older build.
	for _, m := range c.members {
		m.stop()
		m.extra = nil
		if m == bravo {
			m.extra = []string{"--test-format-version", "1"}
		}
		m.start()
	}
	for _, m := range c.members {
		waitFor(t, 20*time.Second, m.name+" sees bravo on format 1", func() error {
			f := memberFormats(t, m)
			current := fmt.Sprintf("/%d", fsm.FormatVersion)
			if !strings.HasSuffix(f["bravo"], "/1") || !strings.HasSuffix(f["alpha"], current) || !strings.HasSuffix(f["charlie"], current) {
				return fmt.Errorf("formats %v", f)
			}
			return nil
		})
	}
	// triadctl version --members shows what each member runs.
	out, err := ctlOn(t, c.servers(), "version", "--members")
	if err != nil || !strings.HasPrefix(out, "triadctl ") || strings.Count(out, "(commit ") != 1 {
		t.Fatalf("triadctl version --members: %v %q", err, out)
	}
	for _, m := range c.members {
		if !strings.Contains(out, m.name+" ") || !strings.Contains(out, m.addr) {
			t.Fatalf("triadctl version --members lacks %s: %q", m.name, out)
		}
	}
	// It keeps serving: a checkout through bravo, status operational.
	if _, err := ctlOn(t, bravo.addr, "checkout", "--feature", "cad", "--hold", "100ms"); err != nil {
		t.Fatalf("checkout through the member on the previous format: %v", err)
	}
	waitFor(t, 20*time.Second, "operational", func() error {
		st, err := c.status(bravo)
		if err != nil || st.Status != "operational" || st.Leader == "" {
			return fmt.Errorf("%+v %v", st, err)
		}
		return nil
	})
	// The gated command is refused, whoever is asked.
	for _, m := range c.members {
		_, err := ctlOn(t, m.addr, "vendor", "trust", "add", other+".pub")
		want := "member bravo runs command format 1"
		if m == bravo {
			want = "member bravo (this member) runs command format 1"
		}
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "upgrade it before using `vendor trust add`") {
			t.Fatalf("vendor trust add through %s with bravo on format 1: %v, want %q and the upgrade hint", m.name, err, want)
		}
	}
	// So is a queued checkout (format 4): bravo would refuse what the others
	// queue. A plain checkout worked above.
	if _, err := ctlOn(t, c.members[0].addr, "checkout", "--feature", "cad", "--queue", "--hold", "100ms"); err == nil ||
		!strings.Contains(err.Error(), "member bravo runs command format 1") || !strings.Contains(err.Error(), "checkout --queue") {
		t.Fatalf("queued checkout with bravo on format 1: %v", err)
	}

	// The usage history waits for every member to run format 4.
	if code, body, err := historyGet(c.members[0], "compliance", nil); err != nil || code != http.StatusServiceUnavailable || !strings.Contains(string(body), "has not started yet") {
		t.Fatalf("history with bravo on format 1: %d %s %v", code, body, err)
	}

	// Upgrade bravo: restart it on this build.
	bravo.stop()
	bravo.extra = nil
	bravo.start()
	waitFor(t, 30*time.Second, "the usage history started after the upgrade", func() error {
		code, body, err := historyGet(c.members[0], "compliance", nil)
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("%d %s %v", code, body, err)
		}
		return nil
	})
	waitFor(t, 30*time.Second, "vendor trust add after the upgrade", func() error {
		_, err := ctlOn(t, c.members[0].addr, "vendor", "trust", "add", other+".pub")
		return err
	})
	if _, err := ctlOn(t, c.members[0].addr, "checkout", "--feature", "cad", "--queue", "--hold", "100ms"); err != nil {
		t.Fatalf("queued checkout after the upgrade: %v", err)
	}
	for _, m := range c.members {
		waitFor(t, 20*time.Second, m.name+" trusts the new key", func() error {
			var k struct {
				Keys []struct {
					KeyID string `json:"key_id"`
				} `json:"keys"`
			}
			ctlJSON(t, m.addr, &k, "vendor", "trust", "list")
			if len(k.Keys) != 2 {
				return fmt.Errorf("keys %+v", k.Keys)
			}
			return nil
		})
	}
}

// TestRolledBackMemberHaltsInsteadOfDiverging (issue 12.5): a gated
// command is used while bravo is down; bravo then comes back on the
// previous format (a rollback). It meets the command in the log, stops
// applying instead of skipping it or crashing: /readyz says why, its
// licensing port refuses (UNAVAILABLE), the others report the
// upgrade_required alarm and keep serving; upgraded, it catches up.
func TestRolledBackMemberHaltsInsteadOfDiverging(t *testing.T) {
	c := formedWithLicense(t, 5)
	bravo := c.member("bravo")
	alpha := c.member("alpha")
	other := filepath.Join(c.dir, "other")
	if _, err := ctlOn(t, "127.0.0.1:1", "vendor", "keygen", "--out", other); err != nil {
		t.Fatal(err)
	}
	// Every member has reported format 2 to the others.
	waitFor(t, 20*time.Second, "formats known", func() error {
		if f := memberFormats(t, alpha); f["bravo"] == "" || f["charlie"] == "" {
			return fmt.Errorf("%v", f)
		}
		return nil
	})
	bravo.stop()
	if _, err := ctlOn(t, alpha.addr, "vendor", "trust", "add", other+".pub"); err != nil {
		t.Fatalf("vendor trust add with bravo down but last known on format 2: %v", err)
	}
	bravo.extra = []string{"--test-format-version", "1"}
	bravo.noAnswerWait = true // it may halt before it answers
	bravo.start()
	bravo.noAnswerWait = false
	waitFor(t, 30*time.Second, "bravo halted", func() error {
		resp, err := http.Get("http://" + bravo.httpAddr + "/readyz")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b := make([]byte, 2048)
		n, _ := resp.Body.Read(b)
		body := string(b[:n])
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "stopped applying the replicated log") ||
			!strings.Contains(body, "start_history") || !strings.Contains(body, "upgrade this member") {
			return fmt.Errorf("%s %q", resp.Status, body)
		}
		return nil
	})
	if _, err := ctlOn(t, bravo.addr, "checkout", "--feature", "cad", "--hold", "100ms"); err == nil || !strings.Contains(err.Error(), "upgrade this member") {
		t.Fatalf("checkout through the halted member: %v, want a refusal naming the upgrade", err)
	}
	// The others serve, and say which member needs the upgrade.
	if _, err := ctlOn(t, alpha.addr, "checkout", "--feature", "cad", "--hold", "100ms"); err != nil {
		t.Fatalf("checkout through alpha while bravo is halted: %v", err)
	}
	waitFor(t, 20*time.Second, "upgrade_required alarm on alpha", func() error {
		out, err := ctlOn(t, alpha.addr, "cluster", "status") // exits non-zero unless operational
		if !strings.Contains(out, "ALARM upgrade_required") || !strings.Contains(out, "member bravo: this member stopped applying") {
			return fmt.Errorf("%v\n%s", err, out)
		}
		return nil
	})
	if !strings.Contains(bravo.log(), `"level":"ERROR","msg":"stopped applying the replicated log: upgrade this member"`) {
		t.Errorf("bravo's log does not say it stopped applying the log:\n%s", bravo.log())
	}

	bravo.stop()
	bravo.extra = nil
	bravo.start()
	waitFor(t, 30*time.Second, "bravo caught up", func() error {
		var k struct {
			Keys []struct{} `json:"keys"`
		}
		out, err := ctlOn(t, bravo.addr, "--output", "json", "vendor", "trust", "list")
		if err != nil {
			return err
		}
		json.Unmarshal([]byte(out), &k)
		if len(k.Keys) != 2 {
			return fmt.Errorf("bravo trusts %d keys", len(k.Keys))
		}
		resp, err := http.Get("http://" + bravo.httpAddr + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz %s", resp.Status)
		}
		return nil
	})
}

// TestCleanStopLogsAreJSONWithoutErrors (issue 12.6): three members run,
// take some work, and are stopped cleanly (SIGTERM) one after the other;
// every line of every member's log is a JSON object with a level, and
// none is at error level (slog "ERROR" or hclog "error").
func TestCleanStopLogsAreJSONWithoutErrors(t *testing.T) {
	c := formedWithLicense(t, 5)
	if _, err := ctlOn(t, c.servers(), "checkout", "--feature", "cad", "--hold", "100ms"); err != nil {
		t.Fatal(err)
	}
	for _, m := range c.members {
		m.stop()
	}
	for _, m := range c.members {
		f, err := os.Open(filepath.Join(m.dir, "triadd.log"))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		n := 0
		for sc.Scan() {
			n++
			var rec map[string]any
			if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
				t.Errorf("%s log line %d is not JSON: %q", m.name, n, sc.Text())
				continue
			}
			level, _ := rec["level"].(string)
			if l, ok := rec["@level"].(string); ok {
				level = l
			}
			if level == "" {
				t.Errorf("%s log line %d has no level: %q", m.name, n, sc.Text())
			}
			if strings.EqualFold(level, "error") {
				t.Errorf("%s log line %d is an error on a clean stop: %q", m.name, n, sc.Text())
			}
		}
		f.Close()
		if n < 5 || !strings.Contains(m.log(), `"msg":"member stopped"`) {
			t.Errorf("%s log has %d lines, without \"member stopped\"", m.name, n)
		}
	}
}

// TestFormationRefusesMixedFormats: a cluster is formed on one command
// format; a member on another is named in the refusal, and nothing is
// formed.
func TestFormationRefusesMixedFormats(t *testing.T) {
	dir := t.TempDir()
	if _, err := ctlOn(t, "127.0.0.1:1", "vendor", "keygen", "--out", filepath.Join(dir, "vendor")); err != nil {
		t.Fatal(err)
	}
	pub := filepath.Join(dir, "vendor.pub")
	c := &cluster{t: t, dir: dir, members: []*member{newMember(t, "alpha", pub), newMember(t, "bravo", pub, "--test-format-version", "1"), newMember(t, "charlie", pub)}}
	_, err := ctlOn(t, c.members[0].addr, "cluster", "create", "--members", c.servers())
	if err == nil || !strings.Contains(err.Error(), "(bravo) runs version") || !strings.Contains(err.Error(), "(command format 1) but this member runs") ||
		!strings.Contains(err.Error(), "same Triad version on all members") {
		t.Fatalf("cluster create with bravo on format 1: %v", err)
	}
	var show struct {
		Mode string `json:"mode"`
	}
	for _, m := range c.members {
		ctlJSON(t, m.addr, &show, "server", "show")
		if show.Mode != "unconfigured" {
			t.Fatalf("%s is %s after a refused formation", m.name, show.Mode)
		}
	}
}
