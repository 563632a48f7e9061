package server

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"

	"github.com/triadlm/triad/admin"
	"github.com/triadlm/triad/proto/triadv1"
)

// AdminSocketName is the Unix socket, in the data directory, on which a
// tool running on the member's own host connects as a local administrator
// (`triadctl --local --data-dir DIR`). Every TCP connection is remote.
const AdminSocketName = "admin.sock"

// AdminSocket returns the path of the local admin socket of a data directory.
func AdminSocket(dataDir string) string { return filepath.Join(dataDir, AdminSocketName) }

// serveLocalAdmin serves the Admin service (only) on the Unix socket,
// owner-only (0600, in a 0700 data directory). Failing to create it
// leaves the member running without local administration, and says so.
func (s *Server) serveLocalAdmin(svc *admin.Service) {
	path := AdminSocket(s.cfg.DataDir)
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Error("local admin socket unavailable: cannot remove the old socket", "path", path, "error", err)
		return
	}
	lis, err := listenUnix(path)
	if err != nil {
		s.log.Error("local admin socket unavailable", "path", path, "error", err)
		return
	}
	srv := grpc.NewServer(grpc.UnaryInterceptor(s.fenceInterceptor))
	triadv1.RegisterAdminServer(srv, svc)
	s.adm.localSrv, s.adm.localLis = srv, lis
	s.goRun(func() {
		if err := srv.Serve(lis); err != nil {
			s.log.Error("local admin socket server stopped", "error", err)
		}
	})
}

func listenUnix(path string) (net.Listener, error) {
	if len(path) > 104 { // sun_path is 104–108 bytes depending on the system
		return nil, fmt.Errorf("socket path %s is %d bytes, too long for a Unix socket: use a shorter --data-dir", path, len(path))
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		lis.Close()
		return nil, fmt.Errorf("restrict %s to its owner: %w", path, err)
	}
	return lis, nil
}

// stopLocalAdmin stops the local admin server and removes its socket.
func (s *Server) stopLocalAdmin() {
	if s.adm == nil || s.adm.localSrv == nil {
		return
	}
	done := make(chan struct{})
	go func() { s.adm.localSrv.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		s.adm.localSrv.Stop()
	}
	os.Remove(AdminSocket(s.cfg.DataDir))
}
