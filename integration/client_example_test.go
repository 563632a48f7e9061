package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cmd/triad-example checks out, prints its state every second and releases
// on SIGINT.
func TestClientExampleProgram(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "triad-example")
	build := exec.Command("go", "build", "-o", bin, "../cmd/triad-example")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		t.Fatal(err)
	}
	c := formedWithLicense(t, 2)
	cmd := exec.Command(bin, "--servers", c.servers(), "--feature", "cad", "--version", "1", "--ttl", "10s")
	var out, errb lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })
	waitFor(t, 30*time.Second, "two held lines", func() error {
		if n := strings.Count(out.String(), "state=held"); n < 2 {
			return fmt.Errorf("%d lines: %q %s", n, out.String(), errb.String())
		}
		return nil
	})
	if !strings.Contains(out.String(), "source=cluster grace_left=2h0m0s") {
		t.Fatalf("output %q", out.String())
	}
	if n := inUse(c, c.servers()); n != 1 {
		t.Fatalf("in use %d, want 1", n)
	}
	cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit: %v: %s", err, errb.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("did not exit after SIGINT")
	}
	if n := inUse(c, c.servers()); n != 0 {
		t.Fatalf("in use %d after exit, want 0", n)
	}
}
