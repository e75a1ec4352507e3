//go:build cgo

package tunnel

// PKCS#11 private keys: the certificate chain comes from a PEM file (--cert)
// and is re-read on every reload like any certificate; the private key stays
// in a token and signs through crypto11. The key is the one whose public key
// the leaf certificate holds, as upstream Ghostunnel finds it.
//
// Logging in to a token is slow and holds sessions, so one crypto11 context
// is shared by every tunnel of the process that names the same module, token
// label and PIN. Contexts are kept for the life of the process: a handful at
// most, one per distinct token a fleet uses. A context that was never
// configured successfully (wrong PIN, unknown token) is not kept, so fixing
// the setting and reloading tries again.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/ThalesGroup/crypto11"
	"github.com/miekg/pkcs11"

	"github.com/ghostunnel-fleet/ghostunnel/configs"
)

// pkcs11PoolWait bounds how long a signature waits for a free session of
// the token when every one is busy.
const pkcs11PoolWait = 30 * time.Second

// tokenID names a shared context. The PIN is kept as a digest, so the cache
// holds no extra copy of it.
type tokenID struct {
	module, label string
	pin           [sha256.Size]byte
}

// token is one logged-in crypto11 context and the keys found in it so far.
type token struct {
	ctx *crypto11.Context

	mu      sync.Mutex
	signers map[string]crypto.Signer // by DER SubjectPublicKeyInfo
}

// tokens are the process's shared contexts.
var tokens struct {
	mu sync.Mutex
	m  map[tokenID]*token
}

// loadPKCS11Cert reads the certificate chain t.Cert names and pairs it with
// the private key of its leaf from the PKCS#11 token t names.
func loadPKCS11Cert(t *configs.Tunnel) (*tls.Certificate, error) {
	cert, err := readCertChain(t.Cert)
	if err != nil {
		return nil, err
	}
	where := fmt.Sprintf("PKCS#11 module %s, token %q", t.PKCS11Module, t.PKCS11TokenLabel)
	tok, err := openToken(t.PKCS11Module, t.PKCS11TokenLabel, t.PKCS11Pin.Reveal())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	signer, err := tok.signerFor(cert.Leaf.PublicKey)
	if err != nil {
		hint := ""
		if t.PKCS11Pin == "" {
			hint = " (no PIN was given, so the token's private objects are not visible)"
		}
		return nil, fmt.Errorf("%s: certificate %s: %w%s", where, t.Cert, err, hint)
	}
	cert.PrivateKey = signer
	return cert, nil
}

// readCertChain reads a PEM certificate chain, leaf first. Other PEM blocks
// are ignored.
func readCertChain(path string) (*tls.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading certificate: %w", err)
	}
	if err := pemComplete(data); err != nil {
		return nil, fmt.Errorf("certificate %s: %w", path, err)
	}
	cert := &tls.Certificate{}
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			cert.Certificate = append(cert.Certificate, b.Bytes)
		}
	}
	if len(cert.Certificate) == 0 {
		return nil, fmt.Errorf("certificate %s: no PEM certificates found", path)
	}
	if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
		return nil, fmt.Errorf("certificate %s: %w", path, err)
	}
	return cert, nil
}

// openToken returns the shared context of module, label and pin, logging
// in to the token the first time.
func openToken(module, label, pin string) (*token, error) {
	module, err := modulePath(module)
	if err != nil {
		return nil, err
	}
	id := tokenID{module: module, label: label, pin: sha256.Sum256([]byte(pin))}
	tokens.mu.Lock()
	defer tokens.mu.Unlock()
	if tok, ok := tokens.m[id]; ok {
		return tok, nil
	}
	ctx, err := crypto11.Configure(&crypto11.Config{
		Path:       module,
		TokenLabel: label,
		Pin:        pin,
		// Without a PIN, use the token as is: its public objects only.
		LoginNotSupported: pin == "",
		PoolWaitTimeout:   pkcs11PoolWait,
	})
	if err != nil {
		if errors.Is(err, pkcs11.Error(pkcs11.CKR_PIN_INCORRECT)) {
			err = fmt.Errorf("%w: wrong PIN", err)
		}
		return nil, redactPIN(err, pin)
	}
	tok := &token{ctx: ctx, signers: map[string]crypto.Signer{}}
	if tokens.m == nil {
		tokens.m = map[tokenID]*token{}
	}
	tokens.m[id] = tok
	return tok, nil
}

// modulePath checks that a module given as a path exists, since the loader
// says nothing useful when it does not, and resolves symbolic links so that
// two spellings of one library share its single initialization. A bare
// file name is left to the dynamic loader's search.
func modulePath(module string) (string, error) {
	if !strings.ContainsRune(module, filepath.Separator) {
		return module, nil
	}
	if _, err := os.Stat(module); err != nil {
		return "", fmt.Errorf("module: %w", err)
	}
	if p, err := filepath.EvalSymlinks(module); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			return abs, nil
		}
		return p, nil
	}
	return module, nil
}

// redactPIN makes sure err does not repeat the PIN, whatever the module
// put in it.
func redactPIN(err error, pin string) error {
	if pin == "" || !strings.Contains(err.Error(), pin) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), pin, "<redacted>"))
}

// signerFor returns the token's private key whose public half is pub.
func (tok *token) signerFor(pub crypto.PublicKey) (crypto.Signer, error) {
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	tok.mu.Lock()
	defer tok.mu.Unlock()
	if s, ok := tok.signers[string(spki)]; ok {
		return s, nil
	}
	// Only keys of the certificate's type, compared by their public half:
	// the attributes a token keeps on private key objects vary.
	var keyType uint
	switch pub.(type) {
	case *ecdsa.PublicKey:
		keyType = pkcs11.CKK_EC
	case *rsa.PublicKey:
		keyType = pkcs11.CKK_RSA
	default:
		return nil, fmt.Errorf("%T keys are not supported in PKCS#11 tokens (want RSA or ECDSA)", pub)
	}
	attrs := crypto11.NewAttributeSet()
	if err := attrs.Set(crypto11.CkaKeyType, keyType); err != nil {
		return nil, err
	}
	found, err := tok.ctx.FindKeyPairsWithAttributes(attrs)
	if err != nil {
		return nil, fmt.Errorf("searching the token for the private key: %w", err)
	}
	type equaler interface{ Equal(crypto.PublicKey) bool }
	for _, s := range found {
		if eq, ok := s.Public().(equaler); ok && eq.Equal(pub) {
			tok.signers[string(spki)] = s
			return s, nil
		}
	}
	return nil, errors.New("no private key in the token matches the certificate's public key")
}

// closeTokens logs out of and forgets every shared context. For tests,
// which need a fresh module after pointing SoftHSM at another token
// directory.
func closeTokens() {
	tokens.mu.Lock()
	defer tokens.mu.Unlock()
	for id, tok := range tokens.m {
		tok.ctx.Close()
		delete(tokens.m, id)
	}
}
