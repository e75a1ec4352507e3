package configs

import (
	"bytes"
	"reflect"
	"slices"

	"go.yaml.in/yaml/v3"
)

// StorepassPlaceholder is written for a storepass when a config is printed:
// the password itself never is. Parse expands it from the environment.
const StorepassPlaceholder = "${KEYSTORE_PASS}"

// SecretPlaceholders are what a printed config holds instead of each secret
// setting: a reference to the environment variable upstream reads it from
// (or, for the proxy URL, which may carry a password, one of ours).
var SecretPlaceholders = map[string]string{
	"storepass":  StorepassPlaceholder,
	"pkcs11-pin": "${PKCS11_PIN}",
	"proxy":      "${GHOSTUNNEL_PROXY}",
}

// requiredTunnelKeys are printed even when empty.
var requiredTunnelKeys = []string{"name", "mode", "listen", "target"}

// Marshal prints one tunnel as a YAML mapping in the file's vocabulary,
// leaving out settings that have their built-in default. The storepass is
// printed as StorepassPlaceholder; a $ in other values is written $$ so that
// Parse reads the value back unchanged.
func Marshal(t Tunnel) ([]byte, error) {
	n, err := tunnelNode(t)
	if err != nil {
		return nil, err
	}
	return encode(n)
}

// MarshalConfig prints c as a config file: the process-wide settings that
// differ from DefaultConfig, then its tunnels as Marshal prints them.
func MarshalConfig(c *Config) ([]byte, error) {
	root := &yaml.Node{Kind: yaml.MappingNode}
	v, d := reflect.ValueOf(c).Elem(), reflect.ValueOf(DefaultConfig())
	for _, f := range configFields {
		fv := v.Field(f.index)
		if reflect.DeepEqual(fv.Interface(), d.Field(f.index).Interface()) {
			continue
		}
		if err := addPair(root, f.key, fv); err != nil {
			return nil, err
		}
	}
	tunnels := &yaml.Node{Kind: yaml.SequenceNode}
	for _, t := range c.Tunnels {
		n, err := tunnelNode(t)
		if err != nil {
			return nil, err
		}
		tunnels.Content = append(tunnels.Content, n)
	}
	root.Content = append(root.Content, scalarNode(keyTunnels), tunnels)
	return encode(root)
}

// tunnelNode builds the mapping that Marshal prints.
func tunnelNode(t Tunnel) (*yaml.Node, error) {
	m := &yaml.Node{Kind: yaml.MappingNode}
	v, d := reflect.ValueOf(t), reflect.ValueOf(DefaultTunnelSettings())
	for _, f := range tunnelFields {
		fv := v.Field(f.index)
		if reflect.DeepEqual(fv.Interface(), d.Field(f.index).Interface()) && !isRequiredKey(f.key) {
			continue
		}
		if ph, ok := SecretPlaceholders[f.key]; ok {
			m.Content = append(m.Content, scalarNode(f.key), scalarNode(ph))
			continue
		}
		if err := addPair(m, f.key, fv); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func isRequiredKey(key string) bool { return slices.Contains(requiredTunnelKeys, key) }

// addPair appends key: value to mapping m, escaping $ in strings and
// writing lists in flow style.
func addPair(m *yaml.Node, key string, v reflect.Value) error {
	var val yaml.Node
	switch {
	case v.Kind() == reflect.String:
		if err := val.Encode(escapeEnv(v.String())); err != nil {
			return err
		}
	case v.Kind() == reflect.Slice:
		escaped := make([]string, v.Len())
		for i := range escaped {
			escaped[i] = escapeEnv(v.Index(i).String())
		}
		if err := val.Encode(escaped); err != nil {
			return err
		}
		val.Style = yaml.FlowStyle
	default:
		if err := val.Encode(v.Interface()); err != nil {
			return err
		}
	}
	m.Content = append(m.Content, scalarNode(key), &val)
	return nil
}

func scalarNode(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
}

func encode(n *yaml.Node) ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(n); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
