// Package testhsm sets up a SoftHSM2 token of its own for one test: a fresh
// token directory and SOFTHSM2_CONF pointing at it (inherited by processes
// the test starts), skipping the test when SoftHSM2 is not installed.
package testhsm

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ghostunnel-fleet/ghostunnel/internal/testpki"
)

// Settings of the token New initialises.
const (
	Label = "test"
	PIN   = "5678"
	SOPIN = "1234"
)

// Modules are where distributions install the SoftHSM2 module.
var Modules = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/local/lib/softhsm/libsofthsm2.so",
	"/opt/homebrew/lib/softhsm/libsofthsm2.so",
}

// Token is an initialised SoftHSM2 token.
type Token struct {
	Module string // the PKCS#11 module's path
	Label  string
	PIN    string
	Dir    string // holds the configuration and the token directory
	Conf   string // the SOFTHSM2_CONF file
}

// Module returns the SoftHSM2 module's path, or skips t when SoftHSM2 (the
// module or softhsm2-util) is absent.
func Module(t testing.TB) string {
	t.Helper()
	for _, m := range Modules {
		if _, err := os.Stat(m); err == nil {
			if _, err := exec.LookPath("softhsm2-util"); err == nil {
				return m
			}
		}
	}
	t.Skip("SoftHSM2 not installed (apt-get install softhsm2); .ci/run installs it")
	return ""
}

// New initialises a token in a temp dir and sets SOFTHSM2_CONF for the rest
// of the test (so t must not be parallel). A process that has loaded SoftHSM
// already keeps the configuration it read then.
func New(t testing.TB) *Token {
	t.Helper()
	module := Module(t)
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	if err := os.Mkdir(tokens, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	text := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n", tokens)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", conf)
	h := &Token{Module: module, Label: Label, PIN: PIN, Dir: dir, Conf: conf}
	h.Util(t, "--init-token", "--free", "--label", Label, "--so-pin", SOPIN, "--pin", PIN)
	return h
}

// Env is SOFTHSM2_CONF=... for a child process.
func (h *Token) Env() string { return "SOFTHSM2_CONF=" + h.Conf }

// Util runs softhsm2-util with args, failing t if it fails.
func (h *Token) Util(t testing.TB, args ...string) {
	t.Helper()
	cmd := exec.Command("softhsm2-util", args...)
	cmd.Env = append(os.Environ(), h.Env())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("softhsm2-util %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// ImportKey puts the private key of l (PKCS#8 PEM) into the token, with its
// public half, under label and id (hex), and removes the key file so that
// only the token has it.
func (h *Token) ImportKey(t testing.TB, l *testpki.Leaf, label, id string) {
	t.Helper()
	h.Util(t, "--import", l.KeyFile, "--token", h.Label, "--label", label, "--id", id, "--pin", h.PIN)
	if err := os.Remove(l.KeyFile); err != nil {
		t.Fatal(err)
	}
}

// Issue has ca issue a leaf named name, imports its key into the token under
// label and id, and returns the leaf: its CertFile is the certificate for
// the token's key, its KeyFile is gone.
func (h *Token) Issue(t testing.TB, ca *testpki.CA, name string, o testpki.Options, label, id string) *testpki.Leaf {
	t.Helper()
	l := ca.Issue(name, o)
	h.ImportKey(t, l, label, id)
	return l
}
