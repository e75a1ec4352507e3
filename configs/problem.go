package configs

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Problem is one thing wrong (or, with Warning, worth a word) in a
// configuration. Problems found in a file carry its name and the position of
// the offending key or value; problems found in a command line carry neither.
type Problem struct {
	File         string // config file as given; "" for the command line
	Line, Column int    // 1-based position in File; 0 when unknown
	Tunnel       string // tunnel name (or "#N" when it has none); "" for process-wide settings
	Key          string // offending key, as spelled in the file (the flag name without dashes)
	Msg          string // the message, naming keys as they are spelled in the file
	Warning      bool   // true for advice that does not stop the config from loading

	// tmpl is Msg with key names between keyOpen and keyClose, so that
	// FlagError can render them as flags.
	tmpl string
	// tunnel is the 1-based index of the tunnel in Config.Tunnels (0: none),
	// elem the 1-based index of the offending list entry (0: none). The file
	// loader uses them to find positions.
	tunnel, elem int
	// about lists, comma-separated, the keys besides Key whose values (or
	// absence) the problem is about.
	about string
}

// Error formats p as FILE:LINE:COL: tunnel "NAME": KEY: MSG, leaving out
// the parts that are unknown. Without a file there is no position. The KEY:
// part is left out too when the message already starts with the key.
func (p Problem) Error() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File)
		if p.Line > 0 {
			b.WriteString(":" + strconv.Itoa(p.Line))
			if p.Column > 0 {
				b.WriteString(":" + strconv.Itoa(p.Column))
			}
		}
		b.WriteString(": ")
	}
	if p.Warning {
		b.WriteString("warning: ")
	}
	if p.Tunnel != "" {
		fmt.Fprintf(&b, "tunnel %q: ", p.Tunnel)
	}
	if p.Key != "" && !strings.HasPrefix(p.Msg, p.Key+" ") {
		b.WriteString(p.Key + ": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// FlagError renders p for the command line: every key named in the message
// is written as a flag (--allow-all), there is no file position and no
// tunnel name.
func (p Problem) FlagError() string {
	tmpl := p.tmpl
	if tmpl == "" {
		tmpl = p.Msg
	}
	msg := renderKeys(tmpl, "--")
	var b strings.Builder
	if p.Warning {
		b.WriteString("warning: ")
	}
	if p.Key != "" && !strings.HasPrefix(msg, "--"+p.Key+" ") {
		b.WriteString("--" + p.Key + ": ")
	}
	b.WriteString(msg)
	return b.String()
}

// Problems is a list of problems. It is an error: all of them, one a line.
type Problems []Problem

// Error joins the problems, one a line.
func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.Error()
	}
	return strings.Join(lines, "\n")
}

// Err returns ps as an error when it holds at least one problem that is not
// a warning, and nil otherwise.
func (ps Problems) Err() error {
	if !ps.HasErrors() {
		return nil
	}
	return ps
}

// HasErrors reports whether any problem in ps is not a warning.
func (ps Problems) HasErrors() bool {
	return slices.ContainsFunc(ps, func(p Problem) bool { return !p.Warning })
}

// Errors returns the problems that are not warnings.
func (ps Problems) Errors() Problems {
	return slices.DeleteFunc(slices.Clone(ps), func(p Problem) bool { return p.Warning })
}

// Warnings returns the problems that are warnings.
func (ps Problems) Warnings() Problems {
	return slices.DeleteFunc(slices.Clone(ps), func(p Problem) bool { return !p.Warning })
}

// FlagErrors renders every problem with FlagError, one a line.
func (ps Problems) FlagErrors() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.FlagError()
	}
	return strings.Join(lines, "\n")
}

// Sort orders ps by file position (line, then column), keeping the order of
// problems at the same position.
func (ps Problems) Sort() {
	slices.SortStableFunc(ps, func(a, b Problem) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
	})
}

// Markers around key names in message templates.
const (
	keyOpen  = '\x01'
	keyClose = '\x02'
)

var (
	markKeys  = strings.NewReplacer("{", string(keyOpen), "}", string(keyClose))
	stripKeys = strings.NewReplacer(string(keyOpen), "", string(keyClose), "")
)

// newProblem builds a problem about key. In format, key names are written
// between braces ("{allow-all} requires {status}"); Msg spells them bare and
// FlagError as flags. String and error arguments are inserted as they are
// (they cannot mark keys).
func newProblem(key, format string, args ...any) Problem {
	for i, a := range args {
		switch a := a.(type) {
		case string:
			args[i] = stripKeys.Replace(a)
		case error:
			args[i] = stripKeys.Replace(a.Error())
		case fmt.Stringer:
			args[i] = stripKeys.Replace(a.String())
		}
	}
	tmpl := fmt.Sprintf(markKeys.Replace(format), args...)
	return Problem{Key: key, Msg: renderKeys(tmpl, ""), tmpl: tmpl}
}

// renderKeys writes the marked key names of tmpl with prefix before them.
func renderKeys(tmpl, prefix string) string {
	var b strings.Builder
	for i := 0; i < len(tmpl); i++ {
		switch c := tmpl[i]; c {
		case keyOpen:
			b.WriteString(prefix)
		case keyClose:
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
