//go:build !noopa

package tunnel

import (
	"context"
	"crypto/x509"
	"fmt"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/ghostunnel-fleet/ghostunnel/configs"
)

// policy is an OPA policy (--allow-policy/--allow-query on a server,
// --verify-policy/--verify-query on a client), compiled once per settings
// generation: build() loads the bundle and prepares the query, so a handshake
// only evaluates it. A reload re-reads the bundle; a bundle that no longer
// loads or compiles fails the build, and the tunnel keeps its old generation
// and with it the old policy.
//
// The input document is upstream Ghostunnel's, so policies written for
// upstream work unchanged:
//
//	{"certificate": <the peer's leaf *x509.Certificate>}
//
// The certificate is converted as encoding/json renders crypto/x509's
// Certificate: Go field names, for example
//
//	input.certificate.Subject.CommonName          "client"
//	input.certificate.Subject.OrganizationalUnit  ["team-a"]
//	input.certificate.Issuer.CommonName           "ca"
//	input.certificate.DNSNames                    ["client.example"]
//	input.certificate.IPAddresses                 ["10.1.2.3"]
//	input.certificate.EmailAddresses              []
//	input.certificate.URIs                        [{"Scheme": "spiffe", "Host": "example.org", "Path": "/client/web", ...}]
//	input.certificate.SerialNumber                12345 (a number)
//	input.certificate.NotBefore, .NotAfter        RFC 3339 strings
//	input.certificate.Raw                         DER, base64
//
// The query admits the peer only when it yields exactly one result whose
// value is true (rego.ResultSet.Allowed); undefined, false, anything else
// or an evaluation error refuses it.
type policy struct {
	query   rego.PreparedEvalQuery
	timeout time.Duration
}

// loadPolicy loads the bundle at path (a directory or a .tar.gz bundle; a
// single .rego file is read as a Rego v0 module, as upstream does) and
// prepares query against it. Evaluation is bounded by timeout (the
// tunnel's connect timeout; the default when zero). It returns nil, nil
// when neither is set.
func loadPolicy(path, query string, timeout time.Duration) (*policy, error) {
	if path == "" && query == "" {
		return nil, nil
	}
	if path == "" || query == "" {
		return nil, fmt.Errorf("an OPA policy needs both a bundle and a query")
	}
	if timeout <= 0 {
		timeout = configs.DefaultConnectTimeout
	}
	opts := []func(*rego.Rego){rego.Query(query)}
	if strings.HasSuffix(path, ".rego") {
		opts = append(opts, rego.Load([]string{path}, nil), rego.SetRegoVersion(ast.RegoV0))
	} else {
		opts = append(opts, rego.LoadBundle(path))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pq, err := rego.New(opts...).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("OPA policy %s: %w", path, err)
	}
	return &policy{query: pq, timeout: timeout}, nil
}

// allows evaluates the policy for the peer leaf: nil admits it, errDenied
// refuses it, and any other error (including running past the timeout)
// refuses it too.
func (p *policy) allows(leaf *x509.Certificate) error {
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	rs, err := p.query.Eval(ctx, rego.EvalInput(map[string]any{"certificate": leaf}))
	if err != nil {
		return fmt.Errorf("access policy: %w", err)
	}
	if !rs.Allowed() {
		return errDenied
	}
	return nil
}
