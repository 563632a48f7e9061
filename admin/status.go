package admin

import (
	"context"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/triadlm/triad/proto/triadv1"
)

// otherMemberBudget bounds how long `cluster status` waits for each further
// member it asks when the first answer is not operational, so that a hung
// member does not delay the answer by the whole --timeout.
const otherMemberBudget = 5 * time.Second

// bestClusterStatus asks the first member of --server that answers. When
// that member does not say operational and --server names others, it asks
// them too and keeps the best-informed view: a member cut off from the
// others (not operational from where it stands) sees less than one in the
// majority (partially operational), and a monitoring check must report the
// cluster, not the corner it happened to ask first.
func bestClusterStatus(c *cli.Context) (*triadv1.ClusterStatusResponse, error) {
	call := func(ctx context.Context, a triadv1.AdminClient, h *triadv1.AdminHeader) (*triadv1.ClusterStatusResponse, error) {
		return a.ClusterStatus(ctx, &triadv1.ClusterStatusRequest{Header: h})
	}
	best, err := adminCall(c, ModeRestricted, call)
	if err != nil || best.Status == "operational" || c.Bool("local") {
		return best, err
	}
	ts, err := targets(c)
	if err != nil || len(ts) < 2 {
		return best, nil
	}
	ctx, cancel := context.WithTimeout(c.Context, c.Duration("timeout"))
	defer cancel()
	for _, t := range ts {
		if statusRank(best.Status) == 0 {
			break
		}
		r, ok := statusFrom(ctx, c, t)
		if ok && r.Member != best.Member && statusRank(r.Status) < statusRank(best.Status) {
			best = r
		}
	}
	return best, nil
}

// statusFrom asks one member, within otherMemberBudget.
func statusFrom(ctx context.Context, c *cli.Context, t target) (*triadv1.ClusterStatusResponse, bool) {
	ctx, cancel := context.WithTimeout(ctx, otherMemberBudget)
	defer cancel()
	conn, err := dialTarget(c, t)
	if err != nil {
		return nil, false
	}
	defer conn.Close()
	r, err := callWithSession(ctx, c, conn, t.name, ModeRestricted, func(ctx context.Context, a triadv1.AdminClient, h *triadv1.AdminHeader) (*triadv1.ClusterStatusResponse, error) {
		return a.ClusterStatus(ctx, &triadv1.ClusterStatusRequest{Header: h})
	})
	return r, err == nil
}

// statusRank orders status words, best first (the exit statuses).
func statusRank(word string) int {
	switch word {
	case "operational":
		return ExitOperational
	case "partially operational":
		return ExitPartiallyOperational
	default:
		return ExitNotOperational
	}
}
