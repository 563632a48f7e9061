package client

import (
	"crypto/rand"
	"fmt"
	"time"

	"github.com/triadlm/triad/proto/triadv1"
)

// The transitions a renewal round drives on a Lease, one method per event.
// Each runs under l.mu and ends with update, so state, source and the
// timer always agree with the grants. Methods that return an id ask the
// caller to release that lease on a server (a backup lease after moving
// back, or a grant that arrived after the lease ended).

// checkoutMsg is the checkout request for l with request id reqID.
func (c *Client) checkoutMsg(l *Lease, reqID string) *triadv1.CheckoutRequest {
	return &triadv1.CheckoutRequest{
		ProtocolVersion: c.cfg.protocol,
		RequestId:       reqID,
		Feature:         l.feature,
		Version:         l.version,
		VersionText:     l.versionText,
		Count:           l.count,
		User:            c.cfg.user,
		Host:            c.cfg.host,
		Pid:             c.cfg.pid,
		ClientId:        c.cfg.clientID,
		TtlSeconds:      uint32((l.ttlWanted + time.Second - 1) / time.Second),
	}
}

func graceOf(info *triadv1.Lease) time.Duration {
	if s := info.GetGraceSeconds(); s > 0 {
		return time.Duration(s) * time.Second
	}
	return defaultGrace
}

// clusterID is the id of the cluster lease, 0 for none.
func (l *Lease) clusterID() uint64 { return l.clusterRef().id }

// clusterRef is the cluster lease to renew, id 0 for none.
func (l *Lease) clusterRef() leaseRef {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.active() || l.cluster == nil {
		return leaseRef{}
	}
	ref := l.cluster.ref()
	if !l.idleSince.IsZero() {
		ref.idleMs = max(time.Since(l.idleSince).Milliseconds(), 1)
	}
	return ref
}

// backupRef is the backup lease to renew, id 0 for none.
func (l *Lease) backupRef() leaseRef {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.active() || l.backup == nil {
		return leaseRef{}
	}
	return l.backup.ref()
}

func renewGrant(g *grant, sent time.Time, r *triadv1.RenewResult) {
	if sent.After(g.renewed) {
		g.renewed = sent
	}
	if r.GetExpiresUnixMs() != 0 {
		g.info.ExpiresUnixMs = r.GetExpiresUnixMs()
	}
	if r.GetTtlSeconds() != 0 {
		g.info.TtlSeconds = r.GetTtlSeconds()
	}
}

// clusterRenewed records a confirmed cluster renewal sent at sent. A lease
// on the backup moves back, and its backup lease is returned for release.
func (l *Lease) clusterRenewed(sent time.Time, r *triadv1.RenewResult) (releaseBackup leaseRef) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.active() || l.cluster == nil || l.cluster.info.GetLeaseId() != r.GetLeaseId() {
		return leaseRef{}
	}
	prev := l.infoLocked().GetLeaseId()
	renewGrant(l.cluster, sent, r)
	l.renewErr = nil
	releaseBackup = l.leaveBackup()
	l.update(time.Now(), prev)
	return releaseBackup
}

// leaveBackup drops the backup grant, returning it for release (id 0 for
// none). Called with l.mu.
func (l *Lease) leaveBackup() leaseRef {
	l.backupReq = ""
	if l.backup == nil {
		return leaseRef{}
	}
	ref := l.backup.ref()
	l.lastInfo = l.infoLocked()
	l.backup = nil
	return ref
}

// clusterRenewRefused records the cluster's refusal of the renewal call
// (not of this one lease: that is clusterGone). The state does not change:
// the timer moves the lease on as if no member answered.
func (l *Lease) clusterRenewRefused(id uint64, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.active() || l.cluster == nil || l.cluster.info.GetLeaseId() != id {
		return
	}
	l.renewErr = err
}

// clusterGone: the cluster answered that lease id no longer exists. The
// state does not change here: the round checks the lease out again at once
// (clusterCheckout), and until that resolves the lease keeps the view it
// had (floor), so a successful re-checkout is invisible to the product.
func (l *Lease) clusterGone(id uint64, reason string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.active() || l.cluster == nil || l.cluster.info.GetLeaseId() != id {
		return
	}
	if until := l.heldUntil(); until.After(l.floor) {
		l.floor = until
	}
	l.lastInfo = l.infoLocked()
	l.cluster, l.clusterReq, l.clusterReqSent, l.goneReason, l.renewErr = nil, "", time.Time{}, reason, nil
}

// clusterCheckout returns the request for a cluster checkout when l has no
// cluster lease, reusing the id of one whose outcome is still unknown.
func (l *Lease) clusterCheckout() *triadv1.CheckoutRequest {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.active() || l.cluster != nil {
		return nil
	}
	if l.clusterReq == "" {
		l.clusterReq, l.clusterReqSent = rand.Text(), time.Now()
	}
	return l.c.checkoutMsg(l, l.clusterReq)
}

// clusterGranted installs a cluster lease from a checkout. It returns the
// backup lease to release (the lease moved back), or the new cluster lease
// to release when the lease ended meanwhile (id 0: nothing to release).
func (l *Lease) clusterGranted(reqID string, g *grant) (releaseBackup, releaseCluster leaseRef) {
	l.mu.Lock()
	defer l.mu.Unlock()
	info := g.info
	if !l.active() {
		return leaseRef{}, g.ref()
	}
	if l.cluster != nil || l.clusterReq != reqID {
		if l.cluster == nil || l.cluster.info.GetLeaseId() != info.GetLeaseId() {
			return leaseRef{}, g.ref() // a second grant: not wanted
		}
		return leaseRef{}, leaseRef{}
	}
	prev := l.infoLocked().GetLeaseId()
	if !l.clusterReqSent.IsZero() && l.clusterReqSent.Before(g.renewed) {
		g.renewed = l.clusterReqSent // granted, perhaps, by an earlier round's attempt
	}
	l.cluster, l.clusterReq, l.clusterReqSent, l.grace, l.renewErr = g, "", time.Time{}, graceOf(info), nil
	if l.goneReason != "" {
		l.c.cfg.logger.Info("triad lease checked out again", "feature", l.feature, "old", prev, "new", info.GetLeaseId(), "reason", l.goneReason)
		l.goneReason = ""
	}
	releaseBackup = l.leaveBackup()
	l.update(time.Now(), prev)
	return releaseBackup, leaseRef{}
}

// clusterRefused: the cluster definitely refused the checkout. A lease on
// the backup stays there (the next round asks the cluster again); any other
// lease is Lost, with the refusal as the reason. It reports whether l ended.
func (l *Lease) clusterRefused(reqID string, err error) (lost bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.active() || l.cluster != nil || l.clusterReq != reqID {
		return false
	}
	l.clusterReq, l.clusterReqSent = "", time.Time{}
	if l.backup != nil {
		return false
	}
	prev := l.infoLocked().GetLeaseId()
	reason := l.goneReason
	if reason == "" {
		reason = "not held by the cluster"
	}
	return l.endLocked(Lost, fmt.Errorf("%w: lease %d (%s v%s): %s, and checking it out again was refused: %w",
		ErrLeaseLost, prev, l.feature, l.VersionString(), reason, err), time.Now())
}

// backupRenewed records a confirmed backup renewal.
func (l *Lease) backupRenewed(sent time.Time, r *triadv1.RenewResult) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.active() || l.backup == nil || l.backup.info.GetLeaseId() != r.GetLeaseId() {
		return
	}
	prev := l.infoLocked().GetLeaseId()
	renewGrant(l.backup, sent, r)
	l.update(time.Now(), prev)
}

// backupGone: the backup no longer knows its lease. As with the cluster,
// the view so far is kept; the lease is checked out on the backup again
// once it is in Grace and the cluster still does not answer.
func (l *Lease) backupGone(id uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.active() || l.backup == nil || l.backup.info.GetLeaseId() != id {
		return
	}
	prev := l.infoLocked().GetLeaseId()
	if until := l.heldUntil(); until.After(l.floor) {
		l.floor = until
	}
	l.leaveBackup()
	l.update(time.Now(), prev)
}

// backupCheckout returns the request for a backup checkout when l needs
// one: in Grace (its cluster lease has left Held) and not on the backup.
func (l *Lease) backupCheckout() *triadv1.CheckoutRequest {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.state != Grace || l.backup != nil {
		return nil
	}
	if l.backupReq == "" {
		l.backupReq = rand.Text()
	}
	return l.c.checkoutMsg(l, l.backupReq)
}

// backupGranted installs a backup lease; it returns the lease to release on
// the backup when it is not wanted any more (the lease ended or is back
// in Held meanwhile), id 0 otherwise.
func (l *Lease) backupGranted(reqID string, g *grant) (release leaseRef) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.active() || l.backup != nil || l.backupReq != reqID || l.state == Held {
		return g.ref()
	}
	prev := l.infoLocked().GetLeaseId()
	l.backup, l.backupReq, l.grace = g, "", graceOf(g.info)
	l.update(time.Now(), prev)
	return leaseRef{}
}

// backupRefused forgets a backup checkout the backup definitely refused.
func (l *Lease) backupRefused(reqID string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.backupReq == reqID {
		l.backupReq = ""
	}
}
