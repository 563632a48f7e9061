package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func getURL(t *testing.T, url string) (int, string) {
	t.Helper()
	cl := http.Client{Timeout: 3 * time.Second}
	resp, err := cl.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func grpcHealth(t *testing.T, addr, service string) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(clientTLS(t))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		t.Fatalf("grpc health %q: %v", service, err)
	}
	return resp.GetStatus()
}

// /healthz, /readyz and grpc.health.v1 before and after formation.
func TestHealthEndpoints(t *testing.T) {
	t.Parallel() // no timing assertion: may share the machine
	c := startCluster(t)
	m := c.members[0]
	if code, body := getURL(t, "http://"+m.httpAddr+"/healthz"); code != 200 || !strings.Contains(body, "ok") {
		t.Fatalf("/healthz = %d %q", code, body)
	}
	if code, body := getURL(t, "http://"+m.httpAddr+"/readyz"); code != 503 || !strings.Contains(body, "not formed") {
		t.Fatalf("/readyz before formation = %d %q", code, body)
	}
	if st := grpcHealth(t, m.addr, ""); st != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("grpc health of the server = %s", st)
	}
	if st := grpcHealth(t, m.addr, "triad.v1.Licensing"); st != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("grpc health of Licensing before formation = %s", st)
	}
	c.form()
	waitFor(t, 10*time.Second, "ready after formation", func() error {
		if code, body := getURL(t, "http://"+m.httpAddr+"/readyz"); code != 200 {
			return fmt.Errorf("/readyz = %d %q", code, body)
		}
		if st := grpcHealth(t, m.addr, "triad.v1.Licensing"); st != healthpb.HealthCheckResponse_SERVING {
			return fmt.Errorf("grpc health of Licensing = %s", st)
		}
		return nil
	})
	var s map[string]any
	if code, body := getURL(t, "http://"+m.httpAddr+"/v1/status"); code != 200 {
		t.Fatalf("/v1/status = %d", code)
	} else if err := jsonUnmarshal(body, &s); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"member", "role", "leader", "term", "commit_index", "applied_index", "links", "status", "clock_offsets", "alarms"} {
		if _, ok := s[k]; !ok {
			t.Errorf("/v1/status lacks %q: %v", k, s)
		}
	}
}

// startWatch runs a triadctl --watch command until the test stops it.
func startWatch(t *testing.T, ctx context.Context, args ...string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "triadctl"), args...)
	out := &syncBuffer{}
	cmd.Stdout = out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, out
}

// stopWatch interrupts a watch as Ctrl-C does; it must end cleanly.
func stopWatch(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	cmd.Process.Signal(syscall.SIGINT)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("watch did not end cleanly on Ctrl-C: %v", err)
	}
}

// `cluster links --watch` and `cluster status --watch` refresh until
// interrupted.
func TestClusterLinksWatch(t *testing.T) {
	t.Parallel() // no timing assertion: may share the machine
	c := startCluster(t)
	c.form()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	links, linksOut := startWatch(t, ctx, "--server", c.members[1].addr, "cluster", "links", "--watch", "--interval", "200ms")
	// In JSON, each refresh is one whole status document.
	st, stOut := startWatch(t, ctx, "--server", c.members[2].addr, "--output", "json", "cluster", "status", "--watch", "--interval", "200ms")
	var docs []status
	waitFor(t, 10*time.Second, "three refreshes of each watch", func() error {
		if n := strings.Count(linksOut.String(), "LINK"); n < 3 {
			return fmt.Errorf("%d links refreshes so far", n)
		}
		docs = docs[:0]
		dec := json.NewDecoder(strings.NewReader(stOut.String()))
		for {
			var s status
			if err := dec.Decode(&s); err != nil {
				break // end of the output so far, or a document half written
			}
			docs = append(docs, s)
		}
		if len(docs) < 3 {
			return fmt.Errorf("%d status refreshes so far", len(docs))
		}
		return nil
	})
	stopWatch(t, links)
	stopWatch(t, st)
	if !strings.Contains(linksOut.String(), "alpha – bravo") {
		t.Fatalf("links watch output lacks the links:\n%s", linksOut.String())
	}
	for i, s := range docs {
		if s.Member != "charlie" || s.Mode != "failover" || len(s.Members) != 3 || len(s.Links) != 3 || s.Status == "" {
			t.Fatalf("status refresh %d: %+v", i, s)
		}
	}
}

// syncBuffer is a bytes.Buffer safe to read while a process writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Shell completion is enabled in the triadctl binary: the completion flag
// lists the command tree (urfave/cli writes it to the process's stdout).
func TestTriadctlShellCompletion(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--generate-bash-completion"}, []string{"cluster", "license", "usage", "rules", "vendor", "password", "server"}},
		{[]string{"usage", "--generate-bash-completion"}, []string{"features", "users", "leases", "denials", "release", "recycle"}},
	} {
		out, err := exec.Command(filepath.Join(binDir, "triadctl"), tc.args...).Output()
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range tc.want {
			if !strings.Contains(string(out), want) {
				t.Errorf("%v lacks %q:\n%s", tc.args, want, out)
			}
		}
	}
}
