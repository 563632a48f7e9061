package failover

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/triadlm/triad/server/pki"
)

// memberCreds issues a certificate of kind named name under ca.
func memberCreds(t *testing.T, ca *pki.CA, caFile string, kind pki.Kind, name string) *pki.Creds {
	t.Helper()
	is, err := ca.Issue(kind, name, []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, k, err := pki.WriteIssued(t.TempDir(), name, is)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := pki.LoadCreds(pki.Files{CA: caFile, Cert: c, Key: k})
	if err != nil {
		t.Fatal(err)
	}
	return creds
}

func newCA(t *testing.T) (*pki.CA, string) {
	t.Helper()
	ca, err := pki.NewCA("test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := ca.Save(dir); err != nil {
		t.Fatal(err)
	}
	return ca, filepath.Join(dir, pki.CACertFile)
}

// side starts a failover port with a health service on its Peer side.
func side(t *testing.T, creds *pki.Creds) *Side {
	t.Helper()
	s, err := Listen("127.0.0.1:0", "", net.Dialer{}, creds)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(s.ServerOptions()...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(s.PeerListener())
	t.Cleanup(func() { srv.Stop(); s.Close() })
	return s
}

func check(conn *grpc.ClientConn) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

// The failover port speaks to members of its cluster only: another CA's
// member, a client certificate of the right CA, no certificate, plaintext,
// and after formation a member certificate naming no member are refused;
// the members themselves get through, for the Peer service and for Raft.
func TestFailoverPortAdmitsOnlyMembers(t *testing.T) {
	ca, caFile := newCA(t)
	other, otherFile := newCA(t)
	alpha := side(t, memberCreds(t, ca, caFile, pki.Member, "alpha"))
	bravo := side(t, memberCreds(t, ca, caFile, pki.Member, "bravo"))
	addr := bravo.Addr().String()

	conn, err := alpha.Conn(addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := check(conn); err != nil {
		t.Fatalf("member to member: %v", err)
	}
	attackers := map[string]*pki.Creds{
		"another CA's member certificate": memberCreds(t, other, otherFile, pki.Member, "alpha"),
		"a client certificate":            memberCreds(t, ca, caFile, pki.Client, "alpha"),
	}
	noCert, err := pki.LoadCreds(pki.Files{CA: caFile})
	if err != nil {
		t.Fatal(err)
	}
	attackers["no certificate"] = noCert
	for name, creds := range attackers {
		c, err := DialPeer(addr, creds)
		if err != nil {
			t.Fatal(err)
		}
		if err := check(c); err == nil {
			t.Errorf("%s: admitted", name)
		}
		c.Close()
	}
	plain, err := DialPeer(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if err := check(plain); err == nil {
		t.Error("plaintext: admitted")
	}

	// Formed as alpha, bravo, charlie: a CA-signed member "mallory" is out.
	bravo.SetMembers([]string{"alpha", "bravo", "charlie"})
	mallory, err := DialPeer(addr, memberCreds(t, ca, caFile, pki.Member, "mallory"))
	if err != nil {
		t.Fatal(err)
	}
	defer mallory.Close()
	// Refused during the handshake; the client sees "bad certificate" or,
	// when the server closes first, a broken pipe: any error, while the
	// formed member below still gets through.
	if err := check(mallory); err == nil {
		t.Error("a member certificate of no member was admitted after formation")
	}
	fresh := side(t, memberCreds(t, ca, caFile, pki.Member, "alpha"))
	c2, _ := fresh.Conn(addr)
	if err := check(c2); err != nil {
		t.Errorf("a formed member after SetMembers: %v", err)
	}

	// Raft's stream: dialled and accepted through the same port.
	got := make(chan string, 1)
	go func() {
		c, err := bravo.RaftLayer().Accept()
		if err != nil {
			got <- err.Error()
			return
		}
		defer c.Close()
		b := make([]byte, 4)
		io.ReadFull(c, b)
		got <- string(b)
	}()
	rc, err := alpha.RaftLayer().Dial(bravoAddr(bravo), 3*time.Second)
	if err != nil {
		t.Fatalf("raft dial: %v", err)
	}
	rc.Write([]byte("raft"))
	defer rc.Close()
	select {
	case s := <-got:
		if s != "raft" {
			t.Fatalf("raft stream carried %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("raft stream not accepted")
	}
	// A Raft stream from a non-member never reaches Raft.
	outsider := side(t, memberCreds(t, other, otherFile, pki.Member, "alpha"))
	if c, err := outsider.RaftLayer().Dial(bravoAddr(bravo), 3*time.Second); err == nil {
		c.Close()
		t.Error("another CA's member opened a Raft stream")
	}
}

func bravoAddr(s *Side) raftAddr { return raftAddr(s.Addr().String()) }

type raftAddr = raft.ServerAddress

// A connection that sends an unknown header byte, or nothing, is closed.
func TestFailoverPortDropsUnknownTraffic(t *testing.T) {
	ca, caFile := newCA(t)
	s := side(t, memberCreds(t, ca, caFile, pki.Member, "alpha"))
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if n, err := c.Read(make([]byte, 16)); err == nil || n > 0 {
		t.Errorf("an HTTP request got %d bytes, %v; want the connection closed", n, err)
	}
}
