package tunnel

import (
	"bytes"
	"context"
	"crypto/cipher"
	"crypto/des"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ghostunnel-fleet/ghostunnel/configs"
	"github.com/ghostunnel-fleet/ghostunnel/internal/testpki"
)

// TEST FIXTURES, NOT SECRETS. Two throwaway keystores made once with keytool
// (OpenJDK 17.0.15) for these tests only; the keys in them protect nothing.
// Store and key password "fixture-pass".
//
// jceksFixtureB64 (JCEKS, keytool -J-Djdk.jceks.iterationCount=10000):
// "fixture", an EC P-256 private key with a self-signed CN=jceks-fixture
// certificate (serial a989cfe1f317eb4a, valid to 2126); "trusted", that
// certificate; "aes", an AES-128 secret key. Made with -genkeypair,
// -genseckey, -exportcert and -importcert.
//
// jksFixtureB64 (JKS): "fixture", an EC P-256 private key with a
// self-signed CN=jks-fixture certificate (serial 5111888369e39f98).
const jceksFixtureB64 = `
zs7OzgAAAAIAAAADAAAAAgAHdHJ1c3RlZAAAAaIS6SkrAAVYLjUwOQAAAU0wggFJMIHwoAMCAQIC
CQCpic/h8xfrSjAKBggqhkjOPQQDAjAYMRYwFAYDVQQDEw1qY2Vrcy1maXh0dXJlMCAXDTI2MTEy
NTEzMzMxOFoYDzIxMjYxMTAxMTMzMzE4WjAYMRYwFAYDVQQDEw1qY2Vrcy1maXh0dXJlMFkwEwYH
KoZIzj0CAQYIKoZIzj0DAQcDQgAE9zNl+aopdlz4XTX3jC9UBBbao+YYCHzxaVpQh0FA//mGzlSa
ri7esJOg6OZ0Z23hdt59bur3///CBDGO1dtCkqMhMB8wHQYDVR0OBBYEFKEnhNgESZHy+bEBaNYK
s3rXfIhIMAoGCCqGSM49BAMCA0gAMEUCIBvV5zF2n6nD9tI3wCDHqVXKpauru5RlnFg3sAWas92t
AiEAygMKUH6qi2hVcwLZo5yn4hZ+rCJ9GEpwzyF/GnulhrIAAAABAAdmaXh0dXJlAAABohLpJQoA
AABpMGcwGwYJKwYBBAEqAhMBMA4ECLCifhA+yCjrAgInEARIRsDGKJtQMzsMpA8WX0Ut+52MgwvN
D3R3i6bA16UKiKhf/OxT7mtCegD9hIfiKjcJb40/zj2jWZUzdZHNA3pK6X60ORWb7SMiAAAAAQAF
WC41MDkAAAFNMIIBSTCB8KADAgECAgkAqYnP4fMX60owCgYIKoZIzj0EAwIwGDEWMBQGA1UEAxMN
amNla3MtZml4dHVyZTAgFw0yNjExMjUxMzMzMThaGA8yMTI2MTEwMTEzMzMxOFowGDEWMBQGA1UE
AxMNamNla3MtZml4dHVyZTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABPczZfmqKXZc+F0194wv
VAQW2qPmGAh88WlaUIdBQP/5hs5Umq4u3rCToOjmdGdt4XbefW7q9///wgQxjtXbQpKjITAfMB0G
A1UdDgQWBBShJ4TYBEmR8vmxAWjWCrN613yISDAKBggqhkjOPQQDAgNIADBFAiAb1ecxdp+pw/bS
N8Agx6lVyqWrq7uUZZxYN7AFmrPdrQIhAMoDClB+qotoVXMC2aOcp+IWfqwifRhKcM8hfxp7pYay
AAAAAwADYWVzAAABohLpJmKs7QAFc3IAM2NvbS5zdW4uY3J5cHRvLnByb3ZpZGVyLlNlYWxlZE9i
amVjdEZvcktleVByb3RlY3Rvcs1XylnnMLtTAgAAeHIAGWphdmF4LmNyeXB0by5TZWFsZWRPYmpl
Y3Q+Nj2mw7dUcAIABFsADWVuY29kZWRQYXJhbXN0AAJbQlsAEGVuY3J5cHRlZENvbnRlbnRxAH4A
AkwACXBhcmFtc0FsZ3QAEkxqYXZhL2xhbmcvU3RyaW5nO0wAB3NlYWxBbGdxAH4AA3hwdXIAAltC
rPMX+AYIVOACAAB4cAAAABAwDgQIDeviR+kY4Y0CAicQdXEAfgAFAAAAkCZ62b/n+wu6NtRh45M2
DuI6avz9cquh0R+hw80/dPugLsXYgTSImrMM4lyKBMyn3YHnazXR90Zzv/UMjQiSBrWJeB0rj3mf
2z02d1G5+cZUuMsAKHqZWqEYgl63TcfbAcISKX11SKt4rYKrI6gcPkJS2xszg3dMRctZ9fKmwTuY
yD3P7yVuhbURPgUu0miKFXQAFlBCRVdpdGhNRDVBbmRUcmlwbGVERVN0ABZQQkVXaXRoTUQ1QW5k
VHJpcGxlREVT02nfzQOBp0/kieZsDwaz/jbFDJI=
`

const jksFixtureB64 = `
/u3+7QAAAAIAAAABAAAAAQAHZml4dHVyZQAAAaIS6SpsAAAAfzB9MA4GCisGAQQBKgIRAQEFAARr
CT5AJVzdcFjnvLRpFGnEUKGOohwNAFxehTt0Kvs48LpHDZM5LwYMQJTDXxVkBmj+jmsVCJLuymTF
X+3PsdRutVjTzw+9Dn/V3wlnccf5t5MWB7kkSPbZeJv9pPKzIhwtR3kjc+69026ka/MAAAABAAVY
LjUwOQAAAUcwggFDMIHroAMCAQICCFERiINp45+YMAoGCCqGSM49BAMCMBYxFDASBgNVBAMTC2pr
cy1maXh0dXJlMCAXDTI2MTEyNTEzMzMyMFoYDzIxMjYxMTAxMTMzMzIwWjAWMRQwEgYDVQQDEwtq
a3MtZml4dHVyZTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABIuL1uTz0nNmVaQJyk4F2PB+5G3i
c9kLlBmJCFpxCP9q/Isz1y0tvn9NwaqhnXTsss7QL+piY3JOH7/ZnY2IDN6jITAfMB0GA1UdDgQW
BBT4iJw+MyisQIO6z1Nl1PleVYlVWjAKBggqhkjOPQQDAgNHADBEAiBoB7Dh0qgodOahcJgumtx1
Qne20bq46G9MR0hp+qsryAIgEg0rvo39E/VZnTH5bYZ2uIV6PepO5x8tae4qG9ZzgqpIwA6T5vcr
hvvhLs0JrNXKrBfBaQ==
`

const fixturePass = "fixture-pass"

func fixtureBytes(t testing.TB, b64 string) []byte {
	t.Helper()
	data, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(b64), ""))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// wrongPasswordErr is the one error a wrong store password gives.
func wrongPasswordErr(path string) string {
	return "keystore " + path + ": wrong password or corrupted keystore"
}

// TestJCEKSKDFJavaVectors pins PBEWithMD5AndTripleDES to the JDK: the
// ciphertexts are the JDK's own (Cipher "PBEWithMD5AndTripleDES", password
// "kdf-vector-pass", 1000 iterations), identical from OpenJDK 17.0.15 and
// 25.0.3. The second salt has equal halves, where the JDK reverses the
// first half before hashing.
func TestJCEKSKDFJavaVectors(t *testing.T) {
	const plain = "ghostunnel JCEKS KDF test vector"
	for _, v := range []struct{ salt, ct string }{
		{"0123456789abcdef", "5e3d8a7cc1ee66d3dacafb99dd28db2e72adfc00f31e933e5150f9d7412b7371c6f144a8af20b42b"},
		{"a1b2c3d4a1b2c3d4", "51ae383712b77568cec4a5a5a6466abfd874401721fec36b2c3048b03114e6049dfa51a8d9e080c3"},
	} {
		salt, _ := hex.DecodeString(v.salt)
		ct, _ := hex.DecodeString(v.ct)
		got := decryptPBEWithMD5AndTripleDES(ct, []byte("kdf-vector-pass"), salt, 1000)
		if string(got) != plain {
			t.Errorf("salt %s: decrypted %q, want %q", v.salt, got, plain)
		}
		if string(salt) != string(mustHex(v.salt)) {
			t.Errorf("salt %s modified in place", v.salt)
		}
		if got := decryptPBEWithMD5AndTripleDES(ct, []byte("kdf-vector-pasS"), salt, 1000); string(got) == plain {
			t.Errorf("salt %s: decrypted with the wrong password", v.salt)
		}
	}
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func TestJCEKSFixtures(t *testing.T) {
	dir := t.TempDir()
	for _, fx := range []struct{ name, b64, cn, serial string }{
		{"fixture.jceks", jceksFixtureB64, "jceks-fixture", "a989cfe1f317eb4a"},
		{"fixture.jks", jksFixtureB64, "jks-fixture", "5111888369e39f98"},
	} {
		t.Run(fx.name, func(t *testing.T) {
			path := writeFile(t, dir, fx.name, fixtureBytes(t, fx.b64))
			c, err := loadKeystore(path, fixturePass)
			if err != nil {
				t.Fatal(err)
			}
			if c.Leaf.Subject.CommonName != fx.cn || c.Leaf.SerialNumber.Text(16) != fx.serial {
				t.Errorf("leaf %s serial %x", c.Leaf.Subject, c.Leaf.SerialNumber)
			}
			if _, ok := c.PrivateKey.(*ecdsa.PrivateKey); !ok || len(c.Certificate) != 1 {
				t.Errorf("key %T, chain of %d", c.PrivateKey, len(c.Certificate))
			}
			for _, pass := range []string{"", "fixture-pasS", "hunter2-\u00e9"} {
				_, err := loadKeystore(path, pass)
				if err == nil || err.Error() != wrongPasswordErr(path) {
					t.Errorf("password %q: %v", pass, err)
				}
			}
		})
	}
}

// TestJCEKSTruncatedAndCorrupted: every prefix and every one-byte change of
// the fixtures fails, without a panic and without the password.
func TestJCEKSTruncatedAndCorrupted(t *testing.T) {
	dir := t.TempDir()
	for _, b64 := range []string{jceksFixtureB64, jksFixtureB64} {
		data := fixtureBytes(t, b64)
		path := filepath.Join(dir, "ks")
		check := func(what string, d []byte) {
			if err := os.WriteFile(path, d, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := loadKeystore(path, fixturePass)
			if err == nil {
				t.Fatalf("%s: loaded", what)
			}
			if strings.Contains(err.Error(), fixturePass) {
				t.Fatalf("%s: error shows the password: %v", what, err)
			}
			if len(d) >= 32 && isJavaKeystore(d) && err.Error() != wrongPasswordErr(path) {
				t.Fatalf("%s: %v", what, err)
			}
		}
		for n := range len(data) {
			check(fmt.Sprintf("first %d bytes", n), data[:n])
		}
		for i := range data {
			d := bytes.Clone(data)
			d[i] ^= 0x20
			check(fmt.Sprintf("byte %d changed", i), d)
		}
		check("trailing byte", append(bytes.Clone(data), 0))
	}
	_, err := loadJavaKeystore("x", []byte{0xce, 0xce, 0xce, 0xce, 0, 0, 0, 2}, "p")
	if err == nil || err.Error() != "keystore x: truncated Java keystore" {
		t.Errorf("short: %v", err)
	}
}

// ksBuilder writes a keystore by hand.
type ksBuilder struct {
	b       []byte
	version uint32
}

func newKS(magic, version, count uint32) *ksBuilder {
	k := &ksBuilder{version: version}
	k.u32(magic).u32(version).u32(count)
	return k
}

func (k *ksBuilder) u32(v uint32) *ksBuilder { k.b = binary.BigEndian.AppendUint32(k.b, v); return k }

func (k *ksBuilder) utf(s string) *ksBuilder {
	k.b = binary.BigEndian.AppendUint16(k.b, uint16(len(s)))
	k.b = append(k.b, s...)
	return k
}

func (k *ksBuilder) head(tag uint32, alias string) *ksBuilder {
	k.u32(tag).utf(alias)
	k.b = binary.BigEndian.AppendUint64(k.b, uint64(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixMilli()))
	return k
}

func (k *ksBuilder) cert(typ string, der []byte) *ksBuilder {
	if k.version == 2 {
		k.utf(typ)
	}
	k.u32(uint32(len(der)))
	k.b = append(k.b, der...)
	return k
}

func (k *ksBuilder) key(alias string, protected []byte, chain ...[]byte) *ksBuilder {
	k.head(1, alias).u32(uint32(len(protected)))
	k.b = append(k.b, protected...)
	k.u32(uint32(len(chain)))
	for _, der := range chain {
		k.cert("X.509", der)
	}
	return k
}

func (k *ksBuilder) trusted(alias string, der []byte) *ksBuilder {
	return k.head(2, alias).cert("X.509", der)
}

// seal appends the keyed SHA-1 digest.
func (k *ksBuilder) seal(pass string) []byte { return sealKS(k.b, pass) }

func sealKS(body []byte, pass string) []byte {
	h := sha1.New()
	h.Write(utf16BE(pass))
	h.Write([]byte(jksIntegrityTag))
	h.Write(body)
	return h.Sum(bytes.Clone(body))
}

// jceProtect is KeyProtector.protect: PBEWithMD5AndTripleDES over PKCS#8.
func jceProtect(t testing.TB, key any, pass string, salt []byte, iter int) []byte {
	t.Helper()
	plain, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return jceProtectDER(t, plain, pass, salt, iter)
}

func jceProtectDER(t testing.TB, plain []byte, pass string, salt []byte, iter int) []byte {
	t.Helper()
	plain = bytes.Clone(plain)
	n := des.BlockSize - len(plain)%des.BlockSize
	plain = append(plain, bytes.Repeat([]byte{byte(n)}, n)...)
	k, iv := pbeMD5TripleDESKey([]byte(pass), salt, iter)
	block, err := des.NewTripleDESCipher(k)
	if err != nil {
		t.Fatal(err)
	}
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(plain, plain)
	return marshalEPKI(t, oidJCEKeyProtector, mustDER(t, pbeParams{salt, iter}), plain)
}

type pbeParams struct {
	Salt       []byte
	Iterations int
}

func mustDER(t testing.TB, v any) []byte {
	t.Helper()
	der, err := asn1.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// jdkProtect is the JKS sun.security.provider.KeyProtector.
func jdkProtect(t testing.TB, key any, pass string) []byte {
	t.Helper()
	plain, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pw := utf16BE(pass)
	salt := bytes.Repeat([]byte{0x5a}, 20)
	out := bytes.Clone(salt)
	d := salt
	for off := 0; off < len(plain); off += sha1.Size {
		s := sha1.Sum(append(bytes.Clone(pw), d...))
		d = s[:]
		for i := off; i < len(plain) && i < off+sha1.Size; i++ {
			out = append(out, plain[i]^d[i-off])
		}
	}
	check := sha1.Sum(append(bytes.Clone(pw), plain...))
	return marshalEPKI(t, oidJDKKeyProtector, asn1.NullBytes, append(out, check[:]...))
}

func marshalEPKI(t testing.TB, oid asn1.ObjectIdentifier, params, data []byte) []byte {
	t.Helper()
	der, err := asn1.Marshal(struct {
		Algo pkix.AlgorithmIdentifier
		Data []byte
	}{pkix.AlgorithmIdentifier{Algorithm: oid, Parameters: asn1.RawValue{FullBytes: params}}, data})
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// fixtureSecretKey is the serialized "aes" secret-key entry of the JCEKS
// fixture, tag to the end of its SealedObject.
func fixtureSecretKey(t testing.TB) []byte {
	t.Helper()
	data := fixtureBytes(t, jceksFixtureB64)
	i := bytes.Index(data, []byte("\x00\x00\x00\x03\x00\x03aes"))
	if i < 0 {
		t.Fatal("no secret key in the fixture")
	}
	return data[i : len(data)-sha1.Size]
}

func TestJCEKSHandcrafted(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(dir, "ca")
	a, b := ca.Issue("a", testpki.Options{}), ca.Issue("b", testpki.Options{KeyType: testpki.RSA})
	const pass = "s3cret pass"
	salt := []byte("saltsalt")
	protA := jceProtect(t, a.Key, pass, salt, 7)
	protB := jceProtect(t, b.Key, pass, []byte{1, 2, 3, 4, 1, 2, 3, 4}, 3)
	secret := fixtureSecretKey(t)
	withSecret := func(k *ksBuilder) *ksBuilder { k.b = append(k.b, secret...); return k }

	for _, tc := range []struct {
		name string
		data []byte
		pass string // default pass
		want string // serial of the leaf, or an error substring
	}{
		{name: "one key", data: newKS(jceksMagic, 2, 1).key("k", protA, a.Cert.Raw).seal(pass), want: "serial a"},
		{name: "first by alias", data: newKS(jceksMagic, 2, 3).key("zz", protA, a.Cert.Raw).trusted("aa", a.Cert.Raw).key("mm", protB, b.Cert.Raw).seal(pass), want: "serial b"},
		{name: "chain kept", data: newKS(jceksMagic, 2, 1).key("k", protA, a.Cert.Raw, ca.Cert.Raw).seal(pass), want: "serial a"},
		{name: "version 1", data: newKS(jceksMagic, 1, 1).key("k", protA, a.Cert.Raw).seal(pass), want: "serial a"},
		{name: "JKS, JDK key protector", data: newKS(jksMagic, 2, 1).key("k", jdkProtect(t, b.Key, pass), b.Cert.Raw).seal(pass), want: "serial b"},
		{name: "JKS, JCE key protector", data: newKS(jksMagic, 2, 1).key("k", protA, a.Cert.Raw).seal(pass), want: "serial a"},
		{name: "JKS non-ASCII password", pass: "pässwörd", data: newKS(jksMagic, 2, 1).key("k", jdkProtect(t, a.Key, "pässwörd"), a.Cert.Raw).seal("pässwörd"), want: "serial a"},
		{name: "secret keys skipped", data: withSecret(withSecret(newKS(jceksMagic, 2, 4)).trusted("t", ca.Cert.Raw)).key("k", protB, b.Cert.Raw).seal(pass), want: "serial b"},
		{name: "only trusted", data: newKS(jceksMagic, 2, 2).trusted("t", ca.Cert.Raw).trusted("u", a.Cert.Raw).seal(pass), want: "no private key entry (the JCEKS keystore holds 2 trusted certificate(s) and 0 secret key(s))"},
		{name: "only a secret key", data: withSecret(newKS(jceksMagic, 2, 1)).seal(pass), want: "no private key entry (the JCEKS keystore holds 0 trusted certificate(s) and 1 secret key(s))"},
		{name: "empty", data: newKS(jceksMagic, 2, 0).seal(pass), want: "no private key entry"},
		{name: "alias replaced", data: newKS(jceksMagic, 2, 2).key("x", protA, a.Cert.Raw).trusted("x", a.Cert.Raw).seal(pass), want: "no private key entry"},
		{name: "key mismatch", data: newKS(jceksMagic, 2, 1).key("k", protA, b.Cert.Raw).seal(pass), want: `JCEKS entry "k": private key does not match certificate`},
		{name: "no chain", data: newKS(jceksMagic, 2, 1).key("k", protA).seal(pass), want: "private key without a certificate chain"},
		{name: "bad cert", data: newKS(jceksMagic, 2, 1).key("k", protA, []byte("junk")).seal(pass), want: `JCEKS entry "k": certificate 0:`},
		{name: "cert type", data: newKS(jceksMagic, 2, 1).head(2, "t").cert("PGP", a.Cert.Raw).seal(pass), want: `certificate type "PGP" is not X.509`},
		{name: "unknown tag", data: newKS(jceksMagic, 2, 1).head(9, "t").seal(pass), want: "unknown JCEKS entry tag 9"},
		{name: "version 3", data: newKS(jceksMagic, 3, 0).seal(pass), want: "unsupported JCEKS version 3"},
		{name: "JKS secret key", data: withSecret(newKS(jksMagic, 2, 1)).seal(pass), want: "secret-key entry in a JKS keystore"},
		{name: "count too small", data: newKS(jceksMagic, 2, 1).key("k", protA, a.Cert.Raw).trusted("t", a.Cert.Raw).seal(pass), want: "unexpected bytes after the entries"},
		{name: "count too large", data: newKS(jceksMagic, 2, 3).key("k", protA, a.Cert.Raw).seal(pass), want: "malformed JCEKS keystore: truncated"},
		{name: "huge length", data: newKS(jceksMagic, 2, 1).head(1, "k").u32(0xffffffff).seal(pass), want: "malformed JCEKS keystore: truncated"},
		{name: "key password differs", data: newKS(jceksMagic, 2, 1).key("k", jceProtect(t, a.Key, "other", salt, 5), a.Cert.Raw).seal(pass), want: `JCEKS entry "k": wrong password: could not decrypt the private key`},
		{name: "JKS key password differs", data: newKS(jksMagic, 2, 1).key("k", jdkProtect(t, a.Key, "other"), a.Cert.Raw).seal(pass), want: `JKS entry "k": wrong password: could not decrypt the private key`},
		{name: "JCE non-ASCII password", pass: "pässwörd", data: newKS(jceksMagic, 2, 1).key("k", protA, a.Cert.Raw).seal("pässwörd"), want: "outside printable ASCII"},
		{name: "iterations", data: newKS(jceksMagic, 2, 1).key("k", marshalEPKI(t, oidJCEKeyProtector, mustDER(t, pbeParams{salt, maxPBEIterations + 1}), make([]byte, 8)), a.Cert.Raw).seal(pass), want: "iteration count 5000001 out of range"},
		{name: "salt", data: newKS(jceksMagic, 2, 1).key("k", jceProtect(t, a.Key, pass, []byte("salty"), 1), a.Cert.Raw).seal(pass), want: "salt of 5 bytes, want 8"},
		{name: "algorithm", data: newKS(jceksMagic, 2, 1).key("k", marshalEPKI(t, asn1.ObjectIdentifier{1, 2, 3}, asn1.NullBytes, []byte{1}), a.Cert.Raw).seal(pass), want: "unsupported key protection algorithm 1.2.3"},
		{name: "unsupported key", data: newKS(jceksMagic, 2, 1).key("k", jceProtectDER(t, mustDER(t, struct {
			Version int
			Algo    pkix.AlgorithmIdentifier
			Key     []byte
		}{0, pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 10040, 4, 1}}, []byte{2, 1, 1}}), pass, salt, 2), a.Cert.Raw).seal(pass), want: "decrypted private key (1.2.840.10040.4.1): x509:"},
		{name: "not DER", data: newKS(jceksMagic, 2, 1).key("k", []byte{0x30, 0x80}, a.Cert.Raw).seal(pass), want: "malformed encrypted private key"},
		{name: "alias UTF-8", data: newKS(jceksMagic, 2, 1).head(2, "\xc3\xa9t\xc0\x80\xed\xa0\xbd\xed\xb8\x80").cert("X", nil).seal(pass), want: `certificate type "X" is not X.509`},
		{name: "alias not UTF-8", data: newKS(jceksMagic, 2, 1).head(2, "\xff").seal(pass), want: "malformed modified UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.pass == "" {
				tc.pass = pass
			}
			path := writeFile(t, dir, "ks", tc.data)
			c, err := loadKeystore(path, tc.pass)
			got := ""
			switch {
			case err != nil:
				got = err.Error()
				if !strings.HasPrefix(got, "keystore "+path+": ") {
					t.Errorf("error without the path: %v", err)
				}
				if strings.Contains(got, tc.pass) {
					t.Errorf("error shows the password: %v", err)
				}
			case c.Leaf.SerialNumber.Cmp(a.Cert.SerialNumber) == 0:
				got = "serial a"
			case c.Leaf.SerialNumber.Cmp(b.Cert.SerialNumber) == 0:
				got = "serial b"
			}
			if !strings.Contains(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
			if tc.name == "chain kept" && (err != nil || len(c.Certificate) != 2) {
				t.Errorf("chain: %v", err)
			}
		})
	}
}

func TestJCEKSModifiedUTF8(t *testing.T) {
	for in, want := range map[string]string{
		"":                         "",
		"plain":                    "plain",
		"\xc0\x80":                 "\x00",
		"caf\xc3\xa9":              "café",
		"\xe2\x82\xac":             "€",
		"\xed\xa0\xbd\xed\xb8\x80": "😀", // a surrogate pair, three bytes each
		"\xed\xa0\xbd":             "\ufffd",
	} {
		if got, err := decodeModifiedUTF8([]byte(in)); err != nil || got != want {
			t.Errorf("%q: %q, %v", in, got, err)
		}
	}
	for _, in := range []string{"\x80", "\xc3", "\xe2\x82", "\xf0\x9f\x98\x80", "\xc3\x28"} {
		if _, err := decodeModifiedUTF8([]byte(in)); err == nil {
			t.Errorf("%q: accepted", in)
		}
	}
}

func keytoolPath(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("keytool")
	if err != nil {
		t.Skip("keytool (from a JDK) is not on PATH: skipping tests against keystores made by keytool; the embedded fixtures still run")
	}
	return p
}

func keytool(t testing.TB, kt string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, kt, args...)
	cmd.Stdin = strings.NewReader("")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("keytool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// keytoolStore converts leaf to a keystore of storeType via PKCS#12, as
// keytool -importkeystore does it. extra is appended to keytool's arguments.
func keytoolStore(t testing.TB, kt string, l *testpki.Leaf, dir, storeType, pass string, extra ...string) string {
	t.Helper()
	p12 := filepath.Join(dir, "src-"+storeType+".p12")
	l.WritePKCS12(p12, pass)
	dst := filepath.Join(dir, "ks."+strings.ToLower(storeType))
	args := []string{"-importkeystore", "-noprompt",
		"-srckeystore", p12, "-srcstoretype", "PKCS12", "-srcstorepass", pass,
		"-destkeystore", dst, "-deststoretype", storeType, "-deststorepass", pass, "-destkeypass", pass}
	keytool(t, kt, append(args, extra...)...)
	return dst
}

func TestJCEKSKeytool(t *testing.T) {
	kt := keytoolPath(t)
	for _, storeType := range []string{"JCEKS", "JKS"} {
		for _, key := range []struct {
			name string
			kt   testpki.KeyType
		}{{"ECDSA", testpki.ECDSA}, {"RSA", testpki.RSA}, {"Ed25519", testpki.Ed25519}} {
			t.Run(storeType+"/"+key.name, func(t *testing.T) {
				t.Parallel()
				p := newPKI(t)
				o := testpki.Localhost()
				o.Server, o.KeyType = true, key.kt
				leaf := p.ca.Issue("ks-server", o)
				const pass = "keytool-Pass_1"
				path := keytoolStore(t, kt, leaf, p.dir, storeType, pass)
				data, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if want := map[string]uint32{"JCEKS": jceksMagic, "JKS": jksMagic}[storeType]; binary.BigEndian.Uint32(data) != want {
					t.Fatalf("keytool wrote magic %x", data[:4])
				}
				c, err := loadKeystore(path, pass)
				if err != nil {
					t.Fatal(err)
				}
				if !c.Leaf.Equal(leaf.Cert) {
					t.Errorf("leaf %s", c.Leaf.Subject)
				}
				switch k := c.PrivateKey.(type) {
				case *ecdsa.PrivateKey:
					checkTrue(t, k.Equal(leaf.Key), "ECDSA key differs")
				case *rsa.PrivateKey:
					checkTrue(t, k.Equal(leaf.Key), "RSA key differs")
				case ed25519.PrivateKey:
					checkTrue(t, k.Equal(leaf.Key), "Ed25519 key differs")
				default:
					t.Errorf("key %T", k)
				}
				_, err = loadKeystore(path, "keytool-Pass_2")
				if err == nil || err.Error() != wrongPasswordErr(path) {
					t.Errorf("wrong password: %v", err)
				}
			})
		}
	}
}

func checkTrue(t *testing.T, ok bool, msg string) {
	t.Helper()
	if !ok {
		t.Error(msg)
	}
}

// TestJCEKSKeytoolServer serves TLS from keytool-made keystores.
func TestJCEKSKeytoolServer(t *testing.T) {
	kt := keytoolPath(t)
	for _, storeType := range []string{"JCEKS", "JKS"} {
		t.Run(storeType, func(t *testing.T) {
			t.Parallel()
			p := newPKI(t)
			const pass = "server-store-pass"
			path := keytoolStore(t, kt, p.server, p.dir, storeType, pass)
			e := newEcho(t, "tcp", "127.0.0.1:0")
			cfg := p.serverTunnel(e.addr())
			cfg.Cert, cfg.Key = "", ""
			cfg.Keystore, cfg.Storepass = path, configs.Secret(pass)
			tun := start(t, cfg)
			if err := echoOK(tun.Addr().String(), p.clientTLS()); err != nil {
				t.Fatal(err)
			}
			c, err := dialTLS(tun.Addr().String(), p.clientTLS())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			got := c.ConnectionState().PeerCertificates[0].SerialNumber
			if got.Cmp(p.server.Cert.SerialNumber) != 0 {
				t.Errorf("served serial %x, want %x", got, p.server.Cert.SerialNumber)
			}
			if _, err := New(func() configs.Tunnel { c := cfg; c.Storepass = "wrong-pass"; return c }(), Deps{}); err == nil ||
				!strings.Contains(err.Error(), wrongPasswordErr(path)) || strings.Contains(err.Error(), pass) {
				t.Errorf("wrong password: %v", err)
			}
		})
	}
}

func TestJCEKSKeytoolErrors(t *testing.T) {
	kt := keytoolPath(t)
	t.Parallel()
	p := newPKI(t)
	const pass = "errors-pass"

	t.Run("only trusted certs", func(t *testing.T) {
		path := filepath.Join(p.dir, "trusted.jceks")
		keytool(t, kt, "-importcert", "-noprompt", "-alias", "ca", "-file", p.ca.CAFile,
			"-keystore", path, "-storetype", "JCEKS", "-storepass", pass)
		_, err := loadKeystore(path, pass)
		if err == nil || !strings.HasPrefix(err.Error(), "keystore "+path+": no private key entry") {
			t.Errorf("%v", err)
		}
	})
	t.Run("key password is not the store password", func(t *testing.T) {
		dir := t.TempDir()
		path := keytoolStore(t, kt, p.server, dir, "JCEKS", pass)
		// Re-protect the key under another password.
		keytool(t, kt, "-keypasswd", "-alias", "1", "-keypass", pass, "-new", "other-key-pass",
			"-keystore", path, "-storetype", "JCEKS", "-storepass", pass)
		_, err := loadKeystore(path, pass)
		if err == nil || !strings.Contains(err.Error(), "wrong password: could not decrypt the private key") ||
			strings.Contains(err.Error(), "other-key-pass") {
			t.Errorf("%v", err)
		}
	})
	t.Run("truncated", func(t *testing.T) {
		path := keytoolStore(t, kt, p.client, t.TempDir(), "JCEKS", pass)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []int{len(data) - 1, len(data) - 21, len(data) / 2, 40, 12} {
			if err := os.WriteFile(path, data[:n], 0o600); err != nil {
				t.Fatal(err)
			}
			want := wrongPasswordErr(path)
			if n < 32 {
				want = "keystore " + path + ": truncated Java keystore"
			}
			if _, err := loadKeystore(path, pass); err == nil || err.Error() != want {
				t.Errorf("%d bytes: %v", n, err)
			}
		}
	})
}

// FuzzJCEKS: no input panics or hangs. Each input is tried as is, which
// mostly stops at the integrity digest, and again with its last 20 bytes
// replaced by the right digest, so the parser and the key recovery see it.
func FuzzJCEKS(f *testing.F) {
	const pass = fixturePass
	f.Add(fixtureBytes(f, jceksFixtureB64))
	f.Add(fixtureBytes(f, jksFixtureB64))
	f.Add([]byte{0xce, 0xce, 0xce, 0xce})
	f.Add(sealKS([]byte{0xce, 0xce, 0xce, 0xce, 0, 0, 0, 2, 0, 0, 0, 0}, pass))
	f.Add(sealKS([]byte{0xfe, 0xed, 0xfe, 0xed, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2}, pass))
	f.Add(sealKS([]byte{0xce, 0xce, 0xce, 0xce, 0, 0, 0, 2, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 3, 0, 0, 0xac, 0xed, 0, 5, 0x71}, pass))

	ca := testpki.NewCA(f.TempDir(), "ca")
	l := ca.Issue("leaf", testpki.Options{})
	f.Add(newKS(jceksMagic, 2, 2).key("k", jceProtect(f, l.Key, pass, []byte("fuzzsalt"), 1), l.Cert.Raw, ca.Cert.Raw).trusted("ca", ca.Cert.Raw).seal(pass))
	f.Add(newKS(jksMagic, 1, 1).key("k", jdkProtect(f, l.Key, pass), l.Cert.Raw).seal(pass))
	secret := fixtureSecretKey(f)
	f.Add(sealKS(append(newKS(jceksMagic, 2, 2).b, secret...), pass))
	if kt, err := exec.LookPath("keytool"); err == nil {
		dir := f.TempDir()
		path := keytoolStore(f, kt, l, dir, "JCEKS", pass, "-J-Djdk.jceks.iterationCount=10000")
		if data, err := os.ReadFile(path); err == nil {
			f.Add(data)
		}
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		isJavaKeystore(data)
		for _, d := range [][]byte{data, resealed(data, pass)} {
			if d == nil {
				continue
			}
			// A low iteration bound keeps executions fast: the fixtures
			// (10000 iterations) stop before the KDF, the handcrafted
			// seeds (1 iteration) reach decryption and PKCS#8 parsing.
			c, err := decodeJavaKeystore(d, pass, 16)
			if err == nil && (c.Leaf == nil || checkKeyMatches(c) != nil) {
				t.Fatal("decoded a certificate without a matching key")
			}
		}
		parseJavaKeystore(data)
	})
}

func resealed(data []byte, pass string) []byte {
	if len(data) < 12+sha1.Size {
		return nil
	}
	return sealKS(data[:len(data)-sha1.Size], pass)
}

// TestJCEKSWrongKeyPasswordAlwaysSaysSo: a wrong key password passes the
// PKCS#5 padding check about once in 256 salts; it must still be reported
// as a wrong password, not as an odd parse error.
func TestJCEKSWrongKeyPasswordAlwaysSaysSo(t *testing.T) {
	// A fixed PKCS#8-shaped plaintext keeps the count below deterministic.
	plain := mustDER(t, struct {
		Version int
		Algo    pkix.AlgorithmIdentifier
		Key     []byte
	}{0, pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}}, bytes.Repeat([]byte{7}, 40)})
	paddingPassed := 0
	for i := range 3000 {
		salt := binary.BigEndian.AppendUint64(nil, uint64(i)*0x9e3779b97f4a7c15)
		prot := jceProtectDER(t, plain, "right-pass", salt, 1)
		_, err := recoverJavaKey(prot, "wrong-pass", 10)
		if err != errJavaKeyPassword {
			t.Fatalf("salt %x: %v", salt, err)
		}
		var info struct {
			Algo pkix.AlgorithmIdentifier
			Data []byte
		}
		asn1.Unmarshal(prot, &info)
		if decryptPBEWithMD5AndTripleDES(info.Data, []byte("wrong-pass"), salt, 1) != nil {
			paddingPassed++
		}
	}
	if paddingPassed == 0 {
		t.Error("no salt exercised a wrong password with valid padding")
	}
	t.Logf("%d of 3000 wrong-password decryptions had valid padding", paddingPassed)
}
