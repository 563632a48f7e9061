package fsm

import (
	"fmt"
	"testing"

	"github.com/triadlm/triad/proto/fsmpb"
)

// benchRules are MAX and RESERVE rules of every subject kind on cad, with a
// user group and a host group: each grant of cad checks all of them.
func benchRules() *fsmpb.Command {
	groups := []*fsmpb.RuleGroup{
		{Name: "design", Kind: "user", Members: []string{"u1", "u2", "u3", "u4"}},
		{Name: "lab", Kind: "host", Members: []string{"h1", "h2", "h3"}},
	}
	return rulesCmd(groups,
		rule("u1-max", "max", "user", "u1", 1_000_000),
		rule("h1-max", "max", "host", "h1", 1_000_000),
		rule("design-max", "max", "group", "design", 1_000_000),
		rule("lab-max", "max", "host_group", "lab", 1_000_000),
		rule("u2-keep", "reserve", "user", "u2", 1),
		rule("lab-keep", "reserve", "host_group", "lab", 1),
	)
}

// benchGrantState returns a harness holding n live leases of cad (spread
// over users and hosts, some matching the rules) and, when named, as many
// more of view, a named-user feature with the same rules' host subjects.
func benchGrantState(b *testing.B, n int) *harness {
	h := formed(b)
	named := feat("view", 1, 1_000_000)
	named.Model = modelNamedUser
	h.mustEnroll(t0, lic("B1", t0-day, t0+365*day, feat("cad", 1, 1_000_000), named))
	if r := h.apply(t0, benchRules()).(*fsmpb.OpResult); r.Code != fsmpb.Code_OK {
		b.Fatalf("set rules: %v", r)
	}
	const per = 1000
	for i := 0; i < n; i += per {
		ops := make([]*fsmpb.Op, 0, per)
		for j := i; j < min(i+per, n); j++ {
			op := grantAs(fmt.Sprint("base-", j), "cad", 1, fmt.Sprint("u", j%50), fmt.Sprint("h", j%40))
			op.GetGrant().TtlMs = maxTTLMs
			ops = append(ops, op)
		}
		for _, r := range h.apply(t0, batchCmd(ops...)).(*fsmpb.BatchResult).Results {
			if r.Code != fsmpb.Code_OK {
				b.Fatalf("setup grant: %v %s", r.Code, r.Message)
			}
		}
	}
	if got := len(h.f.s.leases); got != n {
		b.Fatalf("%d live leases, want %d", got, n)
	}
	return h
}

// BenchmarkGrantWithRules measures one grant and one release of cad, under
// six MAX/RESERVE rules, next to 1k and 100k live leases: with counters
// per rule the cost must stay flat as leases grow (issue 11, point 6).
func BenchmarkGrantWithRules(b *testing.B) {
	for _, n := range benchLeaseCounts {
		b.Run(fmt.Sprint("leases=", n), func(b *testing.B) {
			h := benchGrantState(b, n)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				now := t0 + int64(i)
				r := h.op(now, grantAs(fmt.Sprint("g", i), "cad", 1, "u1", "h1"))
				if r.Code != fsmpb.Code_OK {
					b.Fatalf("grant: %v %s", r.Code, r.Message)
				}
				if rel := h.op(now, releaseOp(r.Lease.Id)); rel.Leases[0].Code != fsmpb.Code_OK {
					b.Fatalf("release: %v", rel.Leases[0])
				}
			}
		})
	}
}

var benchLeaseCounts = []int{1_000, 100_000}

// BenchmarkNamedGrantWithHostRules measures tying a new named user of view
// (and releasing the lease) under a MAX rule per host and per host group,
// next to 1k and 100k live named leases of 2,000 tied users: a named seat
// counts for a host rule while its user holds a lease from a matching
// host, which was a walk over the leases per tied seat before counters.
func BenchmarkNamedGrantWithHostRules(b *testing.B) {
	for _, n := range benchLeaseCounts {
		b.Run(fmt.Sprint("leases=", n), func(b *testing.B) {
			h := formed(b)
			named := feat("view", 1, 1_000_000)
			named.Model = modelNamedUser
			h.mustEnroll(t0, lic("B1", t0-day, t0+365*day, named))
			hostMax := rule("h1-max", "max", "host", "h1", 1_000_000)
			labMax := rule("lab-max", "max", "host_group", "lab", 1_000_000)
			hostMax.Feature, labMax.Feature = "view", "view"
			groups := []*fsmpb.RuleGroup{{Name: "lab", Kind: "host", Members: []string{"h1", "h2", "h3"}}}
			if r := h.apply(t0, rulesCmd(groups, hostMax, labMax)).(*fsmpb.OpResult); r.Code != fsmpb.Code_OK {
				b.Fatalf("set rules: %v", r)
			}
			const per = 1000
			for i := 0; i < n; i += per {
				ops := make([]*fsmpb.Op, 0, per)
				for j := i; j < min(i+per, n); j++ {
					op := grantAs(fmt.Sprint("base-", j), "view", 1, fmt.Sprint("u", j%2000), fmt.Sprint("h", j%40))
					op.GetGrant().TtlMs = maxTTLMs
					ops = append(ops, op)
				}
				for _, r := range h.apply(t0, batchCmd(ops...)).(*fsmpb.BatchResult).Results {
					if r.Code != fsmpb.Code_OK {
						b.Fatalf("setup grant: %v %s", r.Code, r.Message)
					}
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				now := t0 + int64(i)
				r := h.op(now, grantAs(fmt.Sprint("g", i), "view", 1, fmt.Sprint("new", i), "h1"))
				if r.Code != fsmpb.Code_OK {
					b.Fatalf("grant: %v %s", r.Code, r.Message)
				}
				h.op(now, releaseOp(r.Lease.Id))
			}
		})
	}
}
