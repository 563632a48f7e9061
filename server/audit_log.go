package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/triadlm/triad/admin"
	"github.com/triadlm/triad/fsm"
	"github.com/triadlm/triad/proto/fsmpb"
	"github.com/triadlm/triad/proto/triadv1"
	"github.com/triadlm/triad/server/audit"
)

// The member's audit log (DESIGN §10, docs/security.md): every
// administration command this member's FSM applies (so every member records
// every committed command), the authentication failures this member saw,
// and the force-releases it served. Apply only queues records (through the
// FSM's admin observer); one goroutine writes them. After a restart Raft
// replays the log since its last snapshot: the writer skips the Raft
// indexes it already recorded.

// auditDir is the audit log's directory under the data directory.
const auditDir = "audit"

// maxAuditQueue bounds the records waiting for the disk; beyond it records
// are dropped, logged and counted (the disk is failing anyway).
const maxAuditQueue = 100000

type auditLog struct {
	w   *audit.Writer
	log *slog.Logger

	mu      sync.Mutex
	q       []audit.Record
	dropped uint64
	failing bool
	// writeMu serializes writes and verification (so a check sees every
	// record queued before it, and a head that matches the file).
	writeMu sync.Mutex
	wake    chan struct{}

	failures *prometheus.CounterVec
}

// openAudit opens DATA_DIR/audit and hooks it to the FSM. Call it before
// Raft starts applying entries.
func (s *Server) openAudit() error {
	w, err := audit.Open(filepath.Join(s.cfg.DataDir, auditDir), audit.Options{Member: s.cfg.Name})
	if err != nil {
		return fmt.Errorf("open audit log: %w", err)
	}
	a := &auditLog{w: w, log: s.log, wake: make(chan struct{}, 1),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "triad_admin_auth_failures_total",
			Help: "Administration authentication failures seen by this member, by mode asked and reason (wrong_password, throttled, policy).",
		}, []string{"mode", "reason"}),
	}
	// Raft storage that is not there yet (first start, or wiped while the
	// audit log was kept) restarts Raft indexes from 1.
	if _, err := os.Stat(filepath.Join(s.cfg.DataDir, "raft", "raft.db")); errors.Is(err, fs.ErrNotExist) && w.LastRaftIndex() > 0 {
		err := w.RestartRaftIndexes(audit.Record{Time: stamp(s.now()), Command: "open",
			Detail: fmt.Sprintf("no Raft log in %s: Raft indexes start over (the last one audited was %d)", s.cfg.DataDir, w.LastRaftIndex())})
		if err != nil {
			w.Close()
			return fmt.Errorf("open audit log: %w", err)
		}
	}
	s.audit = a
	s.fsm.SetAdminObserver(a.observe)
	s.goRun(func() { a.run(s.ctx) })
	return nil
}

// registerAuditMetrics adds the audit log's counters to the member's registry.
func (s *Server) registerAuditMetrics() {
	if s.audit != nil && s.metrics != nil {
		s.metrics.reg.MustRegister(s.audit.failures)
	}
}

// closeAudit writes what is queued and closes the file (after Raft stopped).
func (s *Server) closeAudit() {
	if s.audit == nil {
		return
	}
	s.audit.flush()
	s.audit.w.Close()
}

func (a *auditLog) enqueue(r audit.Record) {
	a.mu.Lock()
	if len(a.q) >= maxAuditQueue {
		a.dropped++
		a.mu.Unlock()
		return
	}
	a.q = append(a.q, r)
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

func (a *auditLog) run(ctx context.Context) {
	t := time.NewTicker(time.Second) // retries after a write error
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.wake:
		case <-t.C:
		}
		a.flush()
	}
}

// flush writes the queued records; on error they stay queued for the next try.
func (a *auditLog) flush() {
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	a.mu.Lock()
	q, dropped := a.q, a.dropped
	a.q, a.dropped = nil, 0
	a.mu.Unlock()
	if dropped > 0 {
		a.log.Error("audit records dropped: the audit log could not be written", "dropped", dropped)
		q = append(q, audit.Record{Time: stamp(time.Now()), Kind: audit.KindRecovery, Command: "queue", Outcome: audit.Refused,
			Detail: fmt.Sprintf("%d audit records were dropped while the audit log could not be written", dropped)})
	}
	if len(q) == 0 {
		return
	}
	if err := a.w.Append(q...); err != nil {
		a.mu.Lock()
		a.q = append(q, a.q...)
		if len(a.q) > maxAuditQueue {
			a.dropped += uint64(len(a.q) - maxAuditQueue)
			a.q = a.q[:maxAuditQueue]
		}
		first := !a.failing
		a.failing = true
		a.mu.Unlock()
		if first {
			a.log.Error("cannot write the audit log; retrying every second", "error", err, "dir", a.w.Dir())
		}
		return
	}
	a.mu.Lock()
	recovered := a.failing
	a.failing = false
	a.mu.Unlock()
	if recovered {
		a.log.Info("audit log written again", "dir", a.w.Dir())
	}
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

func whoOf(sess *fsmpb.AdminSession) *audit.Who {
	if sess == nil {
		return nil
	}
	return &audit.Who{Session: shortID(sess.GetId()), Mode: sess.GetMode(), Origin: sess.GetOrigin(), Local: sess.GetLocal(), Member: sess.GetMember()}
}

func shortID(id string) string { return id[:min(12, len(id))] }

// observe is the FSM's admin observer: it runs under the FSM lock, so it
// only builds the record and queues it.
func (a *auditLog) observe(e fsm.AdminEvent) {
	r := audit.Record{Time: stamp(time.UnixMilli(e.NowMs)), Kind: audit.KindApplied, RaftIndex: e.Index,
		Command: e.Command, Who: whoOf(e.Session), Outcome: audit.Accepted, Args: commandArgs(e.Cmd)}
	switch res := e.Result.(type) {
	case *fsmpb.OpResult:
		r.Detail = res.GetMessage()
		if res.GetCode() != fsmpb.Code_OK {
			r.Outcome, r.Detail = audit.Refused, res.GetCode().String()+": "+res.GetMessage()
		}
	case *fsmpb.BatchResult:
		r.Command = "force_release"
		var ids, refused []string
		for _, i := range e.Ops {
			for _, lr := range res.GetResults()[i].GetLeases() {
				ids = append(ids, fmt.Sprint(lr.GetLeaseId()))
				if lr.GetCode() != fsmpb.Code_OK {
					refused = append(refused, fmt.Sprintf("%d %s: %s", lr.GetLeaseId(), lr.GetCode(), lr.GetMessage()))
				}
			}
		}
		r.Args = map[string]string{"lease_ids": strings.Join(ids, ",")}
		if len(refused) > 0 {
			r.Outcome, r.Detail = audit.Refused, strings.Join(refused, "; ")
		}
	}
	if len(e.Ended) > 0 {
		var ended []string
		for _, s := range e.Ended {
			ended = append(ended, fmt.Sprintf("%s (%s, session %s)", s.GetOrigin(), s.GetMode(), shortID(s.GetId())))
		}
		if r.Args == nil {
			r.Args = map[string]string{}
		}
		r.Args["ended_sessions"] = strings.Join(ended, "; ")
	}
	a.enqueue(r)
}

// sensitive names fields never written, whatever the command.
func sensitive(name string) bool {
	for _, w := range []string{"hash", "password", "secret", "token", "private"} {
		if strings.Contains(name, w) {
			return true
		}
	}
	return false
}

// commandArgs summarizes a command for the audit log: what an auditor needs
// to know what changed, never a password, hash or secret.
func commandArgs(cmd *fsmpb.Command) map[string]string {
	args := map[string]string{}
	switch c := cmd.Cmd.(type) {
	case *fsmpb.Command_FormCluster:
		var names []string
		for _, m := range c.FormCluster.GetMembers() {
			names = append(names, m.GetName())
		}
		args["mode"], args["members"] = c.FormCluster.GetMode(), strings.Join(names, ",")
	case *fsmpb.Command_EnrollLicense:
		l := c.EnrollLicense.GetLicense()
		var feats []string
		for _, f := range l.GetFeatures() {
			feats = append(feats, fmt.Sprintf("%s v%d x%d", f.GetName(), f.GetVersion(), f.GetCount()))
		}
		args["serial"], args["customer"], args["features"] = l.GetSerial(), l.GetCustomer(), strings.Join(feats, ", ")
		if u := l.GetValidUntilMs(); u != 0 {
			args["valid_until"] = stamp(time.UnixMilli(u))
		}
		sum := sha256.Sum256(l.GetRaw())
		args["file_sha256"] = hex.EncodeToString(sum[:])
	case *fsmpb.Command_SetRules:
		r := c.SetRules.GetRules()
		sum := sha256.Sum256([]byte(r.GetText()))
		args["rules"], args["groups"], args["text_sha256"] = fmt.Sprint(len(r.GetRules())), fmt.Sprint(len(r.GetGroups())), hex.EncodeToString(sum[:])
	case *fsmpb.Command_SetPasswords:
		var which []string
		if len(c.SetPasswords.GetFullHash()) > 0 {
			which = append(which, "full")
		}
		if len(c.SetPasswords.GetRestrictedHash()) > 0 {
			which = append(which, "restricted")
		}
		args["which"] = strings.Join(which, ",")
	case *fsmpb.Command_OpenSession, *fsmpb.Command_CloseSession:
		// Who says it all.
	default:
		genericArgs(cmd, args)
	}
	if len(args) == 0 {
		return nil
	}
	return args
}

// genericArgs writes the set fields of the command's message: scalars as
// text, bytes by size and SHA-256, nested messages field by field one level
// down; sensitive names redacted. New commands (vendor keys...) are summarized
// without a change here.
func genericArgs(cmd *fsmpb.Command, args map[string]string) {
	fd := cmd.ProtoReflect().WhichOneof(cmd.ProtoReflect().Descriptor().Oneofs().ByName("cmd"))
	if fd == nil || fd.Message() == nil {
		return
	}
	var walk func(prefix string, m protoreflect.Message, depth int)
	walk = func(prefix string, m protoreflect.Message, depth int) {
		m.Range(func(f protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			name := prefix + string(f.Name())
			switch {
			case sensitive(string(f.Name())):
				args[name] = "(redacted)"
			case f.IsList():
				args[name] = fmt.Sprintf("%d items", v.List().Len())
			case f.IsMap():
				args[name] = fmt.Sprintf("%d entries", v.Map().Len())
			case f.Kind() == protoreflect.MessageKind:
				if depth < 1 {
					walk(name+".", v.Message(), depth+1)
				}
			case f.Kind() == protoreflect.BytesKind:
				sum := sha256.Sum256(v.Bytes())
				args[name] = fmt.Sprintf("%d bytes, sha256 %s", len(v.Bytes()), hex.EncodeToString(sum[:8]))
			case f.Kind() == protoreflect.StringKind && strings.HasSuffix(string(f.Name()), "session_id"):
				args[name] = shortID(v.String())
			default:
				s := v.String()
				if len(s) > 256 {
					s = s[:256] + "…"
				}
				args[name] = s
			}
			return true
		})
	}
	walk("", cmd.ProtoReflect().Get(fd).Message(), 0)
}

// AuthFailed logs, counts and audits a refused authentication
// (admin.AuthObserver). The password is never passed here.
func (s *Server) AuthFailed(ctx context.Context, f admin.AuthFailure) {
	s.log.Warn("admin authentication failed", "op", f.Op, "mode", f.Mode, "source", f.Source, "origin", f.Origin, "reason", f.Reason, "message", f.Message)
	if s.audit == nil {
		return
	}
	s.audit.failures.WithLabelValues(f.Mode, f.Reason).Inc()
	if !f.Report {
		return
	}
	detail := f.Message
	if f.Suppressed > 0 {
		detail += fmt.Sprintf(" (%d more refusals from this source for this reason in the minute before this record)", f.Suppressed)
	}
	s.audit.enqueue(audit.Record{Time: stamp(s.now()), Kind: audit.KindAuthFailure, Command: f.Op,
		Who: &audit.Who{Source: f.Source, Origin: f.Origin, Mode: f.Mode, Member: s.cfg.Name}, Outcome: audit.Refused,
		Detail: detail, Args: map[string]string{"reason": f.Reason}})
}

// AdminServed audits an administration action that the Raft log does not
// tell apart from client traffic: a force-release (admin.ActionObserver).
func (s *Server) AdminServed(ctx context.Context, who *admin.Session, op string, args map[string]string, err error) {
	if s.audit == nil {
		return
	}
	r := audit.Record{Time: stamp(s.now()), Kind: audit.KindServed, Command: op, Outcome: audit.Accepted, Args: args}
	if who != nil {
		r.Who = &audit.Who{Session: shortID(who.ID), Mode: who.Mode, Origin: who.Origin, Local: who.Local, Member: who.Member}
	}
	if err != nil {
		r.Outcome, r.Detail = audit.Refused, err.Error()
	}
	s.audit.enqueue(r)
}

// VerifyAudit checks this member's audit log after writing what is queued,
// and that the file still ends where this process last wrote
// (admin.AuditVerifier).
func (s *Server) VerifyAudit(ctx context.Context) (*triadv1.AuditVerifyResponse, error) {
	if s.audit == nil {
		return nil, status.Error(codes.FailedPrecondition, "this member has no audit log open")
	}
	a := s.audit
	a.flush()
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	seq, hash := a.w.Head()
	rep, err := audit.VerifyDir(a.w.Dir())
	if err != nil {
		return nil, status.Errorf(codes.Internal, "read the audit log: %v", err)
	}
	if rep.Broken == nil && (rep.LastSeq != seq || rep.LastHash != hash) {
		files := rep.Files
		rep.Broken = &audit.Break{File: files[len(files)-1], Problem: fmt.Sprintf(
			"the log ends at seq %d but this member wrote up to seq %d (hash %s): records were cut off the end or rewritten", rep.LastSeq, seq, hash)}
	}
	out := admin.ReportResponse(rep)
	out.Member, out.Dir = s.cfg.Name, a.w.Dir()
	return out, nil
}
