package admin

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/triadlm/triad/proto/triadv1"
)

// triadctl report: usage-history reports (docs/reports.md). The member
// computes them (HistoryReport, the same JSON as its /v1/history/<kind>);
// triadctl prints them as a table, JSON (-o json, numbers as numbers) or
// CSV (-o csv).

type reportPoint struct {
	T           int64             `json:"t"`
	Peak        uint32            `json:"peak"`
	Average     float64           `json:"average"`
	Capacity    uint32            `json:"capacity"`
	Denials     map[string]uint64 `json:"denials"`
	Collected   bool              `json:"collected"`
	CollectedMs int64             `json:"collected_ms"`
	OverMs      int64             `json:"over_ms"`
}

type reportSeries struct {
	Feature string        `json:"feature"`
	Points  []reportPoint `json:"points"`
}

type reportUsage struct {
	Feature  string         `json:"feature"`
	Points   []reportPoint  `json:"points"`
	Features []reportSeries `json:"features"`
}

type reportUtil struct {
	Feature  string `json:"feature"`
	Capacity uint32 `json:"capacity"`
	Buckets  []struct {
		Seats uint32  `json:"seats"`
		Share float64 `json:"share"`
		Ms    int64   `json:"ms"`
	} `json:"buckets"`
}

type reportUsers struct {
	By   string `json:"by"`
	Rows []struct {
		Name  string  `json:"name"`
		Hours float64 `json:"hours"`
	} `json:"rows"`
}

type reportCompliance struct {
	Features []struct {
		Feature        string  `json:"feature"`
		Entitlement    uint32  `json:"entitlement"`
		Peak           uint32  `json:"peak"`
		PeakPercent    float64 `json:"peak_percent"`
		OverCapacityMs int64   `json:"over_capacity_ms"`
		Level          int     `json:"level"`
		LevelName      string  `json:"level_name"`
	} `json:"features"`
}

var rangeFlags = []cli.Flag{
	&cli.StringFlag{Name: "from", Usage: "start: a date (2026-01-31), an RFC 3339 time, Unix ms, or a duration before now (7d, 12h, 2w); default: 24h before --to"},
	&cli.StringFlag{Name: "to", Usage: "end (exclusive), as --from; default: now (the last committed leader time)"},
}

func reportCommand() *cli.Command {
	return &cli.Command{
		Name:  "report",
		Usage: "usage history reports: usage, users, utilization, compliance (-o table|json|csv)",
		Subcommands: []*cli.Command{
			{
				Name:  "usage",
				Usage: "peak and average seats in use and denials per feature, by minute, hour, day or month",
				Flags: append([]cli.Flag{
					&cli.StringFlag{Name: "feature", Usage: "one feature (default: every feature)"},
					&cli.StringFlag{Name: "by", Usage: "bucket size: minute, hour, day or month", Value: "hour"},
				}, rangeFlags...),
				Action: func(c *cli.Context) error {
					var r reportUsage
					raw, err := historyReport(c, "usage", map[string]string{"feature": c.String("feature"), "step": c.String("by")}, &r)
					if err != nil || raw == nil {
						return err
					}
					series := r.Features
					if r.Feature != "" {
						series = []reportSeries{{Feature: r.Feature, Points: r.Points}}
					}
					reasons := map[string]bool{}
					for _, s := range series {
						for _, p := range s.Points {
							for k := range p.Denials {
								reasons[k] = true
							}
						}
					}
					rs := make([]string, 0, len(reasons))
					for k := range reasons {
						rs = append(rs, k)
					}
					sort.Strings(rs)
					head := append([]string{"FEATURE", "START", "PEAK", "AVERAGE", "CAPACITY", "OVER_CAPACITY_S"}, upper(rs, "DENIED_")...)
					var rows [][]string
					for _, s := range series {
						for _, p := range s.Points {
							if !p.Collected {
								rows = append(rows, append([]string{s.Feature, fmtMs(p.T), "not collected", "", u(p.Capacity), ""}, make([]string, len(rs))...))
								continue
							}
							row := []string{s.Feature, fmtMs(p.T), u(p.Peak), strconv.FormatFloat(p.Average, 'f', 2, 64), u(p.Capacity), strconv.FormatInt(p.OverMs/1000, 10)}
							for _, k := range rs {
								row = append(row, strconv.FormatUint(p.Denials[k], 10))
							}
							rows = append(rows, row)
						}
					}
					return printRows(c, head, rows)
				},
			},
			{
				Name:  "users",
				Usage: "seat-hours per user, host or group (access-rule groups), most first",
				Flags: append([]cli.Flag{
					&cli.StringFlag{Name: "feature", Usage: "one feature (default: every feature)"},
					&cli.StringFlag{Name: "by", Usage: "user, host or group", Value: "user"},
					&cli.IntFlag{Name: "top", Usage: "at most this many rows (0: all)"},
				}, rangeFlags...),
				Action: func(c *cli.Context) error {
					var r reportUsers
					raw, err := historyReport(c, "users", map[string]string{"feature": c.String("feature"), "by": c.String("by"), "top": strconv.Itoa(c.Int("top"))}, &r)
					if err != nil || raw == nil {
						return err
					}
					var rows [][]string
					for _, x := range r.Rows {
						rows = append(rows, []string{x.Name, strconv.FormatFloat(x.Hours, 'f', 3, 64)})
					}
					return printRows(c, []string{upper([]string{r.By}, "")[0], "HOURS"}, rows)
				},
			},
			{
				Name:  "utilization",
				Usage: "share of time with exactly k seats of a feature in use",
				Flags: append([]cli.Flag{
					&cli.StringFlag{Name: "feature", Usage: "the feature (required)", Required: true},
				}, rangeFlags...),
				Action: func(c *cli.Context) error {
					var r reportUtil
					raw, err := historyReport(c, "utilization", map[string]string{"feature": c.String("feature")}, &r)
					if err != nil || raw == nil {
						return err
					}
					var rows [][]string
					for _, b := range r.Buckets {
						rows = append(rows, []string{u(b.Seats), strconv.FormatFloat(100*b.Share, 'f', 1, 64), strconv.FormatInt(b.Ms/1000, 10)})
					}
					return printRows(c, []string{"SEATS", "SHARE_%", "SECONDS"}, rows)
				},
			},
			{
				Name:  "compliance",
				Usage: "per feature: entitlement vs peak, time over capacity, level 1 (ok) to 5 (critical)",
				Flags: append([]cli.Flag{
					&cli.StringFlag{Name: "levels", Usage: "peak as % of entitlement above which the level is 2, 3, 4, 5", Value: "90,100,110,125"},
				}, rangeFlags...),
				Action: func(c *cli.Context) error {
					var r reportCompliance
					raw, err := historyReport(c, "compliance", map[string]string{"levels": c.String("levels")}, &r)
					if err != nil || raw == nil {
						return err
					}
					var rows [][]string
					for _, f := range r.Features {
						rows = append(rows, []string{f.Feature, u(f.Entitlement), u(f.Peak), strconv.FormatFloat(f.PeakPercent, 'f', 1, 64),
							strconv.FormatInt(f.OverCapacityMs/1000, 10), strconv.Itoa(f.Level), f.LevelName})
					}
					return printRows(c, []string{"FEATURE", "ENTITLEMENT", "PEAK", "PEAK_%", "OVER_CAPACITY_S", "LEVEL", "STATUS"}, rows)
				},
			},
		},
	}
}

// historyReport asks the member for a report and decodes it into v. With
// -o json it prints the member's JSON as is and returns nil bytes.
func historyReport(c *cli.Context, kind string, params map[string]string, v any) ([]byte, error) {
	for _, k := range []string{"from", "to"} {
		if c.IsSet(k) {
			params[k] = c.String(k)
		}
	}
	for k, x := range params {
		if x == "" || (k == "top" && x == "0") {
			delete(params, k)
		}
	}
	r, err := adminCall(c, ModeRestricted, func(ctx context.Context, a triadv1.AdminClient, h *triadv1.AdminHeader) (*triadv1.HistoryReportResponse, error) {
		return a.HistoryReport(ctx, &triadv1.HistoryReportRequest{Header: h, Kind: kind, Params: params})
	})
	if err != nil {
		return nil, err
	}
	if jsonOutput(c) {
		var x any
		if err := json.Unmarshal([]byte(r.Json), &x); err != nil {
			return nil, fmt.Errorf("the member's report is not JSON: %v", err)
		}
		return nil, printJSON(stdout(c), x)
	}
	if err := json.Unmarshal([]byte(r.Json), v); err != nil {
		return nil, fmt.Errorf("the member's report does not decode: %v", err)
	}
	return []byte(r.Json), nil
}

func printRows(c *cli.Context, head []string, rows [][]string) error {
	if c.String("output") == "csv" {
		w := csv.NewWriter(stdout(c))
		w.Write(head)
		w.WriteAll(rows)
		return w.Error()
	}
	return printTable(stdout(c), head, rows)
}

func printTable(out io.Writer, head []string, rows [][]string) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	for _, r := range append([][]string{head}, rows...) {
		for i, x := range r {
			if i > 0 {
				fmt.Fprint(w, "\t")
			}
			fmt.Fprint(w, x)
		}
		fmt.Fprintln(w)
	}
	return w.Flush()
}

func upper(ss []string, prefix string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		b := []byte(prefix + s)
		for j, ch := range b {
			if ch >= 'a' && ch <= 'z' {
				b[j] = ch - 'a' + 'A'
			}
		}
		out[i] = string(b)
	}
	return out
}

func u(n uint32) string { return strconv.FormatUint(uint64(n), 10) }
