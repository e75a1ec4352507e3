package configs

import (
	"reflect"
	"slices"
	"strings"
)

// field is a setting: its key (the yaml tag) and where it lives in its struct.
type field struct {
	key   string
	index int
	typ   reflect.Type
}

// fieldsOf lists the settings of struct type t in field order.
func fieldsOf(t reflect.Type) []field {
	var fs []field
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		fs = append(fs, field{key: name, index: i, typ: f.Type})
	}
	return fs
}

var (
	tunnelFields = fieldsOf(reflect.TypeFor[Tunnel]())
	// configFields are the process-wide settings: Config without tunnels.
	configFields = slices.DeleteFunc(fieldsOf(reflect.TypeFor[Config]()),
		func(f field) bool { return f.key == "tunnels" })
)

// Keys of the file that are not settings of Config or Tunnel.
const (
	keyDefaults = "defaults"
	keyTunnels  = "tunnels"
)

// lookupField finds the setting called key among fs.
func lookupField(fs []field, key string) (field, bool) {
	i := slices.IndexFunc(fs, func(f field) bool { return f.key == key })
	if i < 0 {
		return field{}, false
	}
	return fs[i], true
}

func keysOf(fs []field) []string {
	keys := make([]string, len(fs))
	for i, f := range fs {
		keys[i] = f.key
	}
	return keys
}

// TunnelKeys returns the key of every per-tunnel setting, in field order.
// These are the keys of a tunnel and of `defaults:` in a file.
func TunnelKeys() []string { return keysOf(tunnelFields) }

// ConfigKeys returns the key of every process-wide setting, in field order.
// With "defaults" and "tunnels" they are the top-level keys of a file.
func ConfigKeys() []string { return keysOf(configFields) }

// Settings that only one mode of tunnel takes.
var (
	serverOnlyKeys = []string{
		"allow-all", "allow-cn", "allow-ou", "allow-dns", "allow-uri", "allow-ip", "allow-spki-pin",
		"allow-policy", "allow-query",
		"unsafe-target", "proxy-protocol", "proxy-protocol-mode",
		"auto-acme-cert", "auto-acme-email", "auto-acme-agree-to-tos", "auto-acme-ca", "auto-acme-testca", "auto-acme-cache",
	}
	clientOnlyKeys = []string{
		"unsafe-listen", "override-server-name", "proxy",
		"verify-cn", "verify-ou", "verify-dns", "verify-uri", "verify-ip", "verify-spki-pin",
		"verify-policy", "verify-query",
	}
)

// KeyMode returns ModeServer or ModeClient for a tunnel setting that only
// that mode of tunnel takes, and "" for settings both take.
func KeyMode(key string) string {
	switch {
	case slices.Contains(serverOnlyKeys, key):
		return ModeServer
	case slices.Contains(clientOnlyKeys, key):
		return ModeClient
	}
	return ""
}

// tunnelValue returns the setting key of t.
func tunnelValue(t *Tunnel, key string) reflect.Value {
	f, ok := lookupField(tunnelFields, key)
	if !ok {
		panic("configs: no tunnel setting " + key)
	}
	return reflect.ValueOf(t).Elem().Field(f.index)
}

// isSet reports whether the setting key of t differs from its zero value;
// an empty list is not set.
func isSet(t *Tunnel, key string) bool {
	v := tunnelValue(t, key)
	if v.Kind() == reflect.Slice {
		return v.Len() > 0
	}
	d := DefaultTunnelSettings()
	return !v.Equal(tunnelValue(&d, key))
}

// resetSetting puts the setting key of t back to its built-in default.
func resetSetting(t *Tunnel, key string) {
	d := DefaultTunnelSettings()
	tunnelValue(t, key).Set(tunnelValue(&d, key))
}

// closestKey returns the key among keys nearest to s, if it is at most two
// edits away.
func closestKey(s string, keys []string) (string, bool) {
	best, bestDist := "", 3
	for _, k := range keys {
		if abs(len(s)-len(k)) >= bestDist {
			continue
		}
		if d := editDistance(s, k); d < bestDist {
			best, bestDist = k, d
		}
	}
	return best, best != ""
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
