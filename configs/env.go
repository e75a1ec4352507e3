package configs

import (
	"fmt"
	"strings"
)

// expandEnv replaces every ${NAME} in s with the value of the environment
// variable NAME, as lookup finds it; $$ is a literal $, and a $ followed by
// anything else is kept as it is. An unset variable, an empty or invalid
// name and a missing } are errors.
func expandEnv(s string, lookup func(string) (string, bool)) (string, error) {
	if !strings.Contains(s, "$") {
		return s, nil
	}
	var b strings.Builder
	for {
		i := strings.IndexByte(s, '$')
		if i < 0 || i == len(s)-1 {
			b.WriteString(s)
			return b.String(), nil
		}
		b.WriteString(s[:i])
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			s = s[i+2:]
		case '{':
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				return "", fmt.Errorf("missing } after ${ (write $$ for a literal $)")
			}
			name := s[i+2 : i+2+end]
			if !isEnvName(name) {
				return "", fmt.Errorf("invalid environment variable name %q in ${%s}", name, name)
			}
			val, ok := lookup(name)
			if !ok {
				return "", fmt.Errorf("environment variable %q is not set", name)
			}
			b.WriteString(val)
			s = s[i+3+end:]
		default:
			b.WriteByte('$')
			s = s[i+1:]
		}
	}
}

// isEnvName reports whether s is a shell variable name.
func isEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		switch {
		case c == '_', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case i > 0 && '0' <= c && c <= '9':
		default:
			return false
		}
	}
	return true
}

// escapeEnv escapes s so that expandEnv gives it back.
func escapeEnv(s string) string { return strings.ReplaceAll(s, "$", "$$") }
