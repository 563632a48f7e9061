package server

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/triadlm/triad/admin"
	"github.com/triadlm/triad/fsm"
	"github.com/triadlm/triad/proto/fsmpb"
	"github.com/triadlm/triad/proto/triadv1"
)

// unformedServer is a member as far as member-only sessions go: an FSM
// without a cluster, no Raft (nothing here needs it before formation).
func unformedServer(t *testing.T) *Server {
	t.Helper()
	s := &Server{cfg: Config{Name: "alpha"}, fsm: fsm.New(), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	s.adm = newAdminSide(s.nowMs())
	return s
}

// markFormed makes s formed, as a bootstrap does (the FSM has not recorded it yet).
func markFormed(s *Server) {
	s.formMu.Lock()
	s.formation = &fsmpb.FormCluster{Mode: ModeStandalone, Members: []*fsmpb.Member{{Name: "alpha"}}}
	s.formMu.Unlock()
}

func remoteCtx(port int) context.Context {
	return peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}})
}

func localCtx() context.Context {
	return peer.NewContext(context.Background(), &peer.Peer{Addr: &net.UnixAddr{Name: "/data/admin.sock", Net: "unix"}})
}

func connectAs(t *testing.T, svc *admin.Service, ctx context.Context, mode string) (string, error) {
	t.Helper()
	r, err := svc.Connect(ctx, &triadv1.ConnectRequest{Header: &triadv1.AdminHeader{ProtocolVersion: admin.ProtocolVersion}, Mode: mode})
	if err != nil {
		return "", err
	}
	return r.SessionToken, nil
}

func mustConnect(t *testing.T, svc *admin.Service, ctx context.Context, mode string) string {
	t.Helper()
	tok, err := connectAs(t, svc, ctx, mode)
	if err != nil {
		t.Fatalf("connect %s: %v", mode, err)
	}
	return tok
}

// wantRefused checks that the token's next use fails UNAUTHENTICATED with
// exactly msg.
func wantRefused(t *testing.T, s *Server, what, tok, msg string) {
	t.Helper()
	_, err := s.UseSession(context.Background(), admin.TokenID(tok))
	if st := status.Convert(err); st.Code() != codes.Unauthenticated || st.Message() != msg {
		t.Fatalf("%s: %v %q, want Unauthenticated %q", what, st.Code(), st.Message(), msg)
	}
}

// TestMemberOnlySessionsOneFullLocalPriority: before formation the member
// keeps sessions itself, with the rules of the replicated state: one full
// session, refused to a second remote tool with the holder's origin, taken
// over by a local tool (the holder's next call says why).
func TestMemberOnlySessionsOneFullLocalPriority(t *testing.T) {
	s := unformedServer(t)
	svc := admin.NewService(s, Version)
	remote := mustConnect(t, svc, remoteCtx(5001), admin.ModeFull)
	_, err := connectAs(t, svc, remoteCtx(5002), admin.ModeFull)
	if st := status.Convert(err); st.Code() != codes.FailedPrecondition || !strings.Contains(st.Message(), "full access is already held by remote tool 127.0.0.1:5001 via alpha, connected") {
		t.Fatalf("second remote full connect: %v %q, want FailedPrecondition naming the holder", st.Code(), st.Message())
	}
	ro := mustConnect(t, svc, remoteCtx(5003), admin.ModeRestricted)
	if _, err := s.UseSession(context.Background(), admin.TokenID(remote)); err != nil {
		t.Fatalf("the holder's session: %v", err)
	}

	local := mustConnect(t, svc, localCtx(), admin.ModeFull)
	wantRefused(t, s, "displaced remote session", remote, fsm.ReasonDisplaced)
	wantRefused(t, s, "displaced remote session, again", remote, fsm.ReasonDisplaced)
	if _, err := s.UseSession(context.Background(), admin.TokenID(ro)); err != nil {
		t.Fatalf("a restricted session is not displaced: %v", err)
	}
	// The local tool holds full access now: remote tools are refused, a
	// second local tool takes it over.
	_, err = connectAs(t, svc, remoteCtx(5004), admin.ModeFull)
	if st := status.Convert(err); !strings.Contains(st.Message(), "full access is already held by local tool on alpha") {
		t.Fatalf("remote full connect while a local tool holds full access: %v", err)
	}
	local2 := mustConnect(t, svc, localCtx(), admin.ModeFull)
	wantRefused(t, s, "displaced local session", local, fsm.ReasonDisplaced)
	var full []string
	for _, ss := range s.Sessions(context.Background()) {
		if ss.Mode == admin.ModeFull {
			full = append(full, ss.ID)
		}
	}
	if len(full) != 1 || full[0] != admin.TokenID(local2) {
		t.Fatalf("full sessions listed %v, want only the second local tool's", full)
	}
	// Closing frees full access.
	if err := s.CloseSession(context.Background(), admin.TokenID(local2)); err != nil {
		t.Fatal(err)
	}
	if err := s.CloseSession(context.Background(), admin.TokenID(local)); err != nil {
		t.Fatalf("closing a displaced session: %v", err)
	}
	mustConnect(t, svc, remoteCtx(5005), admin.ModeFull)
}

// TestFormationEndsMemberOnlySessions: the sessions opened before
// formation are unknown to the replicated state; once the member is formed
// their next call fails with the formation message and they leave the
// listings. A restricted member-only session opened after formation (no
// leader) is not affected.
func TestFormationEndsMemberOnlySessions(t *testing.T) {
	s := unformedServer(t)
	svc := admin.NewService(s, Version)
	full := mustConnect(t, svc, localCtx(), admin.ModeFull)
	ro := mustConnect(t, svc, remoteCtx(5001), admin.ModeRestricted)
	if n := len(s.Sessions(context.Background())); n != 2 {
		t.Fatalf("%d sessions before formation, want 2", n)
	}

	markFormed(s)
	wantRefused(t, s, "full session opened before formation", full, ReasonFormed)
	wantRefused(t, s, "full session opened before formation, again", full, ReasonFormed)
	// After formation a restricted connect without a leader is member-only.
	after := &admin.Session{ID: "after", Mode: admin.ModeRestricted, Origin: "remote tool", Member: "alpha", MemberOnly: true}
	if err := s.OpenSession(context.Background(), after, 0); err != nil {
		t.Fatal(err)
	}
	s.sweepMemberOnly()
	wantRefused(t, s, "restricted session opened before formation", ro, ReasonFormed)
	if _, err := s.UseSession(context.Background(), "after"); err != nil {
		t.Fatalf("a member-only session opened after formation: %v", err)
	}
	if ss := s.Sessions(context.Background()); len(ss) != 1 || ss[0].ID != "after" {
		t.Fatalf("sessions after formation: %+v, want only the one opened after it", ss)
	}
	if err := s.CloseSession(context.Background(), admin.TokenID(full)); err != nil {
		t.Fatalf("closing a session ended by formation: %v", err)
	}
}

// TestMemberOnlySessionIdle: an idle member-only session's next call fails
// with the idle message, and it no longer holds full access.
func TestMemberOnlySessionIdle(t *testing.T) {
	s := unformedServer(t)
	svc := admin.NewService(s, Version)
	tok := mustConnect(t, svc, remoteCtx(5001), admin.ModeFull)
	s.cfg.ClockOffset = fsm.DefaultSessionIdleTimeout + time.Second
	wantRefused(t, s, "idle session", tok, "disconnected: the session was idle for more than 30m0s; connect again")
	mustConnect(t, svc, remoteCtx(5002), admin.ModeFull)
}
