//go:build !cgo

package tunnel

import (
	"crypto/tls"
	"errors"

	"github.com/ghostunnel-fleet/ghostunnel/configs"
)

// loadPKCS11Cert fails: PKCS#11 modules are C libraries, loaded through cgo.
func loadPKCS11Cert(*configs.Tunnel) (*tls.Certificate, error) {
	return nil, errors.New("pkcs11-module: PKCS#11 needs a cgo build (this ghostunnel was built with CGO_ENABLED=0)")
}
