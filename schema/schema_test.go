package schema_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"

	"github.com/ghostunnel-fleet/ghostunnel/configs"
	"github.com/ghostunnel-fleet/ghostunnel/schema"
)

const schemaURL = "https://github.com/ghostunnel-fleet/ghostunnel/schema/ghostunnel.schema.json"

// semanticOnly lists the bad files whose shape is fine: only configs.Load
// can tell what is wrong with them. They must pass the schema.
var semanticOnly = []string{
	"duplicate-names.bad.yaml",
	"mutually-exclusive.bad.yaml",
	"same-listen.bad.yaml",
	"status-collision.bad.yaml",
	"unset-env.bad.yaml",
	"wrong-mode-keys.bad.yaml",
}

func compile(t *testing.T) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schema.JSON))
	if err != nil {
		t.Fatalf("schema is not JSON: %v", err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	if err := c.AddResource(schemaURL, doc); err != nil {
		t.Fatalf("add schema: %v", err)
	}
	s, err := c.Compile(schemaURL)
	if err != nil {
		t.Fatalf("compile schema: %v", err)
	}
	return s
}

// yamlValue reads a YAML document as the JSON value it stands for.
func yamlValue(data []byte) (any, error) {
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		return nil, err
	}
	return normalize(v), nil
}

// normalize turns what yaml.v3 decodes into values the validator takes.
func normalize(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			v[k] = normalize(e)
		}
		return v
	case map[any]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[fmt.Sprint(k)] = normalize(e)
		}
		return m
	case []any:
		for i, e := range v {
			v[i] = normalize(e)
		}
		return v
	case time.Time:
		return v.Format(time.RFC3339Nano)
	}
	return v
}

func glob(t *testing.T, pattern string) []string {
	t.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no files match %s", pattern)
	}
	return files
}

var envRefRE = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// setEnvRefs sets every environment variable data refers to, so that a
// good file loads.
func setEnvRefs(t *testing.T, data []byte) {
	for _, m := range envRefRE.FindAllSubmatch(data, -1) {
		t.Setenv(string(m[1]), "placeholder")
	}
}

func TestGoodFiles(t *testing.T) {
	s := compile(t)
	files := append(glob(t, "../configs/*.yaml"), glob(t, "../testdata/configs/*.good.yaml")...)
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			v, err := yamlValue(data)
			if err != nil {
				t.Fatalf("YAML: %v", err)
			}
			if err := s.Validate(v); err != nil {
				t.Errorf("schema rejects it: %v", err)
			}
			setEnvRefs(t, data)
			if _, err := configs.Load(file); err != nil {
				t.Errorf("configs.Load: %v", err)
			}
		})
	}
}

func TestBadFiles(t *testing.T) {
	s := compile(t)
	for _, file := range glob(t, "../testdata/configs/*.bad.yaml") {
		name := filepath.Base(file)
		t.Run(name, func(t *testing.T) {
			if _, err := configs.Load(file); err == nil {
				t.Error("configs.Load accepts it")
			}
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			schemaErr := fmt.Errorf("not YAML")
			if v, err := yamlValue(data); err == nil {
				schemaErr = s.Validate(v)
			}
			switch semantic := slices.Contains(semanticOnly, name); {
			case semantic && schemaErr != nil:
				t.Errorf("listed as semantically bad only, but the schema rejects it: %v", schemaErr)
			case !semantic && schemaErr == nil:
				t.Error("the schema accepts it (add it to semanticOnly if only its meaning is wrong)")
			}
		})
	}
	for _, name := range semanticOnly {
		if _, err := os.Stat(filepath.Join("../testdata/configs", name)); err != nil {
			t.Errorf("semanticOnly: %v", err)
		}
	}
}

// schemaDoc is the schema as a generic JSON value.
func schemaDoc(t *testing.T) map[string]any {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schema.JSON))
	if err != nil {
		t.Fatal(err)
	}
	return doc.(map[string]any)
}

// resolve follows a local $ref ("#/$defs/x") of node, if it has one.
func resolve(t *testing.T, doc, node map[string]any) map[string]any {
	t.Helper()
	ref, ok := node["$ref"].(string)
	if !ok {
		return node
	}
	var cur any = doc
	for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
		m, ok := cur.(map[string]any)
		if !ok {
			t.Fatalf("cannot resolve %s", ref)
		}
		cur = m[part]
	}
	m, ok := cur.(map[string]any)
	if !ok {
		t.Fatalf("cannot resolve %s", ref)
	}
	return m
}

func propertyNames(t *testing.T, doc, node map[string]any) []string {
	t.Helper()
	node = resolve(t, doc, node)
	if node["additionalProperties"] != false {
		t.Errorf("an object schema allows additional properties")
	}
	props, ok := node["properties"].(map[string]any)
	if !ok {
		t.Fatal("object schema without properties")
	}
	names := make([]string, 0, len(props))
	for k := range props {
		names = append(names, k)
	}
	return names
}

// sameKeys reports the keys only one of code and schema has.
func sameKeys(t *testing.T, where string, code, inSchema []string) {
	t.Helper()
	for _, k := range code {
		if !slices.Contains(inSchema, k) {
			t.Errorf("%s: key %q is in configs but not in the schema", where, k)
		}
	}
	for _, k := range inSchema {
		if !slices.Contains(code, k) {
			t.Errorf("%s: key %q is in the schema but not in configs", where, k)
		}
	}
}

// TestDrift checks that the schema and the configs structs have the same
// keys, so neither can gain a setting the other lacks.
func TestDrift(t *testing.T) {
	doc := schemaDoc(t)
	props := doc["properties"].(map[string]any)

	top := append(configs.ConfigKeys(), "defaults", "tunnels")
	sameKeys(t, "top level", top, propertyNames(t, doc, doc))

	tunnelKeys := configs.TunnelKeys()
	sameKeys(t, "defaults", tunnelKeys, propertyNames(t, doc, props["defaults"].(map[string]any)))
	items := props["tunnels"].(map[string]any)["items"].(map[string]any)
	sameKeys(t, "tunnels items", tunnelKeys, propertyNames(t, doc, items))
}

// enumOf returns the enum of a property, looking into anyOf.
func enumOf(t *testing.T, doc, node map[string]any) []string {
	t.Helper()
	node = resolve(t, doc, node)
	var out []string
	if e, ok := node["enum"].([]any); ok {
		for _, v := range e {
			out = append(out, v.(string))
		}
	}
	for _, key := range []string{"anyOf", "items"} {
		switch sub := node[key].(type) {
		case []any:
			for _, s := range sub {
				out = append(out, enumOf(t, doc, s.(map[string]any))...)
			}
		case map[string]any:
			out = append(out, enumOf(t, doc, sub)...)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// TestEnums checks the schema's enums against what configs accepts.
func TestEnums(t *testing.T) {
	doc := schemaDoc(t)
	tunnel := doc["$defs"].(map[string]any)["tunnel"].(map[string]any)["properties"].(map[string]any)
	top := doc["properties"].(map[string]any)
	sorted := func(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s }

	for _, c := range []struct {
		name   string
		schema []string
		want   []string
	}{
		{"quiet", enumOf(t, doc, top["quiet"].(map[string]any)), sorted(configs.QuietFamilies)},
		{"mode", enumOf(t, doc, tunnel["mode"].(map[string]any)), sorted([]string{configs.ModeServer, configs.ModeClient})},
		{"proxy-protocol-mode", enumOf(t, doc, tunnel["proxy-protocol-mode"].(map[string]any)), sorted(configs.ProxyProtocolModes)},
	} {
		if !slices.Equal(c.schema, c.want) {
			t.Errorf("%s: schema enum %q, configs accepts %q", c.name, c.schema, c.want)
		}
	}
	for _, v := range enumOf(t, doc, tunnel["max-tls-version"].(map[string]any)) {
		if _, err := configs.ParseTLSVersion(v); err != nil {
			t.Errorf("max-tls-version: schema allows %q, configs does not: %v", v, err)
		}
	}
}

// TestShapes checks a few values both ways, so the patterns stay in step
// with configs.
func TestShapes(t *testing.T) {
	s := compile(t)
	doc := func(tunnel string) string {
		return "tunnels:\n  - name: t\n    mode: server\n    listen: 127.0.0.1:1\n    target: 127.0.0.1:2\n" + tunnel
	}
	for _, c := range []struct {
		yaml string
		ok   bool
	}{
		{doc(""), true},
		{doc("    connect-timeout: 1m30s\n"), true},
		{doc("    connect-timeout: 1.5h\n"), true},
		{doc("    close-timeout: 0\n"), true},
		{doc("    connect-timeout: ${TIMEOUT}\n"), true},
		{doc("    connect-timeout: 10\n"), false},
		{doc("    connect-timeout: 10 s\n"), false},
		{doc("    allow-cn: web\n"), true},
		{doc("    allow-cn: [web, api]\n"), true},
		{doc("    allow-cn: {a: b}\n"), false},
		{doc("    allow-all: yes\n"), false},
		{doc("    max-concurrent-conns: -1\n"), false},
		{doc("    max-concurrent-conns: 10\n"), true},
		{doc("    mode2: server\n"), false},
		{doc("    allow-spki-pin: sha1:AAAA\n"), false},
		{doc("    max-tls-version: TLS1.1\n"), false},
		{"status: https://localhost:6060\n" + doc(""), true},
		{"status: unix:/run/s.sock\n" + doc(""), true},
		{"status: systemd:status\n" + doc(""), true},
		{"status: launchd:status\n" + doc(""), false},
		{"status: ftp://localhost:6060\n" + doc(""), false},
		{"x-anchors: {a: 1}\n" + doc(""), true},
		{"quiet: loud\n" + doc(""), false},
		{"tunnels: []\n", false},
		{"defaults: {connect-timeout: 5s}\n" + doc(""), true},
		{"defaults: {name2: x}\n" + doc(""), false},
		{"tunnels:\n  - name: t\n    mode: server\n    listen: 127.0.0.1:1\n", false},
		{"tunnels:\n  - name: T\n    mode: server\n    listen: 127.0.0.1:1\n    target: 127.0.0.1:2\n", false},
	} {
		v, err := yamlValue([]byte(c.yaml))
		if err != nil {
			t.Fatalf("%q: %v", c.yaml, err)
		}
		if err := s.Validate(v); (err == nil) != c.ok {
			t.Errorf("%q: schema says %v, want ok=%v", c.yaml, err, c.ok)
		}
	}
}
