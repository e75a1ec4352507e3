package statusd

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
)

// secretFlags are the command-line flags (and aliases) whose value is a
// secret: the ones marked secret in cmd/ghostunnel's flag table. The pprof
// command-line page shows their values as <redacted>: anyone who can reach
// the status port must not learn a keystore password, a token PIN or proxy
// credentials from it.
var secretFlags = map[string]bool{"storepass": true, "pkcs11-pin": true, "proxy": true, "connect-proxy": true}

// redactArgs returns args with the value of every secret flag replaced,
// in both the "--flag value" and the "--flag=value" forms (one or two
// dashes).
func redactArgs(args []string) []string {
	out := make([]string, len(args))
	redactNext := false
	for i, a := range args {
		out[i] = redactURLPassword(a)
		if redactNext {
			out[i] = "<redacted>"
			redactNext = false
			continue
		}
		name, ok := strings.CutPrefix(a, "-")
		if !ok {
			continue
		}
		name = strings.TrimPrefix(name, "-")
		name, _, hasValue := strings.Cut(name, "=")
		if !secretFlags[name] {
			continue
		}
		if hasValue {
			out[i] = a[:strings.Index(a, "=")+1] + "<redacted>"
		} else {
			redactNext = true
		}
	}
	return out
}

// redactURLPassword hides the password of a URL in arg (a whole argument,
// or the value of --flag=URL): --metrics-url and --target-status take URLs
// that may carry one.
func redactURLPassword(arg string) string {
	prefix, value := "", arg
	if strings.HasPrefix(arg, "-") {
		if name, v, ok := strings.Cut(arg, "="); ok {
			prefix, value = name+"=", v
		}
	}
	if !strings.Contains(value, "@") || !strings.Contains(value, "://") {
		return arg
	}
	u, err := url.Parse(value)
	if err != nil || u.User == nil {
		return arg
	}
	if _, ok := u.User.Password(); !ok {
		return arg
	}
	return prefix + u.Redacted()
}

// serveCmdline is pprof.Cmdline with secret flag values redacted: the
// arguments separated by NUL bytes.
func serveCmdline(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprint(w, strings.Join(redactArgs(os.Args), "\x00"))
}
