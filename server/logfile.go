package server

import (
	"fmt"
	"os"

	"gopkg.in/natefinch/lumberjack.v2"
)

// openLogFile returns the writer for the member's log file: lumberjack
// rotates it before a write would take it past maxMB megabytes, renaming it
// to NAME-<UTC time>.EXT in the same directory, and deletes all but the
// keep newest rotated files (in the background, right after a rotation).
// Rotated files are not compressed, and none are deleted for their age.
//
// lumberjack opens the file only at the first write, where an error would
// be lost (slog drops write errors), so the file is opened here once: New
// then fails with a clear message on a bad path, and a file that does not
// exist yet is created 0600. lumberjack creates the files it rotates into
// with the mode of the file they replace, so they stay 0600 too.
func openLogFile(path string, maxMB, keep int) (*lumberjack.Logger, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open log file: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("open log file: %w", err)
	}
	return &lumberjack.Logger{Filename: path, MaxSize: maxMB, MaxBackups: keep, Compress: false}, nil
}
