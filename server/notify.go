package server

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/triadlm/triad/fsm"
	"github.com/triadlm/triad/membership"
	"github.com/triadlm/triad/notify"
	"github.com/triadlm/triad/proto/triadv1"
)

// Who sends what (docs/notifications.md), so that people get one message
// per event, not three:
//   - a member sends its own member_start, member_stop, member_isolated
//     and disk_usage (only it knows; an isolated member cannot rely on the
//     cluster);
//   - the leader sends the cluster's events: member_down / member_up (the
//     monitor's member_down alarm: a peer neither it nor the third member
//     reaches; its end),
//     feature_over_capacity, countdown_pool_low and the daily
//     licenses_expiring list;
//   - quorum_lost has no leader to send it: it is sent by the member with
//     the lowest name among those that still reach each other and have
//     seen no leader for notify.quorum_lost_after; the same member sends
//     quorum_restored once a leader is known again.

// stopNotifyWait bounds how long a stopping member waits for its
// member_stop message to go out.
const stopNotifyWait = 10 * time.Second

// notifyState is the notification bookkeeping of the notify loop (one
// goroutine; no lock).
type notifyState struct {
	disk  notify.DiskWatch
	daily notify.Daily
	// down: peers this member reported down while leader, and since when.
	down map[string]time.Time
	// noLeaderSince: when this member last lost sight of a leader.
	noLeaderSince time.Time
	quorumLost    bool
	// alarms: license alarms (kind/subject) active at the last check. Every
	// member keeps it, so a new leader does not repeat what its
	// predecessor sent.
	alarms map[string]bool
	// lastDisk is when the disk was last measured.
	lastDisk time.Time
}

func (s *Server) openNotifier() {
	s.notifier = notify.New(s.cfg.Notify, s.cfg.Name, s.log, s.now)
	s.notifyCount = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "triad_notifications_total",
		Help: "Notifications this member sent, by event, channel (mail, webhook) and result (sent, failed after its attempts, dropped on a full queue).",
	}, []string{"event", "channel", "result"})
	s.notifier.OnResult(func(kind string, r notify.Result) {
		s.notifyCount.WithLabelValues(kind, r.Channel, notify.ResultLabel(r)).Inc()
	})
	s.notifier.Start()
}

// registerNotifyMetrics adds the notification counter to /metrics.
func (s *Server) registerNotifyMetrics() {
	if s.notifyCount != nil && s.metrics != nil {
		s.metrics.reg.MustRegister(s.notifyCount)
	}
}

// notifyLoop watches the event sources once a second while a channel is
// configured.
func (s *Server) notifyLoop() {
	cfg := s.notifier.Config()
	if !cfg.Enabled() {
		return
	}
	st := &notifyState{down: map[string]time.Time{}, alarms: map[string]bool{},
		disk: notify.DiskWatch{Threshold: cfg.DiskPercent}, daily: notify.Daily{Hour: *cfg.ExpiryHour}}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		now := s.now()
		if s.mode() != ModeUnconfigured {
			s.notifyMembers(st, now)
			s.notifyQuorum(st, now, time.Duration(cfg.QuorumLostAfter))
			s.notifyLicenseAlarms(st, now)
		}
		if time.Since(st.lastDisk) >= time.Duration(cfg.DiskCheckInterval) {
			st.lastDisk = time.Now()
			s.notifyDisk(st)
		}
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// onMonitorEvent turns the monitor's events into notifications: the
// isolation notice is sent by the isolated member itself, once per
// isolation (the monitor fires it once).
func (s *Server) onMonitorEvent(e membership.Event) {
	if e.Kind == membership.EventMemberIsolated {
		s.notifier.Send(notify.Event{Kind: notify.MemberIsolated, Member: s.cfg.Name, Time: e.At, Message: e.Message})
	}
}

// notifyMembers: the leader reports each member the monitor finds down
// (its member_down alarm: no answer to this member, and no other member
// reaches it either) and its return. The leader reports what it sees now,
// so a new leader reports the old one, which died while it was a follower.
func (s *Server) notifyMembers(st *notifyState, now time.Time) {
	if !s.isLeader() {
		clear(st.down)
		return
	}
	down := map[string]membership.Alarm{}
	for _, a := range s.mon.Alarms() {
		if a.Kind == membership.AlarmMemberDown {
			down[a.Member] = a
		}
	}
	for _, p := range s.mon.Peers() {
		a, isDown := down[p.Name]
		switch {
		case isDown && st.down[p.Name].IsZero():
			st.down[p.Name] = a.Since
			s.notifier.Send(notify.Event{Kind: notify.MemberDown, Member: p.Name, Since: a.Since, Leader: s.cfg.Name,
				Message: fmt.Sprintf("Member %s is down: neither the leader %s nor the other member has heard from it since %s.", p.Name, s.cfg.Name, a.Since.Format("15:04:05 MST"))})
		case !isDown && !st.down[p.Name].IsZero() && s.mon.PeerState(p.Name) == membership.LinkUp:
			since := st.down[p.Name]
			delete(st.down, p.Name)
			s.notifier.Send(notify.Event{Kind: notify.MemberUp, Member: p.Name, Since: since, Leader: s.cfg.Name,
				Message: fmt.Sprintf("Member %s answers the leader %s again (down for about %s).", p.Name, s.cfg.Name, now.Sub(since).Round(time.Second))})
		}
	}
}

// notifyQuorum: no leader for after → quorum_lost, sent by the lowest
// named member among those still in touch; quorum_restored by the same
// member once a leader is known.
func (s *Server) notifyQuorum(st *notifyState, now time.Time, after time.Duration) {
	_, leader := s.leaderAddr()
	if leader != "" {
		st.noLeaderSince = time.Time{}
		if st.quorumLost {
			st.quorumLost = false
			s.notifier.Send(notify.Event{Kind: notify.QuorumRestored, Member: s.cfg.Name, Leader: leader,
				Message: fmt.Sprintf("The cluster has a leader again: %s.", leader)})
		}
		return
	}
	if st.noLeaderSince.IsZero() {
		st.noLeaderSince = now
	}
	if st.quorumLost || now.Sub(st.noLeaderSince) < after {
		return
	}
	var reach []string
	for _, p := range s.mon.Peers() {
		if s.mon.PeerState(p.Name) == membership.LinkUp {
			if p.Name < s.cfg.Name {
				return // that member speaks for us
			}
			reach = append(reach, p.Name)
		}
	}
	st.quorumLost = true
	with := "it reaches no other member"
	if len(reach) > 0 {
		with = "it reaches " + strings.Join(reach, ", ") + " but no majority elects a leader"
	}
	s.notifier.Send(notify.Event{Kind: notify.QuorumLost, Member: s.cfg.Name, Since: st.noLeaderSince,
		Message: fmt.Sprintf("Quorum lost: member %s has known no leader for %s; %s.", s.cfg.Name, now.Sub(st.noLeaderSince).Round(time.Second), with)})
}

// notifyLicenseAlarms: the leader reports each over-capacity and
// countdown-pool-low alarm when it appears, and sends the daily list of
// expiring licenses at the configured local hour.
func (s *Server) notifyLicenseAlarms(st *notifyState, now time.Time) {
	warnDays := s.fsm.Settings().ExpiryWarningDays
	warn := time.Duration(warnDays) * 24 * time.Hour
	alarms := s.fsm.LicenseAlarms(now.UnixMilli(), warn.Milliseconds())
	leader := s.isLeader()
	seen := map[string]bool{}
	var expiring []notify.License
	for _, a := range alarms {
		switch a.Kind {
		case fsm.AlarmOverCapacity, fsm.AlarmPoolLow:
			key := a.Kind + "/" + a.Subject
			seen[key] = true
			if !st.alarms[key] && leader {
				kind := notify.OverCapacity
				if a.Kind == fsm.AlarmPoolLow {
					kind = notify.PoolLow
				}
				s.notifier.Send(notify.Event{Kind: kind, Feature: a.Subject, Leader: s.cfg.Name, Message: a.Message})
			}
		case fsm.AlarmLicenseExpiring:
			until := time.UnixMilli(a.SinceMs + warn.Milliseconds()).In(now.Location())
			expiring = append(expiring, notify.License{Serial: a.Subject, ValidUntil: until,
				DaysLeft: int(until.Sub(now) / (24 * time.Hour)), Message: a.Message})
		}
	}
	st.alarms = seen
	if st.daily.Due(now) && leader && len(expiring) > 0 {
		sortLicenses(expiring)
		s.notifier.Send(notify.Event{Kind: notify.LicensesExpiring, Leader: s.cfg.Name, Licenses: expiring, WarningDays: int(warnDays),
			Message: fmt.Sprintf("%d license(s) expire within %d days.", len(expiring), warnDays)})
	}
}

func sortLicenses(ls []notify.License) {
	for i := 1; i < len(ls); i++ {
		for j := i; j > 0 && ls[j].ValidUntil.Before(ls[j-1].ValidUntil); j-- {
			ls[j], ls[j-1] = ls[j-1], ls[j]
		}
	}
}

// notifyDisk: each member watches its own data disk.
func (s *Server) notifyDisk(st *notifyState) {
	pct, err := s.diskUsage()
	if err != nil {
		s.log.Warn("cannot measure the data disk", "error", err)
		return
	}
	if st.disk.Observe(pct) {
		s.notifier.Send(notify.Event{Kind: notify.DiskUsageEvent, Member: s.cfg.Name, DiskPercent: pct, DiskThreshold: st.disk.Threshold, DataDir: s.cfg.DataDir,
			Message: fmt.Sprintf("The data disk of %s is %d%% full (threshold %d%%).", s.cfg.Name, pct, st.disk.Threshold)})
	}
}

func (s *Server) diskUsage() (int, error) {
	if s.cfg.DiskUsageFile != "" {
		b, err := os.ReadFile(s.cfg.DiskUsageFile)
		if err != nil {
			return 0, err
		}
		return strconv.Atoi(strings.TrimSpace(string(b)))
	}
	return notify.DiskUsage(s.cfg.DataDir)
}

// notifyStop sends member_stop and waits (bounded) for it to go out.
func (s *Server) notifyStop() {
	s.notifier.Send(notify.Event{Kind: notify.MemberStop, Member: s.cfg.Name, Message: "Member " + s.cfg.Name + " stopped (clean shutdown)."})
	ctx, cancel := context.WithTimeout(context.Background(), stopNotifyWait)
	defer cancel()
	s.notifier.Flush(ctx)
}

// TestNotify sends a test message through channel (admin.NotifyTester).
func (s *Server) TestNotify(ctx context.Context, channel string) (*triadv1.ServerTestNotifyResponse, error) {
	if s.notifier == nil {
		return nil, status.Error(codes.FailedPrecondition, "notifications are not running on this member")
	}
	res, err := s.notifier.Test(ctx, channel)
	if err != nil {
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	out := &triadv1.ServerTestNotifyResponse{Member: s.cfg.Name}
	for _, r := range res {
		nr := &triadv1.NotifyResult{Channel: r.Channel, Target: r.Target, Ok: r.Err == nil}
		if r.Err != nil {
			nr.Error = r.Err.Error()
		}
		out.Results = append(out.Results, nr)
	}
	return out, nil
}

// notifySettings is the notification configuration for server show,
// without secrets.
func (s *Server) notifySettings() *triadv1.NotifySettings {
	if s.notifier == nil {
		return nil
	}
	sum := s.notifier.Config().Summary()
	out := &triadv1.NotifySettings{SmtpServer: sum.SMTPServer, SmtpFrom: sum.From, SmtpTo: sum.To, SmtpStarttls: sum.StartTLS,
		SmtpTls: sum.TLS, SmtpUsername: sum.Username, SmtpPasswordSet: sum.PasswordSet,
		DiskPercent: uint32(sum.DiskPercent), ExpiryHour: uint32(sum.ExpiryHour)}
	for _, w := range sum.Webhooks {
		out.Webhooks = append(out.Webhooks, &triadv1.NotifyWebhook{Url: w.URL, SecretSet: w.SecretSet})
	}
	for _, k := range notify.Kinds() {
		if k != notify.Test {
			out.Events = append(out.Events, &triadv1.NotifyEventSwitch{Event: k, Enabled: sum.Events[k]})
		}
	}
	return out
}

// mergeNotifyFlags lays the notification flags over the config file's
// "notify" object (MergeFlags).
func mergeNotifyFlags(c *Config, f FlagSource) {
	c.DiskUsageFile = f.String("test-disk-usage-file")
	smtpSet, hookSet := false, false
	for _, n := range []string{"smtp-server", "smtp-from", "smtp-to", "smtp-starttls", "smtp-tls", "smtp-tls-ca", "smtp-username", "smtp-password-file"} {
		smtpSet = smtpSet || f.IsSet(n)
	}
	for _, n := range []string{"webhook-url", "webhook-secret-file"} {
		hookSet = hookSet || f.IsSet(n)
	}
	if !smtpSet && !hookSet && !f.IsSet("notify-disk-percent") {
		return
	}
	if c.Notify == nil {
		c.Notify = &notify.Config{}
	} else {
		cp := *c.Notify
		c.Notify = &cp
	}
	n := c.Notify
	if smtpSet {
		sm := &notify.SMTPConfig{}
		if n.SMTP != nil {
			*sm = *n.SMTP
		}
		n.SMTP = sm
		for flag, dst := range map[string]*string{"smtp-server": &sm.Server, "smtp-from": &sm.From, "smtp-tls-ca": &sm.TLSCA,
			"smtp-username": &sm.Username, "smtp-password-file": &sm.PasswordFile} {
			if f.IsSet(flag) {
				*dst = f.String(flag)
			}
		}
		if f.IsSet("smtp-password-file") {
			sm.Password = ""
		}
		if f.IsSet("smtp-to") {
			sm.To = splitList(f.StringSlice("smtp-to"))
		}
		if f.IsSet("smtp-starttls") {
			sm.StartTLS = f.Bool("smtp-starttls")
		}
		if f.IsSet("smtp-tls") {
			sm.TLS = f.Bool("smtp-tls")
		}
	}
	if f.IsSet("webhook-url") {
		n.Webhooks = nil
		for _, u := range splitList(f.StringSlice("webhook-url")) {
			n.Webhooks = append(n.Webhooks, &notify.WebhookConfig{URL: u, SecretFile: f.String("webhook-secret-file")})
		}
	}
	if f.IsSet("notify-disk-percent") {
		n.DiskPercent = f.Int("notify-disk-percent")
	}
}

func splitList(in []string) []string {
	var out []string
	for _, v := range in {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}
