package fsm

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/license"
	"github.com/triadlm/triad/proto/fsmpb"
)

// The whole-version golden files were written by the build before dotted
// versions (-write-whole-version-golden): a license file, the Raft log
// entries of a small scenario, the snapshot those entries give and the
// outputs of that build. Every later build must read the file to the same
// record, replay the entries to the same snapshot bytes and answer the same
// results and usage.
var writeWholeVersionGolden = flag.Bool("write-whole-version-golden", false,
	"rewrite testdata/whole-versions/ (only with the build before dotted versions)")

const wholeGoldenDir = "testdata/whole-versions"

type goldenEntry struct {
	Index uint64 `json:"index"`
	Data  []byte `json:"data"`
}

type goldenOutputs struct {
	Results []string `json:"results"` // one per entry: result codes
	Usage   []string `json:"usage"`
	Leases  []string `json:"leases"`
	Rows    []string `json:"feature_rows"`
}

// goldenWholeLicense is the license of the scenario: whole-number versions,
// several models and limits.
func goldenWholeLicense() license.Body {
	return license.Body{
		FormatVersion: license.FormatVersion, Serial: "GOLD-1", IssuedTo: "Golden Test",
		IssuedAt: time.UnixMilli(t0 - day), ValidAfter: time.UnixMilli(t0 - day), ValidUntil: time.UnixMilli(t0 + 365*day),
		Binding: license.Binding{Mode: modeFailover, ComputerIDs: clusterIDs},
		Features: []license.Feature{
			{Name: "cad", Version: 3, Count: 2},
			{Name: "cad", Version: 5, Count: 2, GraceSeconds: 600},
			{Name: "sim", Version: 1, Count: 1, Limit: license.LimitSoft, Overdraft: 1},
			{Name: "view", Version: 2, Count: 2, Model: license.ModelNamedUser},
		},
	}
}

// goldenWholeCommands is the scenario, one command per entry (NowMs set).
func goldenWholeCommands(file []byte) []*fsmpb.Command {
	f, err := license.Parse(file)
	if err != nil {
		panic(err)
	}
	at := func(now int64, c *fsmpb.Command) *fsmpb.Command { c.NowMs = now; return c }
	grant := func(req, feature string, version uint32, user string) *fsmpb.Command {
		op := grantOp(req, feature, version, 1)
		op.GetGrant().User = user
		op.GetGrant().Secret = []byte("secret-" + req)
		return batchCmd(op)
	}
	enroll := rawEnrollCmd(LicenseFromFile(f, file))
	enroll.GetEnrollLicense().SessionId = "golden-admin"
	return []*fsmpb.Command{
		at(t0, formCmd(modeFailover, clusterIDs...)),
		at(t0+1, openCmd("golden-admin", ModeFull, true, 0)),
		at(t0+2, enroll),
		at(t0+3, grant("g1", "cad", 5, "ann")),
		at(t0+4, grant("g2", "cad", 0, "bob")),
		at(t0+5, grant("g3", "cad", 3, "cat")),
		at(t0+6, grant("g4", "cad", 4, "dan")),
		at(t0+7, grant("g5", "cad", 6, "eve")), // version too new
		at(t0+8, grant("g6", "cad", 5, "fay")), // no seat
		at(t0+9, grant("g7", "sim", 1, "ann")),
		at(t0+10, grant("g8", "sim", 0, "bob")), // soft overdraft
		at(t0+11, grant("g9", "view", 2, "ann")),
		at(t0+12, grant("g10", "view", 1, "bob")),
		at(t0+13, grant("g11", "view", 0, "cat")), // named seats full
		at(t0+14, batchCmd(&fsmpb.Op{Op: &fsmpb.Op_Release{Release: &fsmpb.Release{LeaseIds: []uint64{2}, Secrets: [][]byte{[]byte("secret-g2")}}}})),
		at(t0+15, grant("g12", "cad", 2, "gus")),
		at(t0+16, batchCmd(&fsmpb.Op{Op: &fsmpb.Op_Renew{Renew: &fsmpb.Renew{LeaseIds: []uint64{1, 3}, Secrets: [][]byte{[]byte("secret-g1"), []byte("secret-g3")}}}})),
	}
}

func goldenResultString(r any) string {
	switch r := r.(type) {
	case *fsmpb.OpResult:
		return r.Code.String()
	case *fsmpb.BatchResult:
		var codes []string
		for _, x := range r.Results {
			codes = append(codes, x.Code.String())
		}
		return "batch " + strings.Join(codes, ",")
	}
	return fmt.Sprintf("%T", r)
}

// goldenOutputsOf is what the scenario's state shows at t0+20.
func goldenOutputsOf(f *FSM) goldenOutputs {
	var o goldenOutputs
	now := t0 + 20
	for _, u := range f.Usage(now) {
		o.Usage = append(o.Usage, fmt.Sprintf("%s v%s capacity %d in use %d", u.Feature, usageVersionText(u), u.Capacity, u.InUse))
	}
	for _, l := range f.Leases() {
		o.Leases = append(o.Leases, fmt.Sprintf("lease %d %s v%s x%d %s@%s expires %d", l.Id, l.Feature, leaseVersionText(l), l.Count, l.User, l.Host, l.ExpiresMs))
	}
	for _, r := range f.FeatureRows(now) {
		o.Rows = append(o.Rows, fmt.Sprintf("%s v%s capacity %d in use %d model %s pool %d used %d", r.Feature, usageVersionText(r.Usage), r.Capacity, r.InUse, r.Model, r.PoolMs, r.PoolUsedMs))
	}
	return o
}

func TestWholeVersionGolden(t *testing.T) {
	dir := wholeGoldenDir
	if *writeWholeVersionGolden {
		file, err := license.Sign(goldenWholeLicense(), vendorPriv)
		if err != nil {
			t.Fatal(err)
		}
		f := New()
		var entries []goldenEntry
		var out goldenOutputs
		for i, c := range goldenWholeCommands(file) {
			data, err := proto.Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			entries = append(entries, goldenEntry{uint64(i + 1), data})
			out.Results = append(out.Results, goldenResultString(f.Apply(&raft.Log{Index: uint64(i + 1), Term: 1, Type: raft.LogCommand, Data: data})))
		}
		o := goldenOutputsOf(f)
		out.Usage, out.Leases, out.Rows = o.Usage, o.Leases, o.Rows
		js, _ := json.MarshalIndent(entries, "", " ")
		outs, _ := json.MarshalIndent(out, "", " ")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, data := range map[string][]byte{"license.lic": file, "log.json": js, "snapshot.bin": f.MarshalSnapshot(), "outputs.json": outs} {
			if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	read := func(name string) []byte {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	file, snap := read("license.lic"), read("snapshot.bin")
	var entries []goldenEntry
	var want goldenOutputs
	if err := json.Unmarshal(read("log.json"), &entries); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(read("outputs.json"), &want); err != nil {
		t.Fatal(err)
	}

	// The old file reads to the record the old build logged.
	parsed, err := license.Parse(file)
	if err != nil {
		t.Fatalf("the whole-version license file no longer parses: %v", err)
	}
	if body, _ := license.Sign(parsed.Body, vendorPriv); !bytes.Equal(body, file) {
		t.Error("re-signing the parsed whole-version license gives other bytes")
	}
	var enrolled *fsmpb.Command
	for _, e := range entries {
		c := &fsmpb.Command{}
		if err := proto.Unmarshal(e.Data, c); err != nil {
			t.Fatal(err)
		}
		if c.GetEnrollLicense() != nil {
			enrolled = c
		}
		if format, _ := FormatOf(c); format > 3 {
			t.Errorf("entry %d of the old build needs format %d", e.Index, format)
		}
	}
	if got := LicenseFromFile(parsed, file); !proto.Equal(got, enrolled.GetEnrollLicense().GetLicense()) {
		t.Errorf("the license file reads to another record than the old build logged:\n got %v\nwant %v", got, enrolled.GetEnrollLicense().GetLicense())
	}

	// The log replays to the same results, snapshot and outputs.
	f := New()
	var results []string
	for _, e := range entries {
		results = append(results, goldenResultString(f.Apply(&raft.Log{Index: e.Index, Term: 1, Type: raft.LogCommand, Data: e.Data})))
	}
	if strings.Join(results, "\n") != strings.Join(want.Results, "\n") {
		t.Errorf("replay results:\n%s\nwant\n%s", strings.Join(results, "\n"), strings.Join(want.Results, "\n"))
	}
	if !bytes.Equal(f.MarshalSnapshot(), snap) {
		t.Error("replaying the old log gives other snapshot bytes than the old build wrote")
	}
	checkOutputs := func(what string, f *FSM) {
		got := goldenOutputsOf(f)
		for _, c := range []struct {
			name      string
			got, want []string
		}{{"usage", got.Usage, want.Usage}, {"leases", got.Leases, want.Leases}, {"feature rows", got.Rows, want.Rows}} {
			if strings.Join(c.got, "\n") != strings.Join(c.want, "\n") {
				t.Errorf("%s: %s:\n%s\nwant\n%s", what, c.name, strings.Join(c.got, "\n"), strings.Join(c.want, "\n"))
			}
		}
	}
	checkOutputs("replayed log", f)

	// The old snapshot restores to the same outputs and bytes.
	g := New()
	if err := g.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatalf("restore the old snapshot: %v", err)
	}
	if !bytes.Equal(g.MarshalSnapshot(), snap) {
		t.Error("the old snapshot changes across restore")
	}
	checkOutputs("restored snapshot", g)
}

func usageVersionText(u Usage) string { return fmt.Sprint(u.Version) }

func leaseVersionText(l *fsmpb.Lease) string { return fmt.Sprint(l.Version) }
