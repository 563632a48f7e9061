package server

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"

	"google.golang.org/grpc/grpclog"
)

// gRPC's own log (connection errors and the like) goes to the member's
// structured log as JSON, like everything else. grpclog's logger is
// global and must be set before gRPC starts (RouteGRPCLogs, from main);
// the member's logger is swapped in when it starts.
var grpcSlog atomic.Pointer[slog.Logger]

// RouteGRPCLogs sends gRPC's log to the running member's JSON log (stderr
// until a member starts). Call once, first thing in main.
func RouteGRPCLogs() {
	grpclog.SetLoggerV2(grpcLogger{})
}

func useGRPCLog(l *slog.Logger) { grpcSlog.Store(l.With("component", "grpc")) }

// grpcLogger adapts grpclog.LoggerV2 to slog. gRPC's info messages
// (connection state changes, every few seconds on a busy member) are
// dropped; warnings and errors are kept.
type grpcLogger struct{}

var stderrJSON = slog.New(slog.NewJSONHandler(os.Stderr, nil)).With("component", "grpc")

func (grpcLogger) log(level slog.Level, msg string) {
	l := grpcSlog.Load()
	if l == nil {
		l = stderrJSON
	}
	l.Log(context.Background(), level, msg)
}

func (g grpcLogger) Info(args ...any)                 {}
func (g grpcLogger) Infoln(args ...any)               {}
func (g grpcLogger) Infof(format string, args ...any) {}
func (g grpcLogger) Warning(args ...any)              { g.log(slog.LevelWarn, fmt.Sprint(args...)) }
func (g grpcLogger) Warningln(args ...any)            { g.log(slog.LevelWarn, fmt.Sprint(args...)) }
func (g grpcLogger) Warningf(format string, args ...any) {
	g.log(slog.LevelWarn, fmt.Sprintf(format, args...))
}
func (g grpcLogger) Error(args ...any)   { g.log(slog.LevelError, fmt.Sprint(args...)) }
func (g grpcLogger) Errorln(args ...any) { g.log(slog.LevelError, fmt.Sprint(args...)) }
func (g grpcLogger) Errorf(format string, args ...any) {
	g.log(slog.LevelError, fmt.Sprintf(format, args...))
}
func (g grpcLogger) Fatal(args ...any)   { g.log(slog.LevelError, fmt.Sprint(args...)); os.Exit(1) }
func (g grpcLogger) Fatalln(args ...any) { g.log(slog.LevelError, fmt.Sprint(args...)); os.Exit(1) }
func (g grpcLogger) Fatalf(format string, args ...any) {
	g.log(slog.LevelError, fmt.Sprintf(format, args...))
	os.Exit(1)
}
func (g grpcLogger) V(l int) bool { return l <= 0 }
