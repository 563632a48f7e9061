package fsm

import "github.com/triadlm/triad/proto/fsmpb"

// Dotted versions (package featver) need format 4: a build before them
// would ignore version_text and treat "2.1" as version 2, or enroll a
// license whose entries it orders differently.
const formatDotted = 4

func init() {
	commandFormatHooks = append(commandFormatHooks, dottedCommandFormat)
	opFormatHooks = append(opFormatHooks, dottedOpFormat)
}

func dottedCommandFormat(cmd *fsmpb.Command) (uint32, string) {
	if licensesDotted(cmd.GetEnrollLicense().GetLicense()) {
		return formatDotted, "enroll_license.version_text"
	}
	if licensesDotted(cmd.GetReplaceMember().GetLicenses()...) {
		return formatDotted, "replace_member.version_text"
	}
	return 1, ""
}

func licensesDotted(ls ...*fsmpb.License) bool {
	for _, l := range ls {
		for _, f := range l.GetFeatures() {
			if f.GetVersionText() != "" {
				return true
			}
		}
	}
	return false
}

func dottedOpFormat(o *fsmpb.Op) (uint32, string) {
	switch {
	case o.GetGrant().GetVersionText() != "":
		return formatDotted, "batch.grant.version_text"
	case o.GetBorrow().GetGrant().GetVersionText() != "":
		return formatDotted, "batch.borrow.version_text"
	}
	return 1, ""
}
