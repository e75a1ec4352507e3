package tunnel

import (
	"os"
	"testing"

	"software.sslmate.com/src/go-pkcs12"

	"github.com/ghostunnel-fleet/ghostunnel/internal/testpki"
)

func writePKCS12(t testing.TB, l *testpki.Leaf, path, pass string) {
	t.Helper()
	der, err := pkcs12.Modern.Encode(l.Key, l.Cert, nil, pass)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, der, 0o600); err != nil {
		t.Fatal(err)
	}
}
