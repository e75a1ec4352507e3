package configs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

const testdata = "../testdata/configs"

// fakeEnv is an environment holding vars.
func fakeEnv(vars map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := vars[name]
		return v, ok
	}
}

// anyEnv sets every variable to "placeholder".
func anyEnv(string) (string, bool) { return "placeholder", true }

func problemsOf(t *testing.T, err error) Problems {
	t.Helper()
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("error %v (%T) is not Problems", err, err)
	}
	return ps
}

func TestGoodFilesLoad(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(testdata, "*.good.yaml"))
	examples, _ := filepath.Glob("*.yaml")
	if len(files) == 0 || len(examples) == 0 {
		t.Fatal("no good files")
	}
	for _, file := range append(files, examples...) {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		c, err := Parse(data, file, anyEnv)
		if err != nil {
			t.Errorf("%s:\n%v", file, err)
			continue
		}
		if len(c.Tunnels) == 0 || !filepath.IsAbs(c.Path) {
			t.Errorf("%s: %d tunnels, Path %q", file, len(c.Tunnels), c.Path)
		}
		if ps := Validate(c); len(ps) != 0 {
			t.Errorf("%s: loads, but then does not validate:\n%v", file, ps)
		}
	}
}

// TestBadFiles checks every testdata/configs/*.bad.yaml: the problems it
// must report (file:line:col included) and how many.
func TestBadFiles(t *testing.T) {
	cases := map[string]struct {
		count int
		want  []string
	}{
		"unknown-key.bad.yaml": {3, []string{
			`unknown-key.bad.yaml:1:1: unknown key "statsu"; did you mean "status"?`,
			`unknown-key.bad.yaml:8:5: tunnel "web": unknown key "alow-cn"; did you mean "allow-cn"?`,
			`unknown-key.bad.yaml:9:5: tunnel "web": unknown key "frobnicate"`,
		}},
		"wrong-type.bad.yaml": {5, []string{
			`wrong-type.bad.yaml:1:9: syslog: want true or false, got "sometimes"`,
			`wrong-type.bad.yaml:5:13: tunnel "web": listen: want a string, got a list`,
			`wrong-type.bad.yaml:8:16: tunnel "web": allow-all: want true or false, got "yes"`,
			`wrong-type.bad.yaml:9:27: tunnel "web": max-concurrent-conns: want an integer, got "many"`,
			`wrong-type.bad.yaml:10:15: tunnel "web": allow-cn: want a list of strings, got a mapping`,
		}},
		"bad-duration.bad.yaml": {3, []string{
			`bad-duration.bad.yaml:1:19: shutdown-timeout: invalid duration "5 minutes"`,
			`bad-duration.bad.yaml:9:22: tunnel "web": connect-timeout: invalid duration "10"`,
			`bad-duration.bad.yaml:10:20: tunnel "web": close-timeout: invalid duration "-1s": must not be negative`,
		}},
		"bad-address.bad.yaml": {4, []string{
			`bad-address.bad.yaml:1:1: status: invalid address "ftp://127.0.0.1:6060"`,
			`bad-address.bad.yaml:5:5: tunnel "web": listen: invalid address "localhost": missing port`,
			`bad-address.bad.yaml:6:5: tunnel "web": target: invalid address "127.0.0.1:99999": port "99999" is not a number from 0 to 65535`,
			`bad-address.bad.yaml:12:5: tunnel "cli": target must be HOST:PORT for a client tunnel`,
		}},
		"missing-required.bad.yaml": {2, []string{
			`missing-required.bad.yaml:2:5: tunnel "web": mode is required`,
			`missing-required.bad.yaml:2:5: tunnel "web": target is required`,
		}},
		"duplicate-names.bad.yaml": {1, []string{
			`duplicate-names.bad.yaml:8:5: tunnel "web": name: duplicate tunnel name "web" (tunnel #1 has it too)`,
		}},
		"duplicate-key.bad.yaml": {1, []string{
			`duplicate-key.bad.yaml:5:5: tunnel "web": duplicate key "listen" (first at line 4)`,
		}},
		"same-listen.bad.yaml": {2, []string{
			`same-listen.bad.yaml:10:5: tunnel "two": listen address "127.0.0.1:8443" is already used by tunnel "one"`,
			`same-listen.bad.yaml:22:5: tunnel "four": listen address "127.0.0.1:9443" is already used by tunnel "three" ("0.0.0.0:9443")`,
		}},
		"status-collision.bad.yaml": {1, []string{
			`status-collision.bad.yaml:5:5: tunnel "cli": listen address "127.0.0.1:6060" is also the status address "http://127.0.0.1:6060"`,
		}},
		"mutually-exclusive.bad.yaml": {4, []string{
			// Inherited from defaults: the position is in defaults.
			`mutually-exclusive.bad.yaml:2:3: tunnel "creds": keystore is mutually exclusive with cert and key`,
			`mutually-exclusive.bad.yaml:8:5: tunnel "web": allow-all is mutually exclusive with allow-cn`,
			`mutually-exclusive.bad.yaml:14:5: tunnel "anon": disable-authentication is mutually exclusive with keystore`,
			`mutually-exclusive.bad.yaml:15:5: tunnel "anon": verify-spki-pin is mutually exclusive with verify-dns`,
		}},
		"unset-env.bad.yaml": {1, []string{
			`unset-env.bad.yaml:7:16: tunnel "db": storepass: environment variable "GHOSTUNNEL_TEST_SURELY_UNSET" is not set`,
		}},
		"multiple-errors.bad.yaml": {10, []string{
			`multiple-errors.bad.yaml:1:1: enable-pprof requires status`,
			`multiple-errors.bad.yaml:3:5: tunnel "Web": name: invalid name "Web"`,
			`multiple-errors.bad.yaml:6:5: tunnel "Web": target must be unix:PATH or localhost:PORT (unless unsafe-target is set)`,
			`multiple-errors.bad.yaml:7:5: tunnel "Web": cert and key must be set together`,
			`multiple-errors.bad.yaml:9:5: tunnel "Web": verify-dns is only for client tunnels`,
			`multiple-errors.bad.yaml:11:5: tunnel "cli": mode: invalid mode "clinet" (want server or client)`,
			`multiple-errors.bad.yaml:15:22: tunnel "cli": connect-timeout: invalid duration "soon"`,
			`multiple-errors.bad.yaml:18:5: tunnel "ok": listen must be unix:PATH, localhost:PORT, systemd:NAME or launchd:NAME (unless unsafe-listen is set)`,
			`multiple-errors.bad.yaml:21:5: tunnel "ok": allow-ip is only for server tunnels`,
			`multiple-errors.bad.yaml:22:5: tunnel "ok": max-tls-version: unknown TLS version "TLS1.1"`,
		}},
		"empty.bad.yaml": {1, []string{
			`empty.bad.yaml: tunnels: no tunnels defined`,
		}},
		"syntax-error.bad.yaml": {1, []string{
			`syntax-error.bad.yaml:1: invalid YAML: did not find expected '-' indicator`,
		}},
		"wrong-mode-keys.bad.yaml": {6, []string{
			`wrong-mode-keys.bad.yaml:5:5: tunnel "web": target must be unix:PATH or localhost:PORT (unless unsafe-target is set)`,
			`wrong-mode-keys.bad.yaml:8:5: tunnel "web": verify-dns is only for client tunnels`,
			`wrong-mode-keys.bad.yaml:9:5: tunnel "web": unsafe-listen is only for client tunnels`,
			`wrong-mode-keys.bad.yaml:12:5: tunnel "cli": listen must be unix:PATH`,
			`wrong-mode-keys.bad.yaml:15:5: tunnel "cli": allow-cn is only for server tunnels`,
			`wrong-mode-keys.bad.yaml:16:5: tunnel "cli": proxy-protocol is only for server tunnels`,
		}},
		"bad-values.bad.yaml": {7, []string{
			// List problems point at the entry.
			`bad-values.bad.yaml:9:9: tunnel "web": allow-uri: URI pattern "spiffe://example.org/front*": "*" must be a whole path segment`,
			`bad-values.bad.yaml:10:9: tunnel "web": allow-uri: URI pattern "spiffe://example.org/**/admin": "**" is only allowed as the last segment`,
			`bad-values.bad.yaml:11:26: tunnel "web": allow-ip: invalid IP address "10.0.0.256"`,
			`bad-values.bad.yaml:13:5: tunnel "web": proxy-protocol-mode: proxy-protocol and proxy-protocol-mode are mutually exclusive`,
			`bad-values.bad.yaml:14:5: tunnel "web": target-status must be an http:// or https:// URL`,
			`bad-values.bad.yaml:21:23: tunnel "cli": verify-spki-pin: invalid SPKI pin "sha256:AAAA": a sha256 digest is 32 bytes, not 3`,
			`bad-values.bad.yaml:21:36: tunnel "cli": verify-spki-pin: invalid SPKI pin "md5:AAAA": unknown hash "md5"`,
		}},
	}
	files, _ := filepath.Glob(filepath.Join(testdata, "*.bad.yaml"))
	if len(files) != len(cases) {
		t.Errorf("%d bad files, %d cases: every bad file needs a case", len(files), len(cases))
	}
	for _, file := range files {
		name := filepath.Base(file)
		t.Run(name, func(t *testing.T) {
			c, ok := cases[name]
			if !ok {
				t.Fatal("no case for this file")
			}
			cfg, err := Load(file)
			if err == nil {
				t.Fatalf("loads: %+v", cfg)
			}
			ps := problemsOf(t, err)
			got := ps.Error()
			for _, w := range c.want {
				if !strings.Contains(got, w) {
					t.Errorf("missing %q in:\n%s", w, got)
				}
			}
			if len(ps) != c.count {
				t.Errorf("%d problems, want %d:\n%s", len(ps), c.count, got)
			}
			if !slices.IsSortedFunc(ps, func(a, b Problem) int { return a.Line - b.Line }) {
				t.Errorf("problems not sorted by line:\n%s", got)
			}
			for _, p := range ps {
				if p.File != file {
					t.Errorf("problem %q: File %q, want %q", p.Msg, p.File, file)
				}
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want ErrNotExist", err)
	}
}

// specExample is the example of the file format in the design notes.
const specExample = `status: 127.0.0.1:6060
enable-pprof: true
shutdown-timeout: 5m
default-tunnel: api
defaults:
  cacert: pki/ca.pem
  connect-timeout: 10s
tunnels:
  - name: api
    mode: server
    listen: 0.0.0.0:8443
    target: 127.0.0.1:8080
    unsafe-target: false
    cert: pki/api.crt
    key: pki/api.key
    allow-uri: ["spiffe://example.org/frontend/*"]
  - name: db
    mode: client
    listen: 127.0.0.1:15432
    target: db.internal:5433
    keystore: pki/db-client.p12
    storepass: ${DB_STOREPASS}
    verify-dns: [db.internal]
    connect-timeout: 3s
`

func TestParseSpecExample(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "fleet.yaml")
	c, err := Parse([]byte(specExample), path, fakeEnv(map[string]string{"DB_STOREPASS": "s3cr$t"}))
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultConfig()
	want.Path = path
	want.Status, want.EnablePprof, want.DefaultTunnel = "127.0.0.1:6060", true, "api"
	api := DefaultTunnelSettings()
	api.Name, api.Mode, api.Listen, api.Target = "api", ModeServer, "0.0.0.0:8443", "127.0.0.1:8080"
	api.Cert, api.Key, api.CACert = filepath.Join(dir, "pki/api.crt"), filepath.Join(dir, "pki/api.key"), filepath.Join(dir, "pki/ca.pem")
	api.AllowURI = []string{"spiffe://example.org/frontend/*"}
	db := DefaultTunnelSettings()
	db.Name, db.Mode, db.Listen, db.Target = "db", ModeClient, "127.0.0.1:15432", "db.internal:5433"
	db.Keystore, db.Storepass, db.CACert = filepath.Join(dir, "pki/db-client.p12"), "s3cr$t", filepath.Join(dir, "pki/ca.pem")
	db.VerifyDNS = []string{"db.internal"}
	db.ConnectTimeout = Duration(3 * time.Second)
	want.Tunnels = []Tunnel{api, db}
	if !reflect.DeepEqual(*c, want) {
		t.Errorf("Parse =\n%+v\nwant\n%+v", *c, want)
	}
}

func TestParseWithoutPath(t *testing.T) {
	c, err := Parse([]byte(specExample), "", anyEnv)
	if err != nil {
		t.Fatal(err)
	}
	if c.Path != "" || c.Tunnels[0].Cert != "pki/api.crt" {
		t.Errorf("without a path: Path %q, cert %q; want no resolution", c.Path, c.Tunnels[0].Cert)
	}
	_, err = Parse([]byte("tunnels: []\n"), "", anyEnv)
	if p := problemsOf(t, err); p[0].File != "" || p.Error() != "tunnels: no tunnels defined (at least one is required)" {
		t.Errorf("without a path: %q", p.Error())
	}
}

func TestRelativePaths(t *testing.T) {
	doc := `status: unix:run/status.sock
defaults:
  cacert: ca.pem
tunnels:
  - name: a
    mode: server
    listen: unix:sock/a.sock
    target: unix:/abs/a.sock
    keystore: ../pki/a.pem
    allow-policy: policy/a.tar.gz
    allow-query: data.a.allow
  - name: b
    mode: client
    listen: unix:b.sock
    target: b.example:443
    cert: /etc/b.crt
    key: b.key
    verify-policy: /srv/policy
    verify-query: data.b.allow
  - name: c
    mode: server
    listen: 127.0.0.1:8443
    target: 127.0.0.1:8080
    auto-acme-cert: c.example.com
    auto-acme-email: ops@example.com
    auto-acme-agree-to-tos: true
    auto-acme-cache: acme
    allow-all: true
`
	c, err := Parse([]byte(doc), "/etc/ghostunnel/fleet.yaml", anyEnv)
	if err != nil {
		t.Fatal(err)
	}
	a, b, acme := c.Tunnels[0], c.Tunnels[1], c.Tunnels[2]
	for _, g := range []struct{ got, want string }{
		{c.Status, "unix:/etc/ghostunnel/run/status.sock"},
		{a.Listen, "unix:/etc/ghostunnel/sock/a.sock"},
		{a.Target, "unix:/abs/a.sock"},
		{a.Keystore, "/etc/pki/a.pem"},
		{a.CACert, "/etc/ghostunnel/ca.pem"},
		{b.Listen, "unix:/etc/ghostunnel/b.sock"},
		{b.Target, "b.example:443"},
		{b.Cert, "/etc/b.crt"},
		{b.Key, "/etc/ghostunnel/b.key"},
		{a.AllowPolicy, "/etc/ghostunnel/policy/a.tar.gz"},
		{a.AllowQuery, "data.a.allow"},
		{b.VerifyPolicy, "/srv/policy"},
		{acme.AutoACMECache, "/etc/ghostunnel/acme"},
	} {
		if g.got != g.want {
			t.Errorf("got %q, want %q", g.got, g.want)
		}
	}
}

// tunnelDoc is a file with one valid server tunnel and extra lines for it.
func tunnelDoc(extra string) string {
	return "tunnels:\n  - name: t\n    mode: server\n    listen: 127.0.0.1:1\n    target: 127.0.0.1:2\n    keystore: k.pem\n" + extra
}

func TestEnvExpansion(t *testing.T) {
	env := fakeEnv(map[string]string{"PASS": "pa$$word", "N": "42", "YES": "true", "EMPTY": "", "HOST": "127.0.0.1"})
	for _, c := range []struct {
		name, extra string
		check       func(t *testing.T, tun Tunnel)
		err         string
	}{
		{"string", "    storepass: ${PASS}\n    allow-all: true\n", func(t *testing.T, tun Tunnel) {
			if tun.Storepass.Reveal() != "pa$$word" {
				t.Errorf("storepass %q (an expanded value is not expanded again)", tun.Storepass.Reveal())
			}
		}, ""},
		{"escape", "    allow-cn: [\"$$HOME\", a$b, c$, \"${HOST}:$$\"]\n", func(t *testing.T, tun Tunnel) {
			if want := []string{"$HOME", "a$b", "c$", "127.0.0.1:$"}; !slices.Equal(tun.AllowCN, want) {
				t.Errorf("allow-cn %q, want %q", tun.AllowCN, want)
			}
		}, ""},
		{"int", "    allow-all: true\n    max-concurrent-conns: ${N}\n", func(t *testing.T, tun Tunnel) {
			if tun.MaxConcurrentConns != 42 {
				t.Errorf("max-concurrent-conns %d", tun.MaxConcurrentConns)
			}
		}, ""},
		{"bool", "    allow-all: ${YES}\n", func(t *testing.T, tun Tunnel) {
			if !tun.AllowAll {
				t.Error("allow-all not set")
			}
		}, ""},
		{"quoted stays a string", "    allow-all: true\n    max-concurrent-conns: \"${N}\"\n", nil, `max-concurrent-conns: want an integer, got "42"`},
		{"unset", "    allow-all: true\n    cacert: ${NOPE}/ca.pem\n", nil, `:8:13: tunnel "t": cacert: environment variable "NOPE" is not set`},
		{"unset in list", "    allow-cn: [a, \"${NOPE}\"]\n", nil, `:7:19: tunnel "t": allow-cn: environment variable "NOPE" is not set`},
		{"bad name", "    allow-all: true\n    cacert: ${1X}\n", nil, `invalid environment variable name "1X"`},
		{"unterminated", "    allow-all: true\n    cacert: ${PASS\n", nil, "missing } after ${"},
		{"empty name", "    allow-all: true\n    cacert: ${}\n", nil, `invalid environment variable name ""`},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tunnelDoc(c.extra)), "f.yaml", env)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err = %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c.check(t, cfg.Tunnels[0])
		})
	}
	// Keys are not expanded, and top-level values are.
	cfg, err := Parse([]byte("status: ${HOST}:6060\n"+tunnelDoc("    allow-all: true\n")), "f.yaml", env)
	if err != nil || cfg.Status != "127.0.0.1:6060" {
		t.Errorf("status %q, %v", cfg.Status, err)
	}
	_, err = Parse([]byte(tunnelDoc("    ${HOST}: true\n")), "f.yaml", env)
	if err == nil || !strings.Contains(err.Error(), `unknown key "${HOST}"`) {
		t.Errorf("a key was expanded: %v", err)
	}
}

func TestDefaults(t *testing.T) {
	doc := `defaults:
  keystore: fleet.pem
  connect-timeout: 3s
  allow-cn: [fleet]
  verify-dns: [fleet.internal]
  unsafe-target: true
  max-concurrent-conns: 7
tunnels:
  - name: s
    mode: server
    listen: 0.0.0.0:1
    target: 10.0.0.1:2
    connect-timeout: 4s
  - name: c
    mode: client
    listen: 127.0.0.1:3
    target: c.internal:4
    verify-dns: c.internal
  - name: override
    mode: server
    listen: 0.0.0.0:5
    target: 127.0.0.1:6
    allow-cn: ~
    allow-all: true
    unsafe-target: false
`
	c, err := Parse([]byte(doc), "", anyEnv)
	if err != nil {
		t.Fatal(err)
	}
	s, cl, o := c.Tunnels[0], c.Tunnels[1], c.Tunnels[2]
	if s.Keystore != "fleet.pem" || s.ConnectTimeout.D() != 4*time.Second || !slices.Equal(s.AllowCN, []string{"fleet"}) ||
		!s.UnsafeTarget || s.VerifyDNS != nil || s.MaxConcurrentConns != 7 {
		t.Errorf("server: %+v", s)
	}
	if cl.Keystore != "fleet.pem" || cl.ConnectTimeout.D() != 3*time.Second || cl.AllowCN != nil || cl.UnsafeTarget ||
		!slices.Equal(cl.VerifyDNS, []string{"c.internal"}) || cl.CloseTimeout.D() != DefaultCloseTimeout {
		t.Errorf("client: %+v", cl)
	}
	if o.AllowCN != nil || !o.AllowAll || o.UnsafeTarget {
		t.Errorf("override: %+v", o)
	}
	// Tunnels do not share the defaults' lists.
	two := "defaults: {allow-cn: [fleet], keystore: k.pem, mode: server, target: 127.0.0.1:1}\n" +
		"tunnels: [{name: a, listen: 127.0.0.1:2}, {name: b, listen: 127.0.0.1:3}]\n"
	c, err = Parse([]byte(two), "", anyEnv)
	if err != nil {
		t.Fatal(err)
	}
	c.Tunnels[0].AllowCN[0] = "changed"
	if c.Tunnels[1].AllowCN[0] != "fleet" {
		t.Error("tunnels share the lists of defaults")
	}
}

func TestDefaultsProblems(t *testing.T) {
	doc := `defaults:
  alow-cn: [x]
  connect-timeout: forever
tunnels:
  - name: a
    mode: server
    listen: 127.0.0.1:1
    target: 127.0.0.1:2
    keystore: k.pem
    allow-all: true
  - name: b
    mode: server
    listen: 127.0.0.1:3
    target: 127.0.0.1:4
    keystore: k.pem
    allow-all: true
`
	_, err := Parse([]byte(doc), "f.yaml", anyEnv)
	ps := problemsOf(t, err)
	// Reported once, not once per tunnel; and no "connect-timeout must not
	// be zero" follows.
	if len(ps) != 2 || !strings.Contains(ps.Error(), `f.yaml:2:3: unknown key "alow-cn"; did you mean "allow-cn"?`) ||
		!strings.Contains(ps.Error(), `f.yaml:3:20: connect-timeout: invalid duration "forever"`) {
		t.Errorf("problems:\n%v", ps)
	}
}

func TestMergeKeys(t *testing.T) {
	doc := `x-base: &base
  mode: server
  listen: 127.0.0.1:1
  target: 127.0.0.1:2
  keystore: base.pem
x-more: &more
  keystore: more.pem
  allow-dns: [more]
tunnels:
  - <<: [*base, *more]
    name: a
    listen: 127.0.0.1:9
`
	c, err := Parse([]byte(doc), "", anyEnv)
	if err != nil {
		t.Fatal(err)
	}
	a := c.Tunnels[0]
	if a.Listen != "127.0.0.1:9" || a.Keystore != "base.pem" || !slices.Equal(a.AllowDNS, []string{"more"}) || a.Mode != ModeServer {
		t.Errorf("merged tunnel: %+v", a)
	}
	_, err = Parse([]byte("tunnels:\n  - <<: 3\n"), "f.yaml", anyEnv)
	if err == nil || !strings.Contains(err.Error(), `f.yaml:2:9: tunnel "#1": merge key (<<) wants a mapping, got a scalar "3"`) {
		t.Errorf("bad merge: %v", err)
	}
}

func TestStructureProblems(t *testing.T) {
	for _, c := range []struct{ doc, want string }{
		{"[1, 2]\n", "f.yaml:1:1: want a mapping of settings at the top level, got a list"},
		{"tunnels: {a: 1}\n", "f.yaml:1:10: tunnels: want a list of tunnels, got a mapping"},
		{"tunnels: [3]\n", `f.yaml:1:11: tunnel "#1": want a mapping of tunnel settings, got a scalar "3"`},
		{"defaults: [1]\n" + tunnelDoc("    allow-all: true\n"), "f.yaml:1:11: defaults: want a mapping of tunnel settings, got a list"},
		{"listen: 127.0.0.1:1\n" + tunnelDoc("    allow-all: true\n"), `f.yaml:1:1: unknown key "listen" at the top level: it is a tunnel setting`},
		{tunnelDoc("    allow-all: true\n    status: 127.0.0.1:9\n"), `f.yaml:8:5: tunnel "t": unknown key "status" in a tunnel: it belongs at the top level`},
		{tunnelDoc("    allow-all: true\n") + "---\n" + tunnelDoc(""), "only one YAML document is allowed"},
		{tunnelDoc("    allow-all: true\n    [a]: 1\n"), `f.yaml:8:5: tunnel "t": want a key name, got a list`},
		{"tunnels:\n  - name: a\n    mode: server\n  - name: [b]\n", `f.yaml:4:11: tunnel "#2": name: want a string, got a list`},
		{tunnelDoc("    allow-all: true\n    max-concurrent-conns: 99999999999999999999\n"), `f.yaml:8:27: tunnel "t": max-concurrent-conns: want an integer`},
		{tunnelDoc("    allow-all: !!str true\n"), `f.yaml:7:16: tunnel "t": allow-all: want true or false, got "true"`},
		{tunnelDoc("    allow-ip: 10.0.0.300\n"), `f.yaml:7:15: tunnel "t": allow-ip: invalid IP address "10.0.0.300"`},
		{deepMerge(20), "merge keys (<<) nested too deep"},
		{"", "f.yaml: tunnels: no tunnels defined"},
		{"---\n", "f.yaml: tunnels: no tunnels defined"},
		{"tunnels:\n", "f.yaml:1:1: tunnels: no tunnels defined"},
		{"\tfoo", "f.yaml: invalid YAML: found character that cannot start any token"},
		{"a: b: c\n", "f.yaml: invalid YAML: mapping values are not allowed in this context"},
		{"a: 1\nb: c: d\n", "f.yaml:2: invalid YAML: mapping values are not allowed in this context"},
	} {
		_, err := Parse([]byte(c.doc), "f.yaml", anyEnv)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q) = %v, want %q", c.doc, err, c.want)
		}
	}
}

// deepMerge is a file whose tunnel merges a chain of n anchors.
func deepMerge(n int) string {
	var b strings.Builder
	b.WriteString("x-0: &a0 {mode: server}\n")
	for i := 1; i < n; i++ {
		fmt.Fprintf(&b, "x-%d: &a%d {<<: *a%d}\n", i, i, i-1)
	}
	fmt.Fprintf(&b, "tunnels: [{<<: *a%d, name: a}]\n", n-1)
	return b.String()
}

func TestScalarLists(t *testing.T) {
	c, err := Parse([]byte("quiet: conns\n"+tunnelDoc("    allow-cn: web\n    allow-ip: 10.0.0.1\n")), "", anyEnv)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.Quiet, []string{"conns"}) || !slices.Equal(c.Tunnels[0].AllowCN, []string{"web"}) || !slices.Equal(c.Tunnels[0].AllowIP, []string{"10.0.0.1"}) {
		t.Errorf("scalar lists: %q %q %q", c.Quiet, c.Tunnels[0].AllowCN, c.Tunnels[0].AllowIP)
	}
}

func TestMarshal(t *testing.T) {
	tun := DefaultTunnelSettings()
	tun.Name, tun.Mode, tun.Listen, tun.Target = "db", ModeClient, "127.0.0.1:15432", "db.internal:5433"
	tun.Keystore, tun.Storepass = "pki/$db.p12", "hunter2"
	tun.VerifyDNS = []string{"db.internal", "8443"}
	tun.MaxConcurrentConns = 5
	tun.ConnectTimeout = Duration(3 * time.Second)
	out, err := Marshal(tun)
	if err != nil {
		t.Fatal(err)
	}
	text := string(out)
	for _, want := range []string{"name: db\n", "storepass: ${KEYSTORE_PASS}\n", "keystore: pki/$$db.p12\n", "connect-timeout: 3s\n", "max-concurrent-conns: 5\n"} {
		if !strings.Contains(text, want) {
			t.Errorf("Marshal output lacks %q:\n%s", want, text)
		}
	}
	for _, unwanted := range []string{"hunter2", "close-timeout", "allow-all", "redacted"} {
		if strings.Contains(text, unwanted) {
			t.Errorf("Marshal output has %q:\n%s", unwanted, text)
		}
	}

	// It reads back as the same tunnel.
	c := DefaultConfig()
	c.Status = "127.0.0.1:6060"
	c.Tunnels = []Tunnel{tun}
	file, err := MarshalConfig(&c)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(file), "metrics-prefix") || strings.Contains(string(file), "shutdown-timeout") {
		t.Errorf("MarshalConfig prints defaults:\n%s", file)
	}
	back, err := Parse(file, "", fakeEnv(map[string]string{"KEYSTORE_PASS": "hunter2"}))
	if err != nil {
		t.Fatalf("%v in:\n%s", err, file)
	}
	if !reflect.DeepEqual(*back, c) {
		t.Errorf("round trip:\n%+v\nwant\n%+v\nfrom:\n%s", *back, c, file)
	}
}

func TestMarshalEmptyTunnel(t *testing.T) {
	out, err := Marshal(Tunnel{})
	if err != nil {
		t.Fatal(err)
	}
	// Required keys are always printed; non-default zero values too.
	for _, want := range []string{"name: \"\"", "mode: \"\"", "listen: \"\"", "target: \"\"", "connect-timeout: 0s"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("lacks %q:\n%s", want, out)
		}
	}
}

func TestKeys(t *testing.T) {
	tk, ck := TunnelKeys(), ConfigKeys()
	if len(tk) != reflect.TypeFor[Tunnel]().NumField() {
		t.Errorf("TunnelKeys() = %q: not every field", tk)
	}
	if slices.Contains(ck, "tunnels") || !slices.Contains(ck, "status") {
		t.Errorf("ConfigKeys() = %q", ck)
	}
	for _, k := range append(slices.Clone(serverOnlyKeys), clientOnlyKeys...) {
		if !slices.Contains(tk, k) {
			t.Errorf("mode-only key %q is not a tunnel key", k)
		}
	}
	if KeyMode("allow-cn") != ModeServer || KeyMode("verify-cn") != ModeClient || KeyMode("cacert") != "" {
		t.Error("KeyMode")
	}
	if s, ok := closestKey("alow-cn", tk); !ok || s != "allow-cn" {
		t.Errorf("closestKey = %q", s)
	}
	if _, ok := closestKey("frobnicate", tk); ok {
		t.Error("closestKey suggests for frobnicate")
	}
}
