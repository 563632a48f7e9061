package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/triadlm/triad/client"
	"github.com/triadlm/triad/proto/triadv1"
)

func checkoutAs(ctx context.Context, t *testing.T, lc triadv1.LicensingClient, req, feature, user string) (*triadv1.CheckoutResponse, error) {
	return lc.Checkout(ctx, &triadv1.CheckoutRequest{ProtocolVersion: client.ProtocolVersion, RequestId: req, Feature: feature, Version: 1, User: user, Host: "h-" + user, ClientId: rawClientID})
}

// The license model on real members: a soft limit's overdraft raises an
// alarm, a license expires on time by itself (the leader commits it and the
// capacity drops), named users share their seat, borrowing is bounded by
// the license.
func TestLicenseModel(t *testing.T) {
	t.Parallel() // no timing assertion: may share the machine
	c := startCluster(t)
	c.form()
	year := time.Now().AddDate(1, 0, 0).Format("2006-01-02")
	soon := time.Now().Add(25 * time.Second).UTC().Format(time.RFC3339)
	c.enroll(c.issue("main", "--valid-until", year,
		"--feature", "cad:1:2,overdraft=1",
		"--feature", "view:1:2,model=named-user",
		"--feature", "lib:1:1,borrow=72h",
		"--feature", "doc:1:1,borrow=24h"))
	c.enroll(c.issue("short", "--valid-until", soon, "--feature", "tmp:1:3"))
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	lc := licensing(t, c.members[0].addr)
	// The short license is valid for 25 s: take its seat first, before the
	// steps below use that time up on a loaded machine.
	if _, err := checkoutAs(ctx, t, lc, "tmp-1", "tmp", "u"); err != nil {
		t.Fatalf("tmp while valid: %v", err)
	}

	// Soft limit: the third seat is the overdraft and raises an alarm.
	for i := 0; i < 3; i++ {
		if _, err := checkoutAs(ctx, t, lc, fmt.Sprintf("cad-%d", i), "cad", "u"); err != nil {
			t.Fatalf("cad seat %d: %v", i, err)
		}
	}
	if _, err := checkoutAs(ctx, t, lc, "cad-3", "cad", "u"); grpcstatus.Code(err) != codes.ResourceExhausted {
		t.Fatalf("fourth cad seat: %v", err)
	}
	waitFor(t, 5*time.Second, "over-capacity alarm", func() error {
		s, err := httpStatusFull(c.members[1])
		if err != nil {
			return err
		}
		if !s.hasAlarm("feature_over_capacity") {
			return fmt.Errorf("alarms %+v", s.Alarms)
		}
		return nil
	})
	wantStatusAlarm(t, c.members[1].addr, "feature_over_capacity", "cad", "feature cad is over capacity at version 1 and above: 3 seats in use, 2 licensed")

	// Named users: alice's two sessions take one seat; a third user is refused.
	for i, u := range []string{"alice", "alice", "bob"} {
		if _, err := checkoutAs(ctx, t, lc, fmt.Sprintf("view-%d", i), "view", u); err != nil {
			t.Fatalf("view for %s: %v", u, err)
		}
	}
	_, err := checkoutAs(ctx, t, lc, "view-3", "view", "carol")
	if grpcstatus.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "named users tied") {
		t.Fatalf("third named user: %v", err)
	}

	// Borrowing: bounded by the license, counts against capacity, returned early.
	borrow := func(req, feature string, d time.Duration) (*triadv1.CheckoutResponse, error) {
		return lc.Borrow(ctx, &triadv1.BorrowRequest{ProtocolVersion: client.ProtocolVersion, DurationSeconds: uint32(d.Seconds()),
			Checkout: &triadv1.CheckoutRequest{RequestId: req, Feature: feature, Version: 1, User: "u", ClientId: rawClientID}})
	}
	if _, err := borrow("b-cad", "cad", time.Hour); grpcstatus.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "cannot be borrowed") {
		t.Fatalf("borrowing a feature without borrow rights: %v", err)
	}
	if _, err := borrow("b-long", "lib", 73*time.Hour); grpcstatus.Code(err) != codes.FailedPrecondition {
		t.Fatalf("borrowing too long: %v", err)
	}
	b, err := borrow("b-lib", "lib", 48*time.Hour)
	if err != nil || !b.GetLease().GetBorrowed() {
		t.Fatalf("borrow: %v %v", b, err)
	}
	if _, err := checkoutAs(ctx, t, lc, "lib-1", "lib", "v"); grpcstatus.Code(err) != codes.ResourceExhausted {
		t.Fatalf("lib while borrowed: %v", err)
	}
	// The borrow shows in usage leases (BORROWED UNTIL; JSON borrowed and
	// expires_unix_ms), on every member; an ordinary lease shows "-".
	borrowID, borrowEnd := b.GetLease().GetLeaseId(), b.GetLease().GetExpiresUnixMs()
	if d := time.Until(time.UnixMilli(borrowEnd)); d < 47*time.Hour || d > 48*time.Hour {
		t.Fatalf("borrow ends in %v, want 48h", d)
	}
	for _, m := range c.members {
		waitFor(t, 5*time.Second, "borrow in usage leases on "+m.name, func() error {
			return borrowShown(t, m.addr, borrowID, borrowEnd)
		})
	}
	if r, err := lc.ReturnBorrow(ctx, &triadv1.ReleaseRequest{ProtocolVersion: client.ProtocolVersion, LeaseIds: []uint64{b.GetLease().GetLeaseId()}, LeaseSecrets: [][]byte{b.GetLeaseSecret()}}); err != nil || !r.GetResults()[0].GetReleased() {
		t.Fatalf("return borrow: %v %v", r, err)
	}
	if _, err := checkoutAs(ctx, t, lc, "lib-2", "lib", "v"); err != nil {
		t.Fatalf("lib after the borrow was returned: %v", err)
	}

	// The client library's borrow: take, extend within the limit, return.
	cl := newClient(t, c.servers())
	bw, err := cl.Borrow(ctx, client.BorrowRequest{Feature: "doc", Version: 1, Duration: 2 * time.Hour})
	if err != nil || !bw.Info().GetBorrowed() || time.Until(bw.Until()) < 110*time.Minute {
		t.Fatalf("client borrow: %v until %v", err, bw)
	}
	if err := bw.Extend(ctx, 25*time.Hour); grpcstatus.Code(err) != codes.FailedPrecondition {
		t.Fatalf("extending past the limit: %v", err)
	}
	if err := bw.Extend(ctx, 20*time.Hour); err != nil || time.Until(bw.Until()) < 19*time.Hour {
		t.Fatalf("extend: %v, until %v", err, bw.Until())
	}
	if err := bw.Return(ctx); err != nil {
		t.Fatal(err)
	}
	if rows := c.usage(c.servers()); usageOf(rows, "doc") != 0 {
		t.Fatalf("doc in use after the return: %+v", rows)
	}

	// The short license expires by itself: no new seat, an alarm, and the
	// leader's commit of the change in its log.
	waitFor(t, 40*time.Second, "short license expired", func() error {
		_, err := checkoutAs(ctx, t, lc, fmt.Sprintf("tmp-%d", time.Now().UnixNano()), "tmp", "u")
		if grpcstatus.Code(err) != codes.PermissionDenied {
			return fmt.Errorf("checkout of tmp: %v", err)
		}
		return nil
	})
	waitFor(t, 5*time.Second, "expiry alarms and committed state", func() error {
		s, err := httpStatusFull(c.members[2])
		if err != nil {
			return err
		}
		if !s.hasAlarm("license_expired") {
			return fmt.Errorf("alarms %+v", s.Alarms)
		}
		for _, m := range c.members {
			if strings.Contains(m.log(), "is now expired (was valid)") {
				return nil
			}
		}
		return fmt.Errorf("no member logged the committed expiry")
	})
	short := serialGranting(t, c.servers(), "tmp")
	wantStatusAlarm(t, c.members[2].addr, "license_expired", short, "license "+short+" expired on ")
}

// serialGranting returns the serial of the one enrolled license that
// grants feature.
func serialGranting(t *testing.T, servers, feature string) string {
	t.Helper()
	var licenses []struct {
		Serial   string
		Features []struct{ Name string }
	}
	ctlJSON(t, servers, &licenses, "license", "list")
	var serials []string
	for _, l := range licenses {
		for _, f := range l.Features {
			if f.Name == feature {
				serials = append(serials, l.Serial)
				break
			}
		}
	}
	if len(serials) != 1 {
		t.Fatalf("licenses granting %s: %v, want one", feature, serials)
	}
	return serials[0]
}

// wantStatusAlarm waits until triadctl cluster status on servers lists an
// alarm of kind about subject whose message contains msg, in the table and
// in the JSON output.
func wantStatusAlarm(t *testing.T, servers, kind, subject, msg string) {
	t.Helper()
	waitFor(t, 10*time.Second, kind+" alarm in triadctl cluster status", func() error {
		out, err := ctlOn(t, servers, "cluster", "status")
		if err != nil {
			return err
		}
		found := false
		for _, line := range strings.Split(out, "\n") {
			found = found || strings.HasPrefix(line, "ALARM "+kind+" ") && strings.Contains(line, msg)
		}
		if !found {
			return fmt.Errorf("table lacks ALARM %s %q:\n%s", kind, msg, out)
		}
		var st struct {
			Alarms []struct {
				Kind, Message, Member, Subject string
				SinceUnixMs                    int64 `json:"since_unix_ms"`
			}
		}
		out, err = ctlOn(t, servers, "--output", "json", "cluster", "status")
		if err != nil {
			return err
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			return fmt.Errorf("bad JSON %q: %v", out, err)
		}
		for _, a := range st.Alarms {
			if a.Kind == kind && a.Subject == subject && a.Member == "" && strings.Contains(a.Message, msg) && a.SinceUnixMs > 0 {
				return nil
			}
		}
		return fmt.Errorf("JSON alarms lack %s about %s with %q: %+v", kind, subject, msg, st.Alarms)
	})
}

// borrowShown checks that triadctl usage leases on servers shows lease id
// as borrowed until endMs, and the other leases as not borrowed.
func borrowShown(t *testing.T, servers string, id uint64, endMs int64) error {
	out, err := ctlOn(t, servers, "usage", "leases")
	if err != nil {
		return err
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 2 || !strings.Contains(lines[0], "  BORROWED UNTIL  ") || !strings.HasSuffix(lines[0], "  STATE") {
		return fmt.Errorf("usage leases: want a header and leases:\n%s", out)
	}
	until := time.UnixMilli(endMs).UTC().Format("2006-01-02 15:04:05 UTC")
	seen := false
	for _, line := range lines[1:] {
		fields := strings.Fields(line)
		switch {
		case fields[0] == fmt.Sprint(id):
			seen = true
			if fields[1] != "lib" || !strings.HasSuffix(line, "  "+until+"  borrowed") {
				return fmt.Errorf("borrowed lease %d shows as %q, want lib borrowed until %s", id, line, until)
			}
		case !strings.Contains(line, "  -  "):
			return fmt.Errorf("lease shows as borrowed: %q", line)
		}
	}
	if !seen {
		return fmt.Errorf("usage leases lacks borrowed lease %d:\n%s", id, out)
	}
	var leases []struct {
		LeaseID       uint64 `json:"lease_id"`
		Feature       string `json:"feature"`
		Borrowed      bool   `json:"borrowed"`
		ExpiresUnixMs int64  `json:"expires_unix_ms"`
	}
	out, err = ctlOn(t, servers, "--output", "json", "usage", "leases")
	if err != nil {
		return err
	}
	if err := json.Unmarshal([]byte(out), &leases); err != nil {
		return fmt.Errorf("bad JSON %q: %v", out, err)
	}
	for _, l := range leases {
		if l.Borrowed != (l.LeaseID == id) {
			return fmt.Errorf("JSON lease %+v: borrowed %v", l, l.Borrowed)
		}
		if l.LeaseID == id && (l.Feature != "lib" || l.ExpiresUnixMs != endMs) {
			return fmt.Errorf("JSON borrowed lease %+v, want lib until %d", l, endMs)
		}
	}
	return nil
}

func usageOf(rows []usageRow, feature string) uint32 {
	var n uint32
	for _, r := range rows {
		if r.Feature == feature {
			n += r.InUse
		}
	}
	return n
}

// Access rules, denial reasons, named seats and the expiry-warning
// setting through triadctl.
func TestRulesDenialsAndSettings(t *testing.T) {
	t.Parallel() // no timing assertion: may share the machine
	c := startCluster(t)
	c.form()
	c.enroll(c.issue("main", "--valid-until", time.Now().AddDate(0, 0, 20).Format("2006-01-02"),
		"--feature", "cad:1:3", "--feature", "view:1:2,model=named-user"))
	servers := c.servers()
	rules := c.writeFile("rules.txt", "GROUP interns ivan\nEXCLUDE cad USER eve AS no-eve\nMAX 1 cad GROUP interns\n")
	if out, err := ctlOn(t, servers, "rules", "set", rules); err != nil || !strings.Contains(out, "2 rule(s), 1 group(s)") {
		t.Fatalf("rules set: %v %q", err, out)
	}
	if _, err := ctlOn(t, servers, "--mode", "restricted", "rules", "set", rules); err == nil || !strings.Contains(err.Error(), "full mode") {
		t.Fatalf("restricted rules set: %v", err)
	}
	if _, err := ctlOn(t, servers, "rules", "set", c.writeFile("bad.txt", "MAX cad USER bob\n")); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("bad rules file: %v", err)
	}
	if out, err := ctlOn(t, servers, "rules", "show"); err != nil || !strings.Contains(out, "EXCLUDE cad USER eve AS no-eve") {
		t.Fatalf("rules show: %v %q", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	lc := licensing(t, c.members[1].addr)
	_, err := checkoutAs(ctx, t, lc, "eve-1", "cad", "eve")
	if grpcstatus.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "denied by rule no-eve") {
		t.Fatalf("eve: %v", err)
	}
	if _, err := checkoutAs(ctx, t, lc, "ivan-1", "cad", "ivan"); err != nil {
		t.Fatalf("ivan's first seat: %v", err)
	}
	if _, err := checkoutAs(ctx, t, lc, "ivan-2", "cad", "ivan"); grpcstatus.Code(err) != codes.PermissionDenied {
		t.Fatalf("ivan's second seat: %v", err)
	}
	if _, err := checkoutAs(ctx, t, lc, "x-1", "nosuch", "bob"); grpcstatus.Code(err) != codes.NotFound {
		t.Fatalf("unknown feature: %v", err)
	}
	var denials struct {
		Denials []struct {
			Feature, Reason string
			Count           json.Number // a JSON number (triadctl writes numbers as numbers)
		}
	}
	ctlJSON(t, c.members[1].addr, &denials, "usage", "denials")
	want := map[string]bool{"cad/denied by rule no-eve": false, "cad/denied by rule MAX 1 cad GROUP interns (line 3)": false}
	for _, d := range denials.Denials {
		if _, ok := want[d.Feature+"/"+d.Reason]; ok {
			want[d.Feature+"/"+d.Reason] = true
		}
	}
	for k, seen := range want {
		if !seen {
			t.Errorf("usage denials lacks %q: %+v", k, denials)
		}
	}
	// With statistics off, denials are no longer counted.
	if _, err := ctlOn(t, servers, "server", "set", "--statistics", "off"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "statistics off on member 1", func() error {
		out, err := ctlOn(t, c.members[1].addr, "usage", "denials")
		if err != nil || !strings.Contains(out, "statistics are off") {
			return fmt.Errorf("%v %q", err, out)
		}
		return nil
	})
	before, _ := ctlOn(t, c.members[1].addr, "--output", "json", "usage", "denials")
	checkoutAs(ctx, t, lc, "eve-2", "cad", "eve")
	if after, _ := ctlOn(t, c.members[1].addr, "--output", "json", "usage", "denials"); after != before {
		t.Fatalf("a denial was counted with statistics off:\n%s\n%s", before, after)
	}

	// Named seats show in usage users; recycling a recent one is refused.
	if _, err := checkoutAs(ctx, t, lc, "view-1", "view", "alice"); err != nil {
		t.Fatal(err)
	}
	out, err := ctlOn(t, servers, "usage", "users")
	if err != nil || !strings.Contains(out, "alice") || !strings.Contains(out, "NAMED SEAT LAST USED") {
		t.Fatalf("usage users: %v\n%s", err, out)
	}
	if _, err := ctlOn(t, servers, "usage", "recycle", "alice", "view"); err == nil || !strings.Contains(err.Error(), "using view now") {
		t.Fatalf("recycling a seat in use: %v", err)
	}
	// The license ends in 20 days: no alarm with the default 7-day warning,
	// an alarm once the warning is 30 days.
	if s, err := httpStatusFull(c.members[0]); err != nil || s.hasAlarm("license_expiring") {
		t.Fatalf("expiring alarm with a 7-day warning: %+v %v", s, err)
	}
	if _, err := ctlOn(t, servers, "server", "set", "--expiry-warning-days", "400"); err == nil || !strings.Contains(err.Error(), "1 to 365") {
		t.Fatalf("out-of-range warning days: %v", err)
	}
	if _, err := ctlOn(t, servers, "server", "set", "--expiry-warning-days", "30"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "expiring alarm", func() error {
		s, err := httpStatusFull(c.members[2])
		if err != nil {
			return err
		}
		if !s.hasAlarm("license_expiring") {
			return fmt.Errorf("alarms %+v", s.Alarms)
		}
		return nil
	})
	serial := serialGranting(t, servers, "cad")
	wantStatusAlarm(t, servers, "license_expiring", serial, "license "+serial+" expires on ")
}

// Automatic recycling: with the setting on, the leader unties named users
// idle for 30 days at 00:00 UTC. The members' clocks are moved (test-only
// flag) to just before a midnight 31 days after the seat was last used.
func TestAutomaticRecyclingAtMidnight(t *testing.T) {
	c := startCluster(t)
	c.form()
	c.enroll(c.issue("named", "--valid-until", time.Now().AddDate(1, 0, 0).Format("2006-01-02"), "--feature", "view:1:1,model=named-user"))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	lc := licensing(t, c.members[0].addr)
	resp, err := checkoutAs(ctx, t, lc, "v-1", "view", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if r, err := lc.Release(ctx, &triadv1.ReleaseRequest{ProtocolVersion: client.ProtocolVersion, LeaseIds: []uint64{resp.GetLease().GetLeaseId()}, LeaseSecrets: [][]byte{resp.GetLeaseSecret()}}); err != nil || !r.GetResults()[0].GetReleased() {
		t.Fatalf("release: %v %v", r, err)
	}
	if _, err := ctlOn(t, c.servers(), "server", "set", "--auto-recycling", "on"); err != nil {
		t.Fatal(err)
	}
	if out, _ := ctlOn(t, c.servers(), "usage", "users"); !strings.Contains(out, "alice") {
		t.Fatalf("alice holds no named seat before the sweep:\n%s", out)
	}
	now := time.Now()
	midnight := now.Add(31 * 24 * time.Hour).UTC().Truncate(24 * time.Hour).Add(24 * time.Hour)
	offset := midnight.Add(-3 * time.Second).Sub(now)
	for _, m := range c.members {
		m.stop()
	}
	for _, m := range c.members {
		m.extra = []string{"--test-clock-offset", offset.String()}
		m.start()
	}
	waitFor(t, 45*time.Second, "alice's idle seat recycled at midnight", func() error {
		out, err := ctlOn(t, c.servers(), "usage", "users")
		if err != nil {
			return err
		}
		if strings.Contains(out, "alice") {
			return fmt.Errorf("alice still tied:\n%s", out)
		}
		return nil
	})
	if _, err := checkoutAs(ctx, t, licensing(t, c.members[1].addr), "v-2", "view", "bob"); err != nil {
		t.Fatalf("bob after the sweep: %v", err)
	}
}
