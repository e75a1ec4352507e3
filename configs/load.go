package configs

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Load reads the config file at path, as Parse does, expanding ${VAR} from
// the environment. Problems with the file are returned as a Problems value.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(data, path, nil)
}

// Parse reads a config file's contents and validates the result.
//
// The top-level keys are the process-wide settings (ConfigKeys), `defaults:`
// (tunnel settings every tunnel inherits and may override) and `tunnels:`
// (a list of tunnels); keys starting with x- are ignored, so they can hold
// YAML anchors for merge keys (<<). Every tunnel starts from
// DefaultTunnelSettings, then `defaults:`, then its own keys. A setting in
// `defaults:` that only the other mode of tunnel takes (allow-* for a
// client, verify-* for a server; see KeyMode) is not inherited. A list
// setting may be given a single value.
//
// ${VAR} in values (not keys) is replaced with env(VAR), os.LookupEnv when
// env is nil; $$ is a literal $. Relative file and unix: socket paths are
// resolved against the directory of path, and Config.Path is set to the
// absolute path; with path "" neither happens.
//
// On any problem, the error is a Problems value holding all of them, sorted
// by position, each naming path, line and column.
func Parse(data []byte, path string, env func(string) (string, bool)) (*Config, error) {
	if env == nil {
		env = os.LookupEnv
	}
	l := &loader{
		file:     path,
		env:      env,
		top:      make(map[string]entry),
		topBad:   make(map[string]bool),
		defaults: newScope(nil),
	}
	var abs string
	if path != "" {
		var err error
		if abs, err = filepath.Abs(path); err != nil {
			return nil, err
		}
		l.dir = filepath.Dir(abs)
	}
	cfg := l.load(data)
	if err := l.ps.Err(); err != nil {
		return nil, err
	}
	cfg.Path = abs
	return cfg, nil
}

// entry is one key and its value in a mapping.
type entry struct{ key, value *yaml.Node }

// scope is a mapping of tunnel settings (a tunnel or `defaults:`) and what
// became of its keys.
type scope struct {
	node   *yaml.Node
	keys   map[string]entry
	bad    map[string]bool // keys that did not load, or were misspelled
	broken bool            // not a mapping: nothing is known of its settings
}

func newScope(n *yaml.Node) *scope {
	return &scope{node: n, keys: make(map[string]entry), bad: make(map[string]bool)}
}

// loader reads one file.
type loader struct {
	file string
	dir  string // directory of the file, for relative paths; "" for none
	env  func(string) (string, bool)
	ps   Problems

	root     *yaml.Node       // top-level mapping, if any
	top      map[string]entry // top-level keys
	topBad   map[string]bool  // top-level keys that did not load
	defaults *scope
	tunnels  []*scope // one per Config.Tunnels entry
	depth    int      // of merge key expansion
	merged   int      // entries brought by merge keys so far
	// mergeFailed is set once the merge limits are hit and reported.
	mergeFailed bool
}

// extensionPrefix starts top-level keys that are ignored, to hold YAML
// anchors ("x-common: &common ...").
const extensionPrefix = "x-"

// Where a key is looked up, for unknown key messages.
const (
	inTop = iota
	inTunnel
)

func (l *loader) load(data []byte) *Config {
	cfg := DefaultConfig()
	root, ok := l.parseYAML(data)
	if !ok {
		return &cfg
	}
	var defaults, tunnels *yaml.Node
	if root != nil && !isNull(root) {
		if root.Kind != yaml.MappingNode {
			l.problem(root, 0, "", "want a mapping of settings at the top level, got a %s", kindName(root))
			l.topBad[keyTunnels] = true
			return &cfg
		}
		l.root = root
		for _, e := range l.entries(root, 0) {
			key := e.key.Value
			l.top[key] = e
			switch key {
			case keyDefaults:
				defaults = e.value
			case keyTunnels:
				tunnels = e.value
			default:
				if strings.HasPrefix(key, extensionPrefix) {
					continue
				}
				f, ok := lookupField(configFields, key)
				if !ok {
					l.unknownKey(e.key, 0, inTop)
					continue
				}
				if !l.decode(reflect.ValueOf(&cfg).Elem().Field(f.index), f, e, 0) {
					l.topBad[key] = true
				}
			}
		}
	}
	template := l.loadDefaults(defaults)
	l.loadTunnels(&cfg, tunnels, template)
	l.resolvePaths(&cfg)
	l.validate(&cfg)
	for i, p := range l.ps {
		if p.tunnel > 0 && p.Tunnel == "" {
			l.ps[i].Tunnel = tunnelLabel(&cfg, p.tunnel-1)
		}
	}
	l.ps.Sort()
	return &cfg
}

var syntaxErrorRE = regexp.MustCompile(`^yaml: (?:line (\d+): )?(.*)$`)

// parseYAML parses the one YAML document of data and returns its top node,
// nil for an empty document. It reports false on syntax errors.
func (l *loader) parseYAML(data []byte) (*yaml.Node, bool) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, true
		}
		l.syntaxError(err)
		return nil, false
	}
	var next yaml.Node
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		if err != nil {
			l.syntaxError(err)
		} else {
			l.problem(&next, 0, "", "only one YAML document is allowed")
		}
		return nil, false
	}
	if len(doc.Content) == 0 {
		return nil, true
	}
	return doc.Content[0], true
}

// syntaxError reports a YAML syntax error at the line it names.
func (l *loader) syntaxError(err error) {
	p := Problem{File: l.file, Msg: err.Error()}
	if m := syntaxErrorRE.FindStringSubmatch(err.Error()); m != nil {
		p.Line, _ = strconv.Atoi(m[1])
		p.Msg = "invalid YAML: " + m[2]
	}
	l.ps = append(l.ps, p)
}

// problem records a problem at node n, in tunnel (1-based; 0 for none).
func (l *loader) problem(n *yaml.Node, tunnel int, key, format string, args ...any) {
	p := newProblem(key, format, args...)
	p.File, p.tunnel = l.file, tunnel
	if n != nil {
		p.Line, p.Column = n.Line, n.Column
	}
	l.ps = append(l.ps, p)
}

// Limits of YAML merge key expansion: nesting, and entries merged in all
// (aliases let a small file merge exponentially many).
const (
	maxMergeDepth   = 16
	maxMergeEntries = 100_000
)

// entries returns the key/value pairs of mapping m in order, with YAML
// merge keys (<<) expanded: a key written in m wins over a merged one, and
// among merged mappings the first wins. Keys must be unique scalars.
func (l *loader) entries(m *yaml.Node, tunnel int) []entry {
	var own, merged []entry
	seen := make(map[string]*yaml.Node)
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merged = append(merged, l.mergeEntries(v, tunnel)...)
			continue
		}
		k = resolveAlias(k)
		if k.Kind != yaml.ScalarNode {
			l.problem(k, tunnel, "", "want a key name, got a %s", kindName(k))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			l.problem(k, tunnel, "", "duplicate key %q (first at line %d)", k.Value, first.Line)
			continue
		}
		seen[k.Value] = k
		own = append(own, entry{k, v})
	}
	for _, e := range merged {
		if _, dup := seen[e.key.Value]; !dup {
			seen[e.key.Value] = e.key
			own = append(own, e)
		}
	}
	return own
}

// mergeEntries returns the entries a merge key's value brings: a mapping
// or a list of mappings.
func (l *loader) mergeEntries(v *yaml.Node, tunnel int) []entry {
	if l.depth >= maxMergeDepth || l.merged > maxMergeEntries {
		if !l.mergeFailed {
			l.problem(v, tunnel, "", "merge keys (<<) nested too deep or expanding too much")
			l.mergeFailed = true
		}
		return nil
	}
	l.depth++
	defer func() { l.depth-- }()
	v = resolveAlias(v)
	l.merged += len(v.Content)
	switch v.Kind {
	case yaml.MappingNode:
		return l.entries(v, tunnel)
	case yaml.SequenceNode:
		var es []entry
		for _, item := range v.Content {
			if item = resolveAlias(item); item.Kind != yaml.MappingNode {
				l.problem(item, tunnel, "", "merge key (<<) wants mappings, got a %s", kindName(item))
				continue
			}
			es = append(es, l.entries(item, tunnel)...)
		}
		return es
	}
	l.problem(v, tunnel, "", "merge key (<<) wants a mapping, got a %s", kindName(v))
	return nil
}

// unknownKey reports a key that is not a setting where it stands, with a
// hint: where the key belongs, or the closest key. It returns the key it
// suggested, if any.
func (l *loader) unknownKey(k *yaml.Node, tunnel, where int) (suggested string) {
	key := k.Value
	var candidates []string
	switch where {
	case inTop:
		if _, ok := lookupField(tunnelFields, key); ok {
			l.problem(k, tunnel, "", "unknown key %q at the top level: it is a tunnel setting, so set it in a tunnel or under defaults", key)
			return ""
		}
		candidates = append(ConfigKeys(), keyDefaults, keyTunnels)
	default:
		if _, ok := lookupField(configFields, key); ok || key == keyDefaults || key == keyTunnels {
			l.problem(k, tunnel, "", "unknown key %q in a tunnel: it belongs at the top level", key)
			return ""
		}
		candidates = TunnelKeys()
	}
	if s, ok := closestKey(key, candidates); ok {
		l.problem(k, tunnel, "", "unknown key %q; did you mean %q?", key, s)
		return s
	}
	l.problem(k, tunnel, "", "unknown key %q", key)
	return ""
}

// loadDefaults reads `defaults:` over the built-in tunnel settings.
func (l *loader) loadDefaults(n *yaml.Node) Tunnel {
	t := DefaultTunnelSettings()
	if n == nil {
		return t
	}
	if n = resolveAlias(n); isNull(n) {
		return t
	}
	if n.Kind != yaml.MappingNode {
		l.problem(n, 0, keyDefaults, "want a mapping of tunnel settings, got a %s", kindName(n))
		return t
	}
	l.defaults.node = n
	l.applySettings(&t, n, l.defaults, 0)
	return t
}

// loadTunnels reads `tunnels:`, each tunnel over template.
func (l *loader) loadTunnels(cfg *Config, n *yaml.Node, template Tunnel) {
	if n == nil {
		return
	}
	if n = resolveAlias(n); isNull(n) {
		return
	}
	if n.Kind != yaml.SequenceNode {
		l.problem(n, 0, keyTunnels, "want a list of tunnels, got a %s", kindName(n))
		l.topBad[keyTunnels] = true
		return
	}
	for _, item := range n.Content {
		t := cloneTunnel(template)
		index := len(cfg.Tunnels) + 1
		item = resolveAlias(item)
		sc := newScope(item)
		if item.Kind == yaml.MappingNode {
			l.applySettings(&t, item, sc, index)
			l.dropOtherModeDefaults(&t, sc)
		} else {
			l.problem(item, index, "", "want a mapping of tunnel settings, got a %s", kindName(item))
			sc.broken = true
		}
		cfg.Tunnels = append(cfg.Tunnels, t)
		l.tunnels = append(l.tunnels, sc)
	}
}

// applySettings decodes the tunnel settings of mapping m into t.
func (l *loader) applySettings(t *Tunnel, m *yaml.Node, sc *scope, tunnel int) {
	var misspelled []string
	for _, e := range l.entries(m, tunnel) {
		key := e.key.Value
		f, ok := lookupField(tunnelFields, key)
		if !ok {
			if s := l.unknownKey(e.key, tunnel, inTunnel); s != "" {
				misspelled = append(misspelled, s)
			}
			continue
		}
		sc.keys[key] = e
		if !l.decode(reflect.ValueOf(t).Elem().Field(f.index), f, e, tunnel) {
			sc.bad[key] = true
		}
	}
	for _, s := range misspelled {
		if _, ok := sc.keys[s]; !ok {
			sc.bad[s] = true
		}
	}
}

// dropOtherModeDefaults puts back the built-in value of every setting that
// t inherited from `defaults:` but only the other mode of tunnel takes.
func (l *loader) dropOtherModeDefaults(t *Tunnel, sc *scope) {
	if t.Mode != ModeServer && t.Mode != ModeClient {
		return
	}
	for key := range l.defaults.keys {
		if _, own := sc.keys[key]; own {
			continue
		}
		if m := KeyMode(key); m != "" && m != t.Mode {
			resetSetting(t, key)
		}
		// disable-authentication means "present no certificate" to a
		// client and "ask for none" to a server: a default meant for the
		// clients must not open the servers to everyone. A server tunnel
		// turns its authentication off itself.
		if key == "disable-authentication" && t.Mode == ModeServer {
			resetSetting(t, key)
		}
	}
}

// cloneTunnel copies t, lists included.
func cloneTunnel(t Tunnel) Tunnel {
	v := reflect.ValueOf(&t).Elem()
	for _, f := range tunnelFields {
		if fv := v.Field(f.index); fv.Kind() == reflect.Slice && !fv.IsNil() {
			fv.Set(reflect.AppendSlice(reflect.MakeSlice(fv.Type(), 0, fv.Len()), fv))
		}
	}
	return t
}

// decode decodes the value of e into dst, the setting f, reporting false
// (and the problem) when it cannot.
func (l *loader) decode(dst reflect.Value, f field, e entry, tunnel int) bool {
	val := resolveAlias(e.value)
	if isNull(val) {
		dst.Set(reflect.Zero(f.typ))
		return true
	}
	if msg := checkKind(val, f.typ); msg != "" {
		l.problem(val, tunnel, f.key, "%s", msg)
		return false
	}
	val, ok := l.expand(val, tunnel, f.key)
	if !ok {
		return false
	}
	if msg := checkScalarType(val, f.typ); msg != "" {
		l.problem(val, tunnel, f.key, "%s", msg)
		return false
	}
	if f.typ.Kind() == reflect.Slice && val.Kind == yaml.ScalarNode {
		val = &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Content: []*yaml.Node{val}, Line: val.Line, Column: val.Column}
	}
	ptr := reflect.New(f.typ)
	if err := val.Decode(ptr.Interface()); err != nil {
		if f.typ == reflect.TypeFor[Secret]() {
			// yaml's message quotes the value: never for a secret.
			l.problem(val, tunnel, f.key, "want a string (the value is not shown: it is a secret)")
			return false
		}
		l.problem(val, tunnel, f.key, "%s", cleanDecodeError(err))
		return false
	}
	dst.Set(ptr.Elem())
	return true
}

// expand returns n, a scalar or a list of scalars, with ${VAR} expanded (a
// copy if anything changed); it reports false, and the problems, for
// unset variables.
func (l *loader) expand(n *yaml.Node, tunnel int, key string) (*yaml.Node, bool) {
	if n.Kind == yaml.SequenceNode {
		c := *n
		c.Content = make([]*yaml.Node, len(n.Content))
		ok := true
		for i, item := range n.Content {
			e, good := l.expandScalar(resolveAlias(item), tunnel, key)
			if !good {
				ok, e = false, item
			}
			c.Content[i] = e
		}
		return &c, ok
	}
	return l.expandScalar(n, tunnel, key)
}

// expandScalar expands ${VAR} in scalar n.
func (l *loader) expandScalar(n *yaml.Node, tunnel int, key string) (*yaml.Node, bool) {
	if n.Kind != yaml.ScalarNode || !strings.Contains(n.Value, "$") {
		return n, true
	}
	v, err := expandEnv(n.Value, l.env)
	if err != nil {
		l.problem(n, tunnel, key, "%v", err)
		return nil, false
	}
	c := *n
	c.Value = v
	if c.Style&(yaml.TaggedStyle|yaml.SingleQuotedStyle|yaml.DoubleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) == 0 {
		c.Tag = "" // resolve the type of the expanded plain value afresh
	}
	return &c, true
}

// checkKind returns what is wrong when the kind of n does not fit a
// setting of type t, or "". A list setting takes a list of scalars or a
// single scalar.
func checkKind(n *yaml.Node, t reflect.Type) string {
	if t.Kind() == reflect.Slice {
		switch n.Kind {
		case yaml.ScalarNode:
			return ""
		case yaml.SequenceNode:
			for _, item := range n.Content {
				if item = resolveAlias(item); item.Kind != yaml.ScalarNode {
					return "want a list of strings, got a " + kindName(item) + " in it"
				}
			}
			return ""
		}
		return "want a list of strings, got a " + kindName(n)
	}
	if n.Kind != yaml.ScalarNode {
		return "want " + typeName(t) + ", got a " + kindName(n)
	}
	return ""
}

// checkScalarType returns what is wrong when scalar n is not a boolean or
// integer that a setting of type t needs, or "".
func checkScalarType(n *yaml.Node, t reflect.Type) string {
	switch {
	case t.Kind() == reflect.Bool && n.ShortTag() != "!!bool",
		t.Kind() == reflect.Int && n.ShortTag() != "!!int":
		return "want " + typeName(t) + ", got " + strconv.Quote(n.Value)
	}
	return ""
}

// typeName describes the values a setting of type t takes.
func typeName(t reflect.Type) string {
	switch {
	case t == reflect.TypeFor[Duration]():
		return "a duration such as 10s or 5m"
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() == reflect.Int:
		return "an integer"
	case t.Kind() == reflect.Slice:
		return "a list of strings"
	}
	return "a string"
}

var decodeLineRE = regexp.MustCompile(`^line \d+: `)

// cleanDecodeError turns a yaml.v3 decoding error into a message without
// the yaml: prefix and line numbers (the problem has the position).
func cleanDecodeError(err error) string {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs := make([]string, len(te.Errors))
		for i, m := range te.Errors {
			msgs[i] = decodeLineRE.ReplaceAllString(m, "")
		}
		return strings.Join(msgs, "; ")
	}
	return strings.TrimPrefix(err.Error(), "yaml: ")
}

// ResolvePaths makes cfg's relative file and unix: socket paths absolute,
// against dir, as Load does against the file's directory: for a config
// built elsewhere (a command line) that is to be written to a file.
func ResolvePaths(cfg *Config, dir string) {
	(&loader{dir: dir}).resolvePaths(cfg)
}

// resolvePaths makes relative file and unix: socket paths relative to the
// file's directory.
func (l *loader) resolvePaths(cfg *Config) {
	if l.dir == "" {
		return
	}
	cfg.Status = l.resolveSocket(cfg.Status)
	for i := range cfg.Tunnels {
		t := &cfg.Tunnels[i]
		for _, p := range []*string{&t.Keystore, &t.Cert, &t.Key, &t.CACert, &t.AllowPolicy, &t.VerifyPolicy, &t.AutoACMECache} {
			*p = l.resolvePath(*p)
		}
		t.Listen = l.resolveSocket(t.Listen)
		t.Target = l.resolveSocket(t.Target)
	}
}

func (l *loader) resolvePath(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(l.dir, p)
}

func (l *loader) resolveSocket(addr string) string {
	// unix:@name is a Linux abstract socket, not a path.
	if p, ok := strings.CutPrefix(addr, prefixUnix); ok && p != "" && !strings.HasPrefix(p, "@") {
		return prefixUnix + l.resolvePath(p)
	}
	return addr
}

// validate adds the problems Validate finds, placed in the file, except
// those that follow from a problem already reported.
func (l *loader) validate(cfg *Config) {
	for _, p := range Validate(cfg) {
		if l.follows(p) {
			continue
		}
		p.File = l.file
		if n := l.position(p); n != nil {
			p.Line, p.Column = n.Line, n.Column
		}
		l.ps = append(l.ps, p)
	}
}

// follows reports whether validation problem p follows from a problem the
// loader reported.
func (l *loader) follows(p Problem) bool {
	if p.tunnel == 0 {
		return l.topBad[p.Key]
	}
	sc := l.tunnels[p.tunnel-1]
	if sc.broken {
		return true
	}
	keys := []string{p.Key}
	if p.about != "" {
		keys = append(keys, strings.Split(p.about, ",")...)
	}
	for _, key := range keys {
		_, own := sc.keys[key]
		if sc.bad[key] || !own && l.defaults.bad[key] {
			return true
		}
	}
	return false
}

// position finds the node that validation problem p is about: the key (or
// list entry) in the tunnel, else in `defaults:`, else the tunnel itself;
// for process-wide problems the top-level key, else the top-level mapping.
func (l *loader) position(p Problem) *yaml.Node {
	if p.tunnel == 0 {
		if e, ok := l.top[p.Key]; ok {
			return e.key
		}
		return l.root
	}
	sc := l.tunnels[p.tunnel-1]
	if e, ok := sc.keys[p.Key]; ok {
		return entryPosition(e, p.elem)
	}
	if e, ok := l.defaults.keys[p.Key]; ok {
		return entryPosition(e, p.elem)
	}
	return sc.node
}

// entryPosition returns the node of list entry elem (1-based) of e, or
// e's key.
func entryPosition(e entry, elem int) *yaml.Node {
	if elem == 0 {
		return e.key
	}
	switch v := resolveAlias(e.value); v.Kind {
	case yaml.SequenceNode:
		if elem <= len(v.Content) {
			return v.Content[elem-1]
		}
	case yaml.ScalarNode:
		if elem == 1 {
			return v
		}
	}
	return e.key
}

// shorten cuts s to a length that fits in a message.
func shorten(s string) string {
	const max = 40
	if len(s) <= max {
		return s
	}
	return strings.ToValidUTF8(s[:max], "") + "..."
}

// maxAliasDepth bounds alias chains.
const maxAliasDepth = 64

// resolveAlias follows aliases to the node they name.
func resolveAlias(n *yaml.Node) *yaml.Node {
	for range maxAliasDepth {
		if n.Kind != yaml.AliasNode || n.Alias == nil {
			return n
		}
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// kindName names the kind of n for messages.
func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.ScalarNode:
		if isNull(n) {
			return "null"
		}
		return "scalar " + strconv.Quote(shorten(n.Value))
	case yaml.AliasNode:
		return "alias"
	}
	return "document"
}
