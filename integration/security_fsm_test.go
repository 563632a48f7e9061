package integration

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestSecFSMDisconnectAndVendorTrust runs the state-machine enforcement
// through real members and triadctl: a session disconnected through any
// member is refused by the next command on every member; the vendor keys
// agreed at formation are listed by every member, and a license of another
// vendor is refused until a full session trusts its key.
func TestSecFSMDisconnectAndVendorTrust(t *testing.T) {
	t.Parallel() // no timing assertion: may share the machine
	c := startCluster(t)
	c.form()
	for _, via := range c.members {
		tok := mustOpen(t, nil, "--server", via.addr)
		env := []string{"TRIAD_SESSION=" + tok}
		if _, err := ctlEnv(t, env, "--server", via.addr, "license", "list"); err != nil {
			t.Fatalf("the fresh session on %s: %v", via.name, err)
		}
		if _, err := ctlEnv(t, env, "--server", via.addr, "disconnect"); err != nil {
			t.Fatal(err)
		}
		for _, m := range c.members {
			_, err := ctlEnv(t, env, "--server", m.addr, "license", "list")
			wantFail(t, err, "unknown or closed session")
		}
	}

	type keys struct {
		Keys []struct {
			KeyID string `json:"key_id"`
		} `json:"keys"`
	}
	for _, m := range c.members {
		var k keys
		ctlJSON(t, m.addr, &k, "vendor", "trust", "list")
		if len(k.Keys) != 1 || len(k.Keys[0].KeyID) != 16 {
			t.Fatalf("vendor trust on %s: %+v", m.name, k)
		}
	}
	other := filepath.Join(c.dir, "other")
	if _, err := ctlOn(t, "127.0.0.1:1", "vendor", "keygen", "--out", other); err != nil {
		t.Fatal(err)
	}
	foreign := c.issueWith("foreign", other+".key", strings.Join(c.computerIDs(), ","), "--feature", "cad:1:1", "--valid-until", "2099-01-01")
	_, err := ctlOn(t, c.servers(), "license", "enroll", foreign)
	wantFail(t, err, "signature does not verify")
	if _, err := ctlOn(t, c.members[1].addr, "vendor", "trust", "add", other+".pub"); err != nil {
		t.Fatal(err)
	}
	if _, err := ctlOn(t, c.members[2].addr, "license", "enroll", foreign); err != nil {
		t.Fatalf("enroll after trusting its vendor: %v", err)
	}
	var k keys
	ctlJSON(t, c.members[0].addr, &k, "vendor", "trust", "list")
	if len(k.Keys) != 2 {
		t.Fatalf("vendor trust after add: %+v", k)
	}
	var lics []struct{ State string }
	ctlJSON(t, c.members[0].addr, &lics, "license", "list")
	if len(lics) != 1 || lics[0].State != "valid" {
		t.Fatalf("license list after enroll: %+v", lics)
	}
}
