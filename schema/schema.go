// Package schema holds the JSON Schema (draft 2020-12) of the ghostunnel
// fleet config file, for editors (yaml-language-server) and tools. The tests
// check it against configs' keys and example files.
package schema

import _ "embed"

// JSON is the schema document, ghostunnel.schema.json.
//
//go:embed ghostunnel.schema.json
var JSON []byte
