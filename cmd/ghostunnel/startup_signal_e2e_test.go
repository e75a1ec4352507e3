package main

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestStopSignalDuringStartup: SIGTERM ends a process still building its
// tunnels (here waiting, with no timeout, for a Workload API that never
// answers) at once, as it ends upstream's before it listens; SIGHUP there
// neither kills it nor is lost.
func TestStopSignalDuringStartup(t *testing.T) {
	sock := "unix://" + filepath.Join(t.TempDir(), "agent.sock")
	p := startProc(t, nil, "server", "--listen", freeAddr(t), "--target", "127.0.0.1:1",
		"--use-workload-api-addr", sock, "--use-workload-api-timeout", "0", "--allow-all")
	p.waitLog("starting ghostunnel", 10*time.Second)
	time.Sleep(300 * time.Millisecond)
	p.signal(syscall.SIGHUP)
	time.Sleep(300 * time.Millisecond)
	select {
	case <-p.done:
		t.Fatalf("SIGHUP during startup ended the process:\n%s", p.out.String())
	default:
	}
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		t.Fatal("still running 5 s after SIGTERM during startup")
	}
	ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
		t.Fatalf("process state %v, want terminated by SIGTERM", p.cmd.ProcessState)
	}
}

// TestWarningsLogged: a setting that has no effect does not stop a start,
// and the process says so.
func TestWarningsLogged(t *testing.T) {
	p := newE2EPKI(t)
	pr := startProc(t, nil, "server", "--listen", freeAddr(t), "--target", echoServer(t),
		"--keystore", p.server.Combined, "--allow-all", "--auto-acme-email", "ops@example.com")
	pr.waitLog("--auto-acme-email has no effect without --auto-acme-cert", 10*time.Second)
	pr.waitLog("listening for connections", 10*time.Second)
}

// TestQuietAllStartupError: --quiet=all silences the logs, not a failed
// start: the error still reaches stderr (upstream's main prints it whatever
// --quiet says), with exit 1.
func TestQuietAllStartupError(t *testing.T) {
	pr := startProc(t, nil, "server", "--quiet=all", "--listen", freeAddr(t), "--target", "127.0.0.1:1",
		"--keystore", "/nonexistent.pem", "--allow-all")
	if code := pr.wait(10 * time.Second); code != 1 {
		t.Fatalf("exit code %d, want 1", code)
	}
	if out := pr.out.String(); !strings.Contains(out, "error") || !strings.Contains(out, "/nonexistent.pem") {
		t.Fatalf("a failed start under --quiet=all said: %q", out)
	}
}
