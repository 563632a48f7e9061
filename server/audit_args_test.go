package server

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/triadlm/triad/proto/fsmpb"
)

// What an audit record says about each command: enough to know what
// changed, never a password hash, a raw license file or a full session id.
func TestCommandArgs(t *testing.T) {
	for _, tc := range []struct {
		cmd  *fsmpb.Command
		want string
		not  []string
	}{
		{&fsmpb.Command{Cmd: &fsmpb.Command_SetPasswords{SetPasswords: &fsmpb.SetPasswords{
			SessionId: "0123456789abcdef0123", FullHash: []byte("$2a$10$secrethash"), RestrictedHash: []byte("$2a$10$other")}}},
			"which=full,restricted", []string{"$2a$", "secrethash", "0123456789abcdef0123"}},
		{&fsmpb.Command{Cmd: &fsmpb.Command_EnrollLicense{EnrollLicense: &fsmpb.EnrollLicense{License: &fsmpb.License{
			Serial: "TRIAD-7", Customer: "ACME", Raw: []byte("SIGNED LICENSE BODY"),
			Features: []*fsmpb.Feature{{Name: "cad", Version: 5, Count: 10}}}}}},
			"customer=ACME features=cad v5 x10 file_sha256=", []string{"SIGNED LICENSE BODY"}},
		{&fsmpb.Command{Cmd: &fsmpb.Command_SetSettings{SetSettings: &fsmpb.SetSettings{SessionId: "0123456789abcdef0123",
			Settings: &fsmpb.AdminSettings{RemotePolicy: proto.String("none"), SessionIdleTimeoutMs: proto.Int64(60000)}}}},
			"session_id=0123456789ab settings.remote_policy=none settings.session_idle_timeout_ms=60000", nil},
		{&fsmpb.Command{Cmd: &fsmpb.Command_RemoveLicense{RemoveLicense: &fsmpb.RemoveLicense{Serial: "TRIAD-7"}}},
			"serial=TRIAD-7", nil},
		{&fsmpb.Command{Cmd: &fsmpb.Command_RecycleNamedUser{RecycleNamedUser: &fsmpb.RecycleNamedUser{User: "bob", Feature: "cad"}}},
			"feature=cad user=bob", nil},
		{&fsmpb.Command{Cmd: &fsmpb.Command_SetRules{SetRules: &fsmpb.SetRules{Rules: &fsmpb.AccessRules{Text: "EXCLUDE cad USER eve\n", Rules: []*fsmpb.AccessRule{{}}}}}},
			"groups=0 rules=1 text_sha256=", []string{"eve"}},
	} {
		args := commandArgs(tc.cmd)
		var kv []string
		for _, k := range slices.Sorted(maps.Keys(args)) {
			kv = append(kv, k+"="+args[k])
		}
		got := strings.Join(kv, " ")
		if !strings.Contains(got, tc.want) {
			t.Errorf("%T: args %q, want %q", tc.cmd.Cmd, got, tc.want)
		}
		for _, n := range tc.not {
			if strings.Contains(got, n) {
				t.Errorf("%T: args %q contain %q", tc.cmd.Cmd, got, n)
			}
		}
	}
	if !sensitive("private_key") || !sensitive("lease_secret") || !sensitive("full_hash") || sensitive("serial") {
		t.Fatal("sensitive field names not recognized")
	}
}
