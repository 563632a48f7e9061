package server

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/admin"
	"github.com/triadlm/triad/proto/triadv1"
	"github.com/triadlm/triad/server/audit"
)

// In a three-member cluster, an administration command served by one
// member is in every member's audit log, with the same Raft index, time
// and actor; an authentication failure is only in the log of the member
// that saw it.
func TestAuditOnEveryMember(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three members")
	}
	var members []*Server
	var dirs []string
	for _, name := range []string{"alpha", "beta", "gamma"} {
		dir := t.TempDir()
		dirs = append(dirs, dir)
		members = append(members, startMember(t, Config{Name: name, DataDir: dir, Listen: "127.0.0.1:0", RaftListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0"}))
	}
	ctx := context.Background()
	alpha := admin.NewService(members[0], Version)
	tok, err := connectPW(alpha, localCtx(), admin.ModeFull, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alpha.ClusterCreate(ctx, &triadv1.ClusterCreateRequest{Header: adminHeader(tok),
		Members: []string{members[0].Addr(), members[1].Addr(), members[2].Addr()}}); err != nil {
		t.Fatalf("form: %v", err)
	}
	for _, m := range members {
		waitFor(t, m.cfg.Name+" formed with a leader", func() bool {
			addr, _ := m.leaderAddr()
			return m.fsm.Cluster() != nil && addr != ""
		})
	}

	// A settings change served by beta.
	beta := admin.NewService(members[1], Version)
	var btok string
	waitFor(t, "a full session on beta", func() bool {
		btok, err = connectPW(beta, localCtx(), admin.ModeFull, "")
		return err == nil
	})
	if _, err := beta.ServerSet(ctx, &triadv1.ServerSetRequest{Header: adminHeader(btok), AutoRecycling: proto.Bool(true)}); err != nil {
		t.Fatalf("server set on beta: %v", err)
	}
	// A wrong password seen by gamma only (a password is needed now that one is set).
	if _, err := beta.PasswordSet(ctx, &triadv1.PasswordSetRequest{Header: adminHeader(btok), Which: admin.ModeFull, NewPassword: "Pa55-word"}); err != nil {
		t.Fatalf("password set on beta: %v", err)
	}
	gamma := admin.NewService(members[2], Version)
	waitFor(t, "gamma applied the password", func() bool { return len(members[2].fsm.AdminAuth().GetFullHash()) > 0 })
	if _, err := connectPW(gamma, fromIP("10.1.2.3"), admin.ModeFull, "nope"); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("wrong password on gamma: %v", err)
	}

	find := func(i int, pred func(audit.Record) bool) (audit.Record, bool) {
		recs, _ := readAudit(t, dirs[i])
		for _, r := range recs {
			if pred(r) {
				return r, true
			}
		}
		return audit.Record{}, false
	}
	isSettings := func(r audit.Record) bool { return r.Kind == audit.KindApplied && r.Command == "set_settings" }
	var got []string
	for i, m := range members {
		var r audit.Record
		waitFor(t, m.cfg.Name+" audited set_settings", func() bool {
			var ok bool
			r, ok = find(i, isSettings)
			return ok
		})
		if r.Args["settings.auto_recycling"] != "true" || r.Who == nil || !strings.Contains(r.Who.Origin, "local tool on beta") || r.Outcome != audit.Accepted {
			t.Errorf("%s: set_settings recorded as %+v", m.cfg.Name, r)
		}
		got = append(got, fmt.Sprintf("index %d time %s", r.RaftIndex, r.Time))
		if r.Member != m.cfg.Name {
			t.Errorf("%s's record says member %q", m.cfg.Name, r.Member)
		}
	}
	t.Logf("set_settings on each member: %v", got)
	if got[0] != got[1] || got[1] != got[2] {
		t.Fatalf("the same command recorded differently: %v", got)
	}
	isFailure := func(r audit.Record) bool {
		return r.Kind == audit.KindAuthFailure && r.Who != nil && r.Who.Source == "10.1.2.3"
	}
	waitFor(t, "gamma audited the wrong password", func() bool { _, ok := find(2, isFailure); return ok })
	for i := 0; i < 2; i++ {
		if _, ok := find(i, isFailure); ok {
			t.Errorf("%s recorded gamma's authentication failure", members[i].cfg.Name)
		}
	}
	for i, d := range dirs {
		// All records written (Stop flushes); the chains verify.
		members[i].Stop()
		if rep, err := audit.VerifyDir(filepath.Join(d, auditDir)); err != nil || rep.Broken != nil {
			t.Fatalf("%s: verify: %+v %v", members[i].cfg.Name, rep, err)
		}
	}
}
