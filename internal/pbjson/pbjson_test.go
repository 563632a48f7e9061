package pbjson

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"

	"github.com/triadlm/triad/proto/triadv1"
)

// TestNumbersAreNumbers: 64-bit integers come out as JSON numbers (protojson
// writes them as strings), at every depth, exactly, up to the type's limit.
func TestNumbersAreNumbers(t *testing.T) {
	m := &triadv1.UsageLeasesResponse{Leases: []*triadv1.Lease{{
		LeaseId: math.MaxUint64, Feature: "cad", Version: 3, Pid: -42, GrantedUnixMs: 1764000000123, Borrowed: true,
	}}}
	b, err := Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v struct {
		Leases []map[string]any `json:"leases"`
	}
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	l := v.Leases[0]
	for key, want := range map[string]string{"lease_id": "18446744073709551615", "version": "3", "pid": "-42", "granted_unix_ms": "1764000000123", "count": "0"} {
		n, ok := l[key].(json.Number)
		if !ok || n.String() != want {
			t.Errorf("%s = %#v (%T), want the number %s in %s", key, l[key], l[key], want, b)
		}
	}
	if l["borrowed"] != true || l["feature"] != "cad" || l["user"] != "" {
		t.Errorf("other fields wrong: %s", b)
	}
}

// TestUnsetFields: unset messages and optional scalars are null, as with
// protojson's EmitUnpopulated; lists are [] rather than null.
func TestUnsetFields(t *testing.T) {
	days := uint32(9)
	b, err := Marshal(&triadv1.ServerSetRequest{ExpiryWarningDays: &days})
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if v["header"] != nil || v["statistics"] != nil || v["expiry_warning_days"] != float64(9) {
		t.Errorf("got %s", b)
	}
	if _, ok := v["statistics"]; !ok {
		t.Errorf("unset optional field left out: %s", b)
	}
	b, _ = Marshal(&triadv1.UsageLeasesResponse{})
	if string(b) != `{"leases":[]}` {
		t.Errorf("empty list = %s, want []", b)
	}
}
