package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
)

// usageCommands is the command summary shown at the top of the help.
var usageCommands = [][2]string{
	{"server [<flags>]", "One tunnel, server mode (TLS listener -> plain TCP/UNIX target)."},
	{"client [<flags>]", "One tunnel, client mode (plain TCP/UNIX listener -> TLS target)."},
	{"-config FILE", "Run every tunnel of a fleet file (takes no other flags)."},
	{"validate -config FILE", "Check a fleet file and exit (same as -config FILE --check)."},
	{"config from-flags server|client [<flags>]", "Print the fleet-file entry a server/client command line corresponds to."},
	{"version", "Print the version and exit (also --version)."},
	{"help [server|client]", "Show this help (also --help, -h)."},
}

// usageSections groups the flag table for the help text.
var usageSections = []struct {
	scope flagScope
	title string
}{
	{scopeProcess, "Global flags (before or after server/client):"},
	{scopeTunnel, "Tunnel flags (before or after server/client; apply to the tunnel):"},
	{scopeServer, `Server flags (after "server"):`},
	{scopeClient, `Client flags (after "client"):`},
}

// usage returns the help text. mode "" shows every flag; "server" or
// "client" leaves out the other mode's flags.
func usage(mode string) string {
	var b strings.Builder
	b.WriteString("usage: ghostunnel <command> [<flags>]\n\n")
	b.WriteString("A TLS tunnel with mutual authentication: one tunnel from flags, like upstream\n")
	b.WriteString("Ghostunnel, or many tunnels from a YAML fleet file.\n\n")

	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "Commands:")
	for _, c := range usageCommands {
		fmt.Fprintf(tw, "  %s\t%s\n", c[0], c[1])
	}
	for _, sec := range usageSections {
		if mode != "" && !sec.scope.allowedIn(mode) {
			continue
		}
		fmt.Fprintln(tw)
		fmt.Fprintln(tw, sec.title)
		for i := range flagTable {
			s := &flagTable[i]
			if s.scope != sec.scope {
				continue
			}
			fmt.Fprintf(tw, "  %s\t%s\n", flagSynopsis(s), flagHelp(s))
		}
	}
	_ = tw.Flush()
	b.WriteString("\nFlags take --name=value or --name value; booleans also --no-name.\n")
	b.WriteString("Environment variables apply only when their flag is not given.\n")
	return b.String()
}

// flagSynopsis is "--name=PLACEHOLDER" (or "--name" for booleans).
func flagSynopsis(s *flagSpec) string {
	if s.kind == kindBool {
		return "--" + s.name
	}
	ph := s.placeholder
	if ph == "" {
		ph = "VALUE"
	}
	return "--" + s.name + "=" + ph
}

// flagHelp is the one-line description with default, env and notes.
func flagHelp(s *flagSpec) string {
	h := s.help
	var notes []string
	if s.required {
		notes = append(notes, "required")
	}
	if s.def != "" {
		notes = append(notes, "default "+s.def)
	}
	if s.env != "" {
		notes = append(notes, "$"+s.env)
	}
	for _, a := range s.aliases {
		notes = append(notes, "alias --"+a)
	}
	if s.deprecated {
		notes = append(notes, "deprecated")
	}
	if s.unsupported {
		notes = append(notes, "not supported yet")
	}
	if len(notes) > 0 {
		h += " [" + strings.Join(notes, "; ") + "]"
	}
	return h
}
