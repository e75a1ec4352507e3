// Command ghostunnel runs TLS tunnels: one from upstream Ghostunnel's
// command line (`ghostunnel server ...`, `ghostunnel client ...`), or a whole
// fleet from a YAML file (`ghostunnel -config tunnels.yaml`), with one status
// server for all of them. This file only wires flags to the supervisor.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/syslog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/go-kit/log"
	kitsyslog "github.com/go-kit/log/syslog"

	"github.com/ghostunnel-fleet/ghostunnel/configs"
	"github.com/ghostunnel-fleet/ghostunnel/supervisor"
	"github.com/ghostunnel-fleet/ghostunnel/tunnel"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// ignoredFlags are deprecated upstream flags that change nothing here: our
// cipher suites are fixed to modern AEADs.
var ignoredFlags = map[string]bool{"cipher-suites": true, "allow-unsafe-cipher-suites": true}

// run is main without the exit, so tests can call it.
func run(args []string, stdout, stderr io.Writer) int {
	inv, err := parseArgs(args, os.LookupEnv)
	if err != nil {
		fmt.Fprintf(stderr, "ghostunnel: error: %s, try --help\n", err)
		return 1
	}
	switch inv.Command {
	// Help and version go to stderr, as upstream's kingpin writes them.
	case cmdHelp:
		fmt.Fprint(stderr, inv.Help)
		return 0
	case cmdVersion:
		fmt.Fprintf(stderr, "rev %s built with %s (pkcs11: %v, keychain: false)\n", version, runtime.Version(), pkcs11Built)
		return 0
	case cmdValidate:
		return validateFile(inv.ConfigPath, stdout, stderr)
	case cmdFromFlags:
		if code := checkFlags(inv, stderr); code != 0 {
			return code
		}
		fmt.Fprint(stdout, fromFlagsYAML(inv))
		return 0
	case cmdRun:
		cfg, err := configs.Load(inv.ConfigPath)
		if err != nil {
			fmt.Fprintf(stderr, "ghostunnel: invalid config:\n%s\n", err)
			return 1
		}
		return serve(cfg, stdout, stderr)
	case cmdServer, cmdClient:
		if code := checkFlags(inv, stderr); code != 0 {
			return code
		}
		return serve(&inv.Config, stdout, stderr)
	}
	fmt.Fprintf(stderr, "ghostunnel: error: unknown command %q\n", inv.Command)
	return 1
}

// checkCipherSuites validates --cipher-suites as upstream does, although
// the value changes nothing here (our suites are fixed to modern AEADs): a
// command line upstream refuses is refused here too.
func checkCipherSuites(inv *invocation) error {
	list, ok := inv.Unsupported["cipher-suites"]
	if !ok {
		return nil
	}
	_, unsafe := inv.Unsupported["allow-unsafe-cipher-suites"]
	for _, suite := range strings.Split(list, ",") {
		switch strings.TrimSpace(suite) {
		case "AES", "CHACHA":
		case "UNSAFE-AZURE":
			if !unsafe {
				return fmt.Errorf("--cipher-suites: %s needs --allow-unsafe-cipher-suites", suite)
			}
		default:
			return fmt.Errorf("invalid cipher suite option: %s", suite)
		}
	}
	return nil
}

// checkFlags refuses what this build does not do and validates the one
// tunnel a command line describes, naming the flags at fault.
func checkFlags(inv *invocation, stderr io.Writer) int {
	var names []string
	for name := range inv.Unsupported {
		if ignoredFlags[name] {
			continue
		}
		names = append(names, "--"+name)
	}
	if len(names) > 0 {
		sort.Strings(names)
		fmt.Fprintf(stderr, "ghostunnel: error: %s: not supported by this build yet (see the README's compatibility table)\n", strings.Join(names, ", "))
		return 1
	}
	if err := checkCipherSuites(inv); err != nil {
		fmt.Fprintf(stderr, "ghostunnel: error: %s\n", err)
		return 1
	}
	// Upstream's --metrics-graphite is a kingpin TCP address, resolved
	// when the command line is parsed: a name that does not resolve
	// stops the start.
	if g := inv.Config.MetricsGraphite; g != "" {
		if _, err := net.ResolveTCPAddr("tcp", g); err != nil {
			fmt.Fprintf(stderr, "ghostunnel: error: --metrics-graphite: '%s' is not a valid TCP address: %v\n", g, err)
			return 1
		}
	}
	if ps := configs.Validate(&inv.Config); ps.HasErrors() {
		fmt.Fprintf(stderr, "ghostunnel: error: %s\n", ps.Errors().FlagErrors())
		return 1
	}
	return 0
}

// newLogger is the root logger: logfmt on stdout, or syslog (facility
// daemon, tagged with the program name), or nothing at all for --quiet=all.
func newLogger(cfg *configs.Config, stdout io.Writer) (log.Logger, error) {
	if cfg.IsQuiet("all") {
		return log.NewNopLogger(), nil
	}
	var l log.Logger
	if cfg.Syslog {
		w, err := syslog.New(syslog.LOG_INFO|syslog.LOG_DAEMON, filepath.Base(os.Args[0]))
		if err != nil {
			return nil, fmt.Errorf("unable to set up syslog: %w", err)
		}
		l = kitsyslog.NewSyslogLogger(w, log.NewLogfmtLogger)
	} else {
		l = log.NewLogfmtLogger(log.NewSyncWriter(stdout))
	}
	return log.With(l, "ts", log.DefaultTimestampUTC, "pid", os.Getpid()), nil
}

// serve runs cfg until a signal or /_shutdown drains it.
func serve(cfg *configs.Config, stdout, stderr io.Writer) int {
	logger, err := newLogger(cfg, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "ghostunnel: error: %s\n", err)
		return 1
	}
	what := "fleet mode"
	if cfg.Path == "" && len(cfg.Tunnels) == 1 {
		what = cfg.Tunnels[0].Mode + " mode"
	}
	logger.Log("msg", "starting ghostunnel in "+what, "version", version, "tunnels", len(cfg.Tunnels), "config", cfg.Path)
	// Warnings (a setting that has no effect) do not stop a start; they are
	// logged, as flags on the command line or as keys from a file.
	for _, w := range configs.Validate(cfg).Warnings() {
		msg := w.Error()
		if cfg.Path == "" {
			msg = w.FlagError()
		}
		logger.Log("level", "warn", "msg", msg)
	}
	opts := supervisor.Options{Logger: logger, Revision: version, Signals: true}
	sup, err := supervisor.New(cfg, opts)
	if err != nil {
		logger.Log("level", "error", "msg", "startup failed", "err", err)
		// On stderr even with --quiet=all, as upstream's main prints the
		// error run returns whatever --quiet says: a start that fails
		// must not fail silently.
		fmt.Fprintf(stderr, "ghostunnel: error: %s\n", err)
		return 1
	}
	// Every listener is bound: from here on the process only reads what
	// its config names (best effort, never fatal).
	if err := sup.Sandbox(); err != nil {
		logger.Log("level", "warn", "msg", "landlock rules not applied, running without a sandbox", "err", err)
	}
	err = sup.Run(context.Background(), opts)
	switch {
	case errors.Is(err, supervisor.ErrShutdownTimeout):
		logger.Log("level", "error", "msg", "graceful shutdown timeout: forcing exit")
		return 1
	case err != nil:
		logger.Log("level", "error", "msg", "exiting on error", "err", err)
		return 1
	}
	logger.Log("msg", "shutdown complete: all connections drained")
	return 0
}

// validateFile is `ghostunnel validate -config FILE`: parse, validate and
// load every credential without opening a listener.
func validateFile(path string, stdout, stderr io.Writer) int {
	cfg, err := configs.Load(path)
	if err != nil {
		fmt.Fprintf(stderr, "%s\n", err)
		return 1
	}
	failed := false
	var lines []string
	for i := range cfg.Tunnels {
		t := &cfg.Tunnels[i]
		leaf, err := tunnel.CheckCredentials(t)
		if err == nil {
			err = tunnel.CheckPolicies(t)
		}
		if err != nil {
			fmt.Fprintf(stderr, "%s: tunnel %q: %s\n", path, t.Name, err)
			failed = true
			continue
		}
		summary := fmt.Sprintf("  %-20s %-6s %s -> %s", t.Name, t.Mode, t.Listen, t.Target)
		if leaf != nil {
			left := time.Until(leaf.NotAfter)
			switch {
			case left <= 0:
				fmt.Fprintf(stderr, "%s: tunnel %q: certificate %q expired at %s\n", path, t.Name, leaf.Subject.CommonName, leaf.NotAfter.Format(time.RFC3339))
				failed = true
				continue
			case left < 7*24*time.Hour:
				fmt.Fprintf(stderr, "%s: tunnel %q: warning: certificate %q expires in %s (%s)\n", path, t.Name, leaf.Subject.CommonName, left.Round(time.Minute), leaf.NotAfter.Format(time.RFC3339))
			}
			summary += fmt.Sprintf(" (certificate %q until %s)", leaf.Subject.CommonName, leaf.NotAfter.Format("2006-01-02"))
		}
		lines = append(lines, summary)
	}
	if failed {
		return 1
	}
	fmt.Fprintln(stdout, "OK")
	for _, l := range lines {
		fmt.Fprintln(stdout, l)
	}
	if cfg.Status != "" {
		compareWithRunning(cfg, stdout)
	}
	return 0
}

// compareWithRunning tells what a reload of cfg would change in the
// process serving status on cfg.Status, if one answers.
func compareWithRunning(cfg *configs.Config, stdout io.Writer) {
	have, err := supervisor.FetchFingerprint(cfg.Status, 2*time.Second)
	if err != nil {
		fmt.Fprintf(stdout, "no running ghostunnel answered on %s; nothing to compare with\n", cfg.Status)
		return
	}
	changes, restart := supervisor.CompareFingerprints(have, supervisor.FingerprintOf(cfg))
	fmt.Fprintf(stdout, "a reload of the process on %s (generation %d) would:\n", cfg.Status, have.Generation)
	for _, c := range changes {
		line := fmt.Sprintf("  %-9s %s", c.Kind, c.Name)
		if len(c.Keys) > 0 {
			line += " (" + strings.Join(c.Keys, ", ") + ")"
		}
		fmt.Fprintln(stdout, line)
	}
	if len(restart) > 0 {
		fmt.Fprintf(stdout, "  and needs a restart for: %s\n", strings.Join(restart, ", "))
	}
}
