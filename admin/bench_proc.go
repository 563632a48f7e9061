package admin

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/triadlm/triad/proto/triadv1"
)

// BenchMember is one cluster member as the benchmark saw it: its role, its
// process (when it runs on this machine) and what that process used.
type BenchMember struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	Role    string `json:"role"`
	// Pid is the member's process id from `server show`; 0 when the member
	// is not on this machine (then nothing below is measured).
	Pid int64 `json:"pid"`
	// CPUSeconds is user+system CPU time the member used during the
	// measured phase.
	CPUSeconds float64 `json:"cpu_seconds"`
	// RSS of the member at the start and at the end of the measured phase;
	// for renew and hold, RSSIdleBytes is before the leases were taken.
	RSSIdleBytes  int64 `json:"rss_idle_bytes,omitempty"`
	RSSStartBytes int64 `json:"rss_start_bytes"`
	RSSEndBytes   int64 `json:"rss_end_bytes"`
	// RSSPerLeaseBytes is, for hold, (RSS at the end of the measured
	// phase − RSSIdleBytes) / leases: what a member holds per lease in
	// steady state, after the leases have been held and renewed for the
	// run; for renew (back-to-back renewals, whose garbage the end RSS
	// measures) it is RSSPerLeaseAfterSetupBytes.
	// RSSPerLeaseAfterSetupBytes is the same at the start of the phase,
	// right after the burst of checkouts that took them, when the garbage
	// collector's heap still has the burst's headroom (Go returns it to
	// the system over the following seconds).
	RSSPerLeaseBytes           float64 `json:"rss_per_lease_bytes,omitempty"`
	RSSPerLeaseAfterSetupBytes float64 `json:"rss_per_lease_after_setup_bytes,omitempty"`

	cpuStart float64
}

// procSample is what /proc says about one process at one moment.
type procSample struct {
	cpuSeconds float64
	rssBytes   int64
}

// clockTick is USER_HZ, the unit of utime and stime in /proc/PID/stat: 100
// on every Linux architecture Go supports (the kernel fixes it for
// user space whatever CONFIG_HZ is).
const clockTick = 100

// readProc reads CPU time (utime+stime) and RSS of pid from procDir
// (/proc).
func readProc(procDir string, pid int64) (procSample, error) {
	b, err := os.ReadFile(filepath.Join(procDir, strconv.FormatInt(pid, 10), "stat"))
	if err != nil {
		return procSample{}, err
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// fields are counted after its closing parenthesis.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procSample{}, fmt.Errorf("%s/%d/stat: no command name", procDir, pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state): utime is field 14, stime 15, rss (pages) 24.
	if len(f) < 22 {
		return procSample{}, fmt.Errorf("%s/%d/stat: %d fields, want at least 24", procDir, pid, len(f)+2)
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	rss, err3 := strconv.ParseInt(f[21], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return procSample{}, fmt.Errorf("%s/%d/stat: unreadable utime/stime/rss", procDir, pid)
	}
	return procSample{cpuSeconds: float64(utime+stime) / clockTick, rssBytes: rss * int64(os.Getpagesize())}, nil
}

// procComm returns the command name of pid ("" when it cannot be read).
func procComm(procDir string, pid int64) string {
	b, err := os.ReadFile(filepath.Join(procDir, strconv.FormatInt(pid, 10), "comm"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// loadAverage returns the 1-minute load average of this machine (-1 when
// /proc/loadavg cannot be read).
func loadAverage(procDir string) float64 {
	b, err := os.ReadFile(filepath.Join(procDir, "loadavg"))
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}

// onThisHost reports whether a member address (host:port) names this
// machine: a loopback address, or one of its interfaces' addresses. Only
// then is the member's pid a process here.
func onThisHost(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	if ip == nil {
		ips, err := net.LookupIP(host)
		if err != nil || len(ips) == 0 {
			return false
		}
		ip = ips[0]
	}
	if ip.IsLoopback() {
		return true
	}
	ifs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range ifs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
			return true
		}
	}
	return false
}

// discoverMembers asks each address given with --server for its name, pid
// (`server show`) and Raft role (`cluster status`), in a restricted
// session. A member that does not answer is an error: the benchmark needs
// to know where the leader is.
func discoverMembers(c *cli.Context, procDir string) ([]*BenchMember, error) {
	ctx, cancel := context.WithTimeout(c.Context, c.Duration("timeout"))
	defer cancel()
	var out []*BenchMember
	for _, addr := range servers(c) {
		conn, err := dialTarget(c, target{name: addr, dial: addr})
		if err != nil {
			return nil, fmt.Errorf("%s: %v", addr, err)
		}
		m, err := callWithSession(ctx, c, conn, addr, ModeRestricted, func(ctx context.Context, a triadv1.AdminClient, h *triadv1.AdminHeader) (*BenchMember, error) {
			show, err := a.ServerShow(ctx, &triadv1.ServerShowRequest{Header: h})
			if err != nil {
				return nil, err
			}
			st, err := a.ClusterStatus(ctx, &triadv1.ClusterStatusRequest{Header: h})
			if err != nil {
				return nil, err
			}
			return &BenchMember{Name: show.GetName(), Address: addr, Role: st.GetRole(), Pid: show.GetPid()}, nil
		})
		conn.Close()
		if err != nil {
			return nil, cliError(addr, err)
		}
		// A pid means something only here, and only if it is a triadd.
		if m.Pid != 0 && (!onThisHost(addr) || !strings.HasPrefix(procComm(procDir, m.Pid), "triadd")) {
			m.Pid = 0
		}
		out = append(out, m)
	}
	return out, nil
}

// benchTargets returns the addresses each of conns connections uses:
// all: connection i on member i mod 3 only (clients spread over the
// members, followers forwarding to the leader); leader: every connection
// on the leader; follower: connections spread over the followers. Each
// connection gets one address, so the client library cannot move it to
// the leader after a leader hint.
func benchTargets(members []*BenchMember, target string, conns int) ([][]string, error) {
	var pool []string
	for _, m := range members {
		switch target {
		case "all":
			pool = append(pool, m.Address)
		case "leader":
			if m.Role == "leader" {
				pool = append(pool, m.Address)
			}
		case "follower":
			if m.Role == "follower" {
				pool = append(pool, m.Address)
			}
		default:
			return nil, fmt.Errorf("--target %q: want all, leader or follower", target)
		}
	}
	if len(pool) == 0 {
		return nil, fmt.Errorf("--target %s: no member of the %d given with --server has that role (roles: %s); give all three members' addresses", target, len(members), roles(members))
	}
	out := make([][]string, conns)
	for i := range out {
		out[i] = []string{pool[i%len(pool)]}
	}
	return out, nil
}

func roles(ms []*BenchMember) string {
	var s []string
	for _, m := range ms {
		s = append(s, m.Address+" "+m.Role)
	}
	return strings.Join(s, ", ")
}
