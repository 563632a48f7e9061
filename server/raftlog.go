package server

import (
	"strings"

	"github.com/hashicorp/go-hclog"
)

// raftLogger is Raft's hclog logger with one change of level: Raft logs a
// peer it cannot reach (stopped, restarting, partitioned) at error level
// on every retry, including while the members of a cluster are stopped
// cleanly one after the other. Those are warnings here: a member that
// stays unreachable is reported by the membership monitor (member down,
// links, alarms), which is the signal to act on. Every other error stays
// an error. The list is of Raft v1.7's messages.
type raftLogger struct{ hclog.Logger }

var peerUnreachable = []string{
	"failed to appendEntries to",
	"failed to heartbeat to",
	"failed to make requestVote RPC",
	"failed to contact",
	"peer has newer term, stopping replication",
	"failed to decode incoming command",
	"failed to send snapshot to",
	"failed to get log",
}

func demote(level hclog.Level, msg string) hclog.Level {
	if level == hclog.Error {
		for _, p := range peerUnreachable {
			if strings.HasPrefix(msg, p) {
				return hclog.Warn
			}
		}
	}
	return level
}

func (l raftLogger) Log(level hclog.Level, msg string, args ...interface{}) {
	l.Logger.Log(demote(level, msg), msg, args...)
}

func (l raftLogger) Error(msg string, args ...interface{}) {
	l.Log(hclog.Error, msg, args...)
}

func (l raftLogger) With(args ...interface{}) hclog.Logger { return raftLogger{l.Logger.With(args...)} }
func (l raftLogger) Named(name string) hclog.Logger        { return raftLogger{l.Logger.Named(name)} }
func (l raftLogger) ResetNamed(name string) hclog.Logger {
	return raftLogger{l.Logger.ResetNamed(name)}
}
