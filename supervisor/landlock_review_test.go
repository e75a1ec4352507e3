package supervisor

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-kit/log"

	"github.com/ghostunnel-fleet/ghostunnel/configs"
)

// A Kubernetes secret/configMap volume whose items use a nested path
// (items: [{key: tls.crt, path: certs/tls.crt}]) is laid out by the kubelet's
// AtomicWriter as MOUNT/certs -> ..data/certs, ..data -> ..TIMESTAMP. The
// directory of the configured file is then itself a symlink, so every rule
// lands on ..TIMESTAMP_1/certs; the next rotation's ..TIMESTAMP_2 is not
// readable and the tunnel can never reload its certificate again.
func TestLandlockNestedSymlinkRotation(t *testing.T) {
	if landlockABI() == 0 {
		t.Skip("no landlock")
	}
	mount := t.TempDir()
	write := func(ts string) {
		d := filepath.Join(mount, ts, "certs")
		os.MkdirAll(d, 0o755)
		os.WriteFile(filepath.Join(d, "tls.crt"), []byte(ts), 0o644)
		os.WriteFile(filepath.Join(d, "tls.key"), []byte(ts), 0o600)
	}
	write("..2024_01_01_00_00_00.1")
	os.Symlink("..2024_01_01_00_00_00.1", filepath.Join(mount, "..data"))
	os.Symlink("..data/certs", filepath.Join(mount, "certs"))
	cert := filepath.Join(mount, "certs", "tls.crt")

	out, ok := sandboxedChild(t, "TestLandlockNestedSymlinkHelper", []string{"REVIEW_CERT=" + cert}, func() {
		// The kubelet's rotation.
		write("..2024_02_01_00_00_00.2")
		os.Symlink("..2024_02_01_00_00_00.2", filepath.Join(mount, "..data_tmp"))
		if err := os.Rename(filepath.Join(mount, "..data_tmp"), filepath.Join(mount, "..data")); err != nil {
			t.Error(err)
		}
		os.RemoveAll(filepath.Join(mount, "..2024_01_01_00_00_00.1"))
	})
	if !ok {
		t.Errorf("the rotated certificate is unreadable in the sandbox:\n%s", out)
	}
}

func TestLandlockNestedSymlinkHelper(t *testing.T) {
	if os.Getenv("LANDLOCK_REVIEW_HELPER") == "" {
		t.Skip("child only")
	}
	cert := os.Getenv("REVIEW_CERT")
	key := filepath.Join(filepath.Dir(cert), "tls.key")
	cfg := &configs.Config{Tunnels: []configs.Tunnel{{Name: "a", Mode: "server", Listen: "127.0.0.1:1", Target: "127.0.0.1:2", Cert: cert, Key: key}}}
	s := &Supervisor{cfg: cfg, log: log.NewLogfmtLogger(os.Stdout)}
	if err := s.Sandbox(); err != nil {
		t.Fatal(err)
	}
	t.Logf("ro dirs: %v", s.sandbox.paths.roDirs)
	b, err := os.ReadFile(cert)
	t.Logf("before rotation: %q %v", b, err)
	fmt.Println("SANDBOXED")
	bufio.NewReader(os.Stdin).ReadString('\n')
	b, err = os.ReadFile(cert)
	if err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	t.Logf("after rotation: %q", b)
}

// /etc/resolv.conf (and /etc/hosts) are allowed as file rules, which
// Landlock ties to the inode present at Sandbox time. systemd-resolved,
// NetworkManager and resolvconf replace resolv.conf by rename; from then on
// the sandboxed process cannot read it (Go's resolver then falls back to
// 127.0.0.1:53 / [::1]:53, and /etc/hosts entries vanish).
func TestLandlockResolvConfRename(t *testing.T) {
	if landlockABI() == 0 {
		t.Skip("no landlock")
	}
	dir := t.TempDir()
	etc, run := filepath.Join(dir, "etc"), filepath.Join(dir, "run", "systemd", "resolve")
	os.MkdirAll(etc, 0o755)
	os.MkdirAll(run, 0o755)
	stub := filepath.Join(run, "stub-resolv.conf")
	os.WriteFile(stub, []byte("nameserver 127.0.0.53\n"), 0o644)
	resolv := filepath.Join(etc, "resolv.conf")
	if err := os.Symlink(stub, resolv); err != nil {
		t.Fatal(err)
	}
	out, ok := sandboxedChild(t, "TestLandlockResolvConfHelper", []string{"REVIEW_RESOLV=" + resolv}, func() {
		// What systemd-resolved does on a network change.
		os.WriteFile(stub+".tmp", []byte("nameserver 127.0.0.53\nsearch corp\n"), 0o644)
		if err := os.Rename(stub+".tmp", stub); err != nil {
			t.Error(err)
		}
	})
	if !ok {
		t.Errorf("sandboxed process lost %s after it was replaced by rename:\n%s", resolv, out)
	}
}

func TestLandlockResolvConfHelper(t *testing.T) {
	if os.Getenv("LANDLOCK_REVIEW_HELPER") == "" {
		t.Skip("child only")
	}
	resolv := os.Getenv("REVIEW_RESOLV")
	// Stand-in for the hard-coded /etc/resolv.conf entry.
	systemROFiles = append(systemROFiles, resolv)
	s := &Supervisor{cfg: &configs.Config{}, log: log.NewLogfmtLogger(os.Stdout)}
	if err := s.Sandbox(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.ReadFile(resolv); err != nil {
		t.Fatalf("before the rename: %v", err)
	}
	fmt.Println("read before rename: ok")
	fmt.Println("SANDBOXED")
	bufio.NewReader(os.Stdin).ReadString('\n')
	if _, err := os.ReadFile(resolv); err != nil {
		t.Fatalf("after the rename: %v", err)
	}
	fmt.Println("read after rename: ok")
}

// A unix target (and the Workload API socket) only needs connect(), which
// Landlock up to ABI 5 does not restrict; yet their directories are made
// read-write: the tunnel can create, overwrite and delete anything there.
func TestLandlockUnixTargetNotWritable(t *testing.T) {
	if landlockABI() == 0 {
		t.Skip("no landlock")
	}
	app, other := t.TempDir(), t.TempDir()
	appSock, otherSock := filepath.Join(app, "app.sock"), filepath.Join(other, "x.sock")
	for _, p := range []string{appSock, otherSock} {
		ln, err := net.Listen("unix", p)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
	}
	os.WriteFile(filepath.Join(app, "app.db"), []byte("data"), 0o600)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestLandlockUnixTargetHelper$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "LANDLOCK_REVIEW_HELPER=1", "REVIEW_APP="+app, "REVIEW_OTHER="+other)
	out, err := cmd.CombinedOutput()
	t.Logf("helper:\n%s", out)
	if err != nil || !strings.Contains(string(out), "PASS") {
		t.Fatal("helper failed")
	}
	if strings.Contains(string(out), "DELETED") || strings.Contains(string(out), "planted") {
		t.Errorf("the sandboxed tunnel could write next to its unix target")
	}
	if !strings.Contains(string(out), "connect to a socket in an unlisted directory: ok") {
		t.Errorf("the sandboxed tunnel could not connect to a unix socket")
	}
}

func TestLandlockUnixTargetHelper(t *testing.T) {
	if os.Getenv("LANDLOCK_REVIEW_HELPER") == "" {
		t.Skip("child only")
	}
	app, other := os.Getenv("REVIEW_APP"), os.Getenv("REVIEW_OTHER")
	cfg := &configs.Config{Tunnels: []configs.Tunnel{{Name: "a", Mode: "server", Listen: "127.0.0.1:1", Target: "unix:" + filepath.Join(app, "app.sock")}}}
	s := &Supervisor{cfg: cfg, log: log.NewLogfmtLogger(os.Stdout)}
	if err := s.Sandbox(); err != nil {
		t.Fatal(err)
	}
	t.Logf("rw dirs: %v", s.sandbox.paths.rwDirs)
	// connect() to a socket in a directory no rule names: allowed anyway.
	if c, err := net.Dial("unix", filepath.Join(other, "x.sock")); err != nil {
		t.Logf("connect to unlisted socket: %v", err)
	} else {
		c.Close()
		t.Logf("connect to a socket in an unlisted directory: ok (no rule needed)")
	}
	if err := os.Remove(filepath.Join(app, "app.db")); err == nil {
		t.Logf("DELETED %s/app.db", app)
	} else {
		t.Logf("remove: %v", err)
	}
	if err := os.WriteFile(filepath.Join(app, "planted"), []byte("x"), 0o600); err == nil {
		t.Logf("planted a file in %s", app)
	}
}

// sandboxedChild runs the test named helper in a child process (which
// applies the sandbox, prints SANDBOXED and waits for a line on stdin),
// calls then once the child is sandboxed, and returns the child's output
// and whether it passed.
func sandboxedChild(t *testing.T, helper string, env []string, then func()) (string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+helper+"$", "-test.v", "-test.count=1")
	cmd.Env = append(append(os.Environ(), "LANDLOCK_REVIEW_HELPER=1"), env...)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		if sc.Text() == "SANDBOXED" {
			then()
			fmt.Fprintln(stdin, "go")
		}
	}
	err := cmd.Wait()
	return out.String() + stderr.String(), err == nil
}
