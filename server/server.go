// Package server is the Triad member daemon: it wires Raft (raft-boltdb log
// and stable store, file snapshots, TCP transport), the replicated FSM, the
// gRPC services (Licensing, Admin, Peer, health), forwarding of writes from
// followers to the leader, the leader's duties and the HTTP status endpoints.
package server

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/triadlm/triad/admin"
	"github.com/triadlm/triad/fsm"
	"github.com/triadlm/triad/internal/buildinfo"
	"github.com/triadlm/triad/license"
	"github.com/triadlm/triad/membership"
	"github.com/triadlm/triad/notify"
	"github.com/triadlm/triad/proto/fsmpb"
	"github.com/triadlm/triad/proto/peerpb"
	"github.com/triadlm/triad/proto/triadv1"
	"github.com/triadlm/triad/server/failover"
	"github.com/triadlm/triad/server/pki"
)

// Version is the member software version (internal/buildinfo: set by the
// Makefile's -ldflags, else from the module and VCS stamp).
var Version = buildinfo.Get().Version

// PeerProtocolVersion must match between members for them to form a cluster.
const PeerProtocolVersion = 1

// Server is one Triad member.
type Server struct {
	cfg        Config
	log        *slog.Logger
	hlog       hclog.Logger
	logFile    io.Closer
	computerID string
	// machineProof ties computerID to this machine (backups record it).
	machineProof string
	trusted      []ed25519.PublicKey

	fsm    *fsm.FSM
	node   *raftNode
	notify chan bool
	// lclock is the leader's now for commands (leaderclock.go).
	lclock *leaderClock
	// clockStep is a test-only step of the wall clock, in ns, read from
	// --test-clock-file while the member runs.
	clockStep atomic.Int64
	// consistentReady is set once this leader's barrier has committed an
	// entry of its term, cleared when leadership ends: only then does its
	// commit index answer consistent reads (as Consul's
	// readyForConsistentReads).
	consistentReady atomic.Bool
	mon             *membership.Monitor
	side            *failover.Side // the failover port: Raft and the Peer service
	peerSrv         *grpc.Server
	public          *pki.Creds // licensing port TLS; nil with --insecure
	applyQ          *batcher
	fwdQ            *batcher
	fwd             forwarder // the stream fwdQ's batches go over (fwdstream.go)
	callWorkers     *workers  // Session calls (workers.go)
	health          *health.Server

	metrics *metrics // nil in handler tests without a server
	adm     *adminSide
	audit   *auditLog // nil in handler tests without a server
	tracer  *tracer   // usage tracing (trace.go); nil in handler tests
	// notifier sends mail and webhook notifications (notify.go).
	notifier    *notify.Notifier
	notifyCount *prometheus.CounterVec

	startedMs int64 // when this process started (unix ms)
	// haltedSince is when this member noticed its FSM halted (unix ms; 0:
	// it applies the log). upgrade.go.
	haltedSince atomic.Int64

	peerDisk peerDiskFaults // peers that answer pings with a disk fault (diskfault.go)

	formMu    sync.Mutex
	formation *fsmpb.FormCluster // guarded by formMu; nil until bootstrapped

	grpcSrv *grpc.Server
	grpcLis net.Listener
	httpSrv *http.Server
	httpLis net.Listener

	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	stopOnce sync.Once
}

// New starts a member: it opens its data directory and Raft, and serves
// gRPC and HTTP. It returns when the member is listening.
func New(cfg Config) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory %s: %w", cfg.DataDir, err)
	}
	s := &Server{cfg: cfg, notify: make(chan bool, 16), startedMs: time.Now().UnixMilli()}
	s.lclock = newLeaderClock(s.now)
	var logw io.Writer = os.Stderr
	if cfg.LogFile != "" {
		w, err := openLogFile(cfg.LogFile, cfg.LogMaxMB, cfg.LogKeep)
		if err != nil {
			return nil, err
		}
		s.logFile = w
		logw = w
	}
	s.log = slog.New(slog.NewJSONHandler(logw, nil)).With("member", cfg.Name)
	s.hlog = hclogger("raft", cfg.Name, logw)
	useGRPCLog(s.log)
	s.ctx, s.cancel = context.WithCancel(context.Background())

	if err := s.open(); err != nil {
		s.log.Error("member did not start", "error", err.Error())
		s.cancel()
		if s.node != nil {
			s.node.shutdown(s.hlog)
		}
		if s.side != nil {
			s.side.Close()
		}
		s.closeAudit()
		if s.notifier != nil {
			s.notifier.Close()
		}
		if s.logFile != nil {
			s.logFile.Close()
		}
		return nil, err
	}
	return s, nil
}

func (s *Server) open() error {
	var err error
	if s.computerID, err = membership.ComputerID(s.cfg.DataDir); err != nil {
		return err
	}
	machine := membership.MachineID()
	if s.cfg.MachineID != "" {
		machine = s.cfg.MachineID
	}
	s.machineProof = membership.MachineProof(machine, s.computerID)
	for _, path := range s.cfg.Trust {
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("read trusted vendor key: %w", err)
		}
		pub, err := license.ParsePublicKey(b)
		if err != nil {
			return fmt.Errorf("trusted vendor key %s: %w", path, err)
		}
		s.trusted = append(s.trusted, pub)
	}
	if s.formation, err = membership.LoadFormation(s.cfg.DataDir); err != nil {
		return err
	}
	var memberCreds, clientCA *pki.Creds
	if !s.cfg.Insecure {
		if memberCreds, err = pki.LoadCreds(pki.Files{CA: s.cfg.TLSCA, Cert: s.cfg.TLSCert, Key: s.cfg.TLSKey}); err != nil {
			return err
		}
		if leaf := memberCreds.Leaf(); leaf == nil || !pki.IsMember(leaf) {
			return fmt.Errorf("--tls-cert %s is not a member certificate (organizational unit %s): issue one with `triadd tls issue --member NAME`", s.cfg.TLSCert, pki.MemberOU)
		}
		if s.cfg.TLSClientCA != "" {
			if clientCA, err = pki.LoadCreds(pki.Files{CA: s.cfg.TLSClientCA}); err != nil {
				return err
			}
		}
		s.public = memberCreds
	}
	if s.side, err = failover.Listen(s.cfg.RaftListen, s.cfg.RaftAdvertise, peerDialer(&s.cfg), memberCreds); err != nil {
		return err
	}
	s.fsm = fsm.New()
	s.fsm.SetMaxFormat(s.cfg.TestFormat)
	s.fsm.AnswerProposedOnly()
	if err := s.openAudit(); err != nil {
		s.side.Close()
		return err
	}
	s.openTracer()
	if s.node, err = openRaft(&s.cfg, s.side.RaftLayer(), s.fsm, s.notify, s.hlog); err != nil {
		s.side.Close()
		return err
	}
	s.node.disk.arm(s.fenceDisk)
	s.tracer.raftOpened(s.node.raft.LastIndex())
	s.mon = membership.NewMonitor(s.cfg.Name, 0, 0, s.pingPeer, s.now)
	s.mon.SetIsolationAfter(s.cfg.IsolationAfter)
	s.mon.SetBuild(s.build)
	s.mon.OnEvent(func(e membership.Event) { s.log.Warn(e.Message, "event", e.Kind, "member", e.Member) })
	s.mon.SetLeaderFunc(s.leaderForMonitor)
	s.openNotifier()
	s.mon.OnEvent(s.onMonitorEvent)
	s.setPeers(s.formation)
	// One batch in flight on the leader: everything that arrives while it
	// commits goes into the next entry. Measured on 2 cores with 64
	// clients: pipeline 1 gives ~40 % more cycles/s than 4 (fewer, larger
	// entries: less Raft and bolt work per request).
	s.applyQ = newBatcher(1024, 1, s.flushLocal)
	// Up to forwardPipeline forwarded batches in flight on a follower, on
	// one Peer.ForwardStream (fwdstream.go, docs/performance.md session 7).
	s.fwdQ = newBatcher(1024, forwardPipeline, nil)
	s.fwdQ.flushThen = s.flushForward
	s.callWorkers = newWorkers(sessionWorkers, s.ctx.Done())
	s.metrics = newMetrics(s.metricsSource())
	s.registerAuditMetrics()
	s.registerNotifyMetrics()
	s.registerTraceMetrics()

	if s.grpcLis, err = net.Listen("tcp", s.cfg.Listen); err != nil {
		return fmt.Errorf("listen for gRPC on %s: %w", s.cfg.Listen, err)
	}
	if s.httpLis, err = net.Listen("tcp", s.cfg.HTTPListen); err != nil {
		s.grpcLis.Close()
		return fmt.Errorf("listen for HTTP on %s: %w", s.cfg.HTTPListen, err)
	}
	// Fixed flow-control windows (1 MiB) switch off gRPC's BDP estimator,
	// which otherwise pings on every burst of small requests: extra frames,
	// writes and wake-ups per RPC for nothing, since requests are tiny.
	// Stream workers run handlers on long-lived goroutines whose stacks
	// have already grown, instead of a fresh goroutine per RPC
	// (runtime.morestack/copystack was ~9 % of the leader's CPU under
	// `make bench`); when all are busy gRPC starts a goroutine as before.
	// Per connection memory, for sites with a thousand client processes:
	// no read buffer (TLS already reads whole records into its own), and
	// the write buffer goes back to a shared pool after each flush — 32 KiB
	// each, ~60 MiB for 1,000 idle connections (docs/performance.md).
	publicCreds := insecure.NewCredentials()
	if s.public != nil {
		publicCreds = credentials.NewTLS(s.public.PublicServer(clientCA))
	}
	s.grpcSrv = grpc.NewServer(grpc.Creds(publicCreds),
		grpc.ChainUnaryInterceptor(s.fenceInterceptor, s.haltedUnary), grpc.ChainStreamInterceptor(s.haltedStream),
		grpc.MaxRecvMsgSize(MaxPublicMessage), grpc.MaxSendMsgSize(MaxPublicReply),
		grpc.InitialWindowSize(flowWindow), grpc.InitialConnWindowSize(flowWindow),
		grpc.NumStreamWorkers(streamWorkers),
		grpc.ReadBufferSize(0), grpc.SharedWriteBuffer(true))
	triadv1.RegisterLicensingServer(s.grpcSrv, &licensingService{s: s, m: s.metrics})
	s.adm = newAdminSide(s.nowMs())
	adminSvc := admin.NewService(s, Version)
	if s.cfg.ThrottleEvery > 0 {
		adminSvc.SetThrottle(admin.NewThrottle(admin.DefaultThrottleBurst, s.cfg.ThrottleEvery, nil))
	}
	triadv1.RegisterAdminServer(s.grpcSrv, adminSvc)
	s.serveLocalAdmin(adminSvc)
	// The Peer service lives on the failover port only (package failover).
	s.peerSrv = grpc.NewServer(s.side.ServerOptions()...)
	peerpb.RegisterPeerServer(s.peerSrv, &peerService{s: s})
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(s.grpcSrv, s.health)
	s.httpSrv = &http.Server{Handler: s.httpHandler(), ReadHeaderTimeout: 5 * time.Second}
	s.mon.SetHTTPURL(s.ownHTTPURL())

	s.goRun(func() { s.applyQ.run(s.ctx) })
	s.goRun(func() { s.fwdQ.run(s.ctx) })
	s.goRun(func() { s.mon.Run(s.ctx) })
	s.goRun(s.watchLeadership)
	if s.cfg.ClockFile != "" {
		s.goRun(s.watchClockFile)
	}
	s.goRun(s.healthLoop)
	s.goRun(s.watchSettings)
	s.goRun(s.notifyLoop)
	s.goRun(func() {
		if err := s.grpcSrv.Serve(s.grpcLis); err != nil {
			s.log.Error("gRPC server stopped", "error", err)
		}
	})
	s.goRun(func() {
		if err := s.peerSrv.Serve(s.side.PeerListener()); err != nil {
			s.log.Error("Peer server stopped", "error", err)
		}
	})
	s.goRun(func() {
		serve := s.httpSrv.Serve
		if s.cfg.HTTPTLS {
			s.httpSrv.TLSConfig = s.public.PublicServer(nil)
			serve = func(l net.Listener) error { return s.httpSrv.ServeTLS(l, "", "") }
		}
		if err := serve(s.httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("HTTP server stopped", "error", err)
		}
	})
	if s.cfg.Insecure {
		s.log.Warn("INSECURE: running without TLS (--insecure): passwords, session tokens and the failover port are in plaintext and any host that reaches the failover port can act as a member; use only on a trusted network")
	}
	s.log.Info("member started", "version", Version, "commit", buildinfo.Get().Commit, "format", s.fsm.MaxFormat(), "computer_id", s.computerID,
		"listen", s.Addr(), "raft", s.RaftAddr(), "http", s.HTTPAddr(), "mode", s.mode(), "tls", !s.cfg.Insecure)
	if s.cfg.AddrFile != "" {
		if err := writeAddrFile(s.cfg.AddrFile, s.Addr(), s.RaftAddr(), s.HTTPAddr()); err != nil {
			s.log.Error("cannot write the address file", "path", s.cfg.AddrFile, "error", err)
		}
	}
	s.notifier.Send(notify.Event{Kind: notify.MemberStart, Member: s.cfg.Name, Message: "Member " + s.cfg.Name + " started (version " + Version + ", " + s.mode() + ")."})
	return nil
}

func (s *Server) goRun(f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

// Addr is the licensing gRPC address the member listens on.
func (s *Server) Addr() string { return s.grpcLis.Addr().String() }

// RaftAddr is the failover (Raft + Peer) address the member listens on.
func (s *Server) RaftAddr() string { return s.side.Addr().String() }

// HTTPAddr is the HTTP status address.
func (s *Server) HTTPAddr() string { return s.httpLis.Addr().String() }

// now is this member's wall clock (shifted by the test-only clock offset).
func (s *Server) now() time.Time {
	return time.Now().Add(s.cfg.ClockOffset + time.Duration(s.clockStep.Load()))
}

// stampMs is the now the leader stamps into a command (leaderClock).
func (s *Server) stampMs() int64 { return s.lclock.nowMs(s.fsm.LastNowMs()) }

func (s *Server) nowMs() int64 { return s.now().UnixMilli() }

// Stop shuts the member down in order: hand leadership over, stop taking
// requests, stop Raft, close the stores. Idempotent.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		s.log.Info("member stopping")
		s.notifyStop()
		s.health.Shutdown()
		if s.isLeader() {
			if err := s.node.raft.LeadershipTransfer().Error(); err != nil {
				s.log.Warn("leadership transfer failed", "error", err)
			} else {
				s.log.Info("leadership transferred")
			}
		}
		done := make(chan struct{})
		go func() { s.grpcSrv.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			s.grpcSrv.Stop()
		}
		s.stopLocalAdmin()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		s.httpSrv.Shutdown(ctx)
		cancel()
		s.cancel()
		s.peerSrv.Stop()
		s.node.shutdown(s.hlog)
		s.side.Close()
		s.wg.Wait()
		s.closeAudit()
		s.notifier.Close()
		s.log.Info("member stopped")
		if s.logFile != nil {
			s.logFile.Close()
		}
	})
}

// Message size limits of the licensing/admin port: requests are small
// (a license file is a few KiB; batches are capped in ops and bytes);
// replies may list many leases.
const (
	MaxPublicMessage = 4 << 20
	MaxPublicReply   = 64 << 20
)

// flowWindow is the fixed HTTP/2 stream and connection window.
const flowWindow = 1 << 20

// streamWorkers is the number of gRPC stream workers: more than the
// requests a busy member has waiting on a batch at once.
const streamWorkers = 256

// watchClockFile (test only, --test-clock-file) steps this member's wall
// clock while it runs: the file holds a duration ("1h", "-30m") added to
// the clock; a missing or unreadable file is a step of zero.
func (s *Server) watchClockFile() {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		var step time.Duration
		if b, err := os.ReadFile(s.cfg.ClockFile); err == nil {
			step, _ = time.ParseDuration(strings.TrimSpace(string(b)))
		}
		if old := time.Duration(s.clockStep.Swap(int64(step))); old != step {
			s.log.Warn("test clock stepped", "step", step)
		}
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
	}
}
