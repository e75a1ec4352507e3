package tunnel

// Java keystores: JCEKS (com.sun.crypto.provider.JceKeyStore) and JKS
// (sun.security.provider.JavaKeyStore), as written by keytool. Both share one
// layout, big-endian throughout:
//
//	magic u32 (0xCECECECE JCEKS, 0xFEEDFEED JKS), version u32 (1 or 2), count u32
//	count entries, each: tag u32, alias (Java modified UTF-8), date i64, then
//	  tag 1, private key: u32 length + EncryptedPrivateKeyInfo DER,
//	         chain count u32, each cert: [type UTF if version 2] u32 length + DER
//	  tag 2, trusted cert: [type UTF if version 2] u32 length + DER
//	  tag 3, secret key (JCEKS only): a Java-serialized SealedObject
//	SHA-1(password as UTF-16BE || "Mighty Aphrodite" || all the bytes above)
//
// The integrity digest is checked before anything else is parsed, so the
// parser only ever sees bytes that whoever knows the password wrote. Private
// keys are protected with Sun's PBEWithMD5AndTripleDES (OID
// 1.3.6.1.4.1.42.2.19.1, what JCEKS writes) or with the JDK 1.2 SHA-1 XOR
// scheme (OID 1.3.6.1.4.1.42.2.17.1.1, what JKS writes); both are read. As
// with upstream Ghostunnel, the key password is the store password.

import (
	"bytes"
	"crypto/cipher"
	"crypto/des"
	"crypto/md5"
	"crypto/sha1"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf16"
)

const (
	jceksMagic = 0xCECECECE
	jksMagic   = 0xFEEDFEED

	// jksIntegrityTag is hashed after the password to key the digest.
	jksIntegrityTag = "Mighty Aphrodite"

	// maxPBEIterations is the JDK's own bound (KeyProtector.MAX_ITERATION_COUNT).
	maxPBEIterations = 5_000_000

	// maxSerialDepth bounds the nesting of a skipped serialized secret key.
	maxSerialDepth = 32
)

var (
	oidJCEKeyProtector = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 42, 2, 19, 1}    // PBEWithMD5AndTripleDES
	oidJDKKeyProtector = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 42, 2, 17, 1, 1} // JDK 1.2 SHA-1 XOR

	errJavaKeystoreIntegrity = errors.New("wrong password or corrupted keystore")
	errJavaKeyPassword       = errors.New("wrong password: could not decrypt the private key (the key password must be the store password)")
)

// isJavaKeystore reports whether data starts like a JCEKS or JKS keystore.
func isJavaKeystore(data []byte) bool {
	if len(data) < 4 {
		return false
	}
	m := binary.BigEndian.Uint32(data)
	return m == jceksMagic || m == jksMagic
}

// loadJavaKeystore decodes a JCEKS or JKS keystore into the certificate of
// its first private-key entry by alias. Errors never include the password.
func loadJavaKeystore(path string, data []byte, pass string) (*tls.Certificate, error) {
	cert, err := decodeJavaKeystore(data, pass, maxPBEIterations)
	if err != nil {
		return nil, fmt.Errorf("keystore %s: %w", path, err)
	}
	return cert, nil
}

type javaKeyEntry struct {
	alias     string
	protected []byte   // EncryptedPrivateKeyInfo DER
	chain     [][]byte // certificate DER, leaf first
}

type javaKeystore struct {
	kind       string // "JCEKS" or "JKS"
	keys       []javaKeyEntry
	trusted    int
	secretKeys int
}

func decodeJavaKeystore(data []byte, pass string, maxIter int) (*tls.Certificate, error) {
	body, err := verifyJavaKeystore(data, pass)
	if err != nil {
		return nil, err
	}
	ks, err := parseJavaKeystore(body)
	if err != nil {
		return nil, err
	}
	if len(ks.keys) == 0 {
		return nil, fmt.Errorf("no private key entry (the %s keystore holds %d trusted certificate(s) and %d secret key(s))",
			ks.kind, ks.trusted, ks.secretKeys)
	}
	e := ks.keys[0]
	if len(e.chain) == 0 {
		return nil, fmt.Errorf("%s entry %q: private key without a certificate chain", ks.kind, e.alias)
	}
	cert := &tls.Certificate{}
	for i, der := range e.chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("%s entry %q: certificate %d: %w", ks.kind, e.alias, i, err)
		}
		if i == 0 {
			cert.Leaf = c
		}
		cert.Certificate = append(cert.Certificate, der)
	}
	// The chain first: it is cheap, the key derivation is not.
	if cert.PrivateKey, err = recoverJavaKey(e.protected, pass, maxIter); err != nil {
		return nil, fmt.Errorf("%s entry %q: %w", ks.kind, e.alias, err)
	}
	if err := checkKeyMatches(cert); err != nil {
		return nil, fmt.Errorf("%s entry %q: %w", ks.kind, e.alias, err)
	}
	return cert, nil
}

// verifyJavaKeystore checks the trailing keyed SHA-1 and returns the bytes
// it covers. keytool writes nothing after the digest.
func verifyJavaKeystore(data []byte, pass string) ([]byte, error) {
	if len(data) < 12+sha1.Size {
		return nil, errors.New("truncated Java keystore")
	}
	body, sum := data[:len(data)-sha1.Size], data[len(data)-sha1.Size:]
	h := sha1.New()
	h.Write(utf16BE(pass))
	h.Write([]byte(jksIntegrityTag))
	h.Write(body)
	if subtle.ConstantTimeCompare(h.Sum(nil), sum) != 1 {
		return nil, errJavaKeystoreIntegrity
	}
	return body, nil
}

// utf16BE is a password as Java's char[] bytes: UTF-16 code units, big-endian.
func utf16BE(s string) []byte {
	units := utf16.Encode([]rune(s))
	b := make([]byte, 0, 2*len(units))
	for _, u := range units {
		b = binary.BigEndian.AppendUint16(b, u)
	}
	return b
}

// parseJavaKeystore reads the entries of an integrity-checked body. Private
// keys come back sorted by alias; a later entry replaces an earlier one of
// the same alias, as in the JDK.
func parseJavaKeystore(body []byte) (*javaKeystore, error) {
	r := &ksReader{b: body}
	magic, version := r.u32(), r.u32()
	ks := &javaKeystore{kind: "JCEKS"}
	switch {
	case r.err != nil:
		return nil, r.err
	case magic == jksMagic:
		ks.kind = "JKS"
	case magic != jceksMagic:
		return nil, fmt.Errorf("not a Java keystore (magic %#08x)", magic)
	}
	if version != 1 && version != 2 {
		return nil, fmt.Errorf("unsupported %s version %d", ks.kind, version)
	}
	count := r.u32()
	type slot struct {
		tag uint32
		key javaKeyEntry
	}
	byAlias := map[string]slot{}
	for i := uint32(0); i < count && r.err == nil; i++ {
		tag := r.u32()
		alias := r.utf()
		r.next(8) // creation date
		if r.err != nil {
			break
		}
		s := slot{tag: tag}
		switch tag {
		case 1:
			s.key = javaKeyEntry{alias: alias, protected: r.next(int(r.u32()))}
			n := r.u32()
			for j := uint32(0); j < n && r.err == nil; j++ {
				s.key.chain = append(s.key.chain, r.cert(version))
			}
		case 2:
			r.cert(version)
		case 3:
			if ks.kind != "JCEKS" {
				return nil, fmt.Errorf("entry %d: secret-key entry in a JKS keystore", i)
			}
			if err := skipSerialized(r); err != nil {
				return nil, fmt.Errorf("%s entry %q: unreadable secret key: %w", ks.kind, alias, err)
			}
		default:
			return nil, fmt.Errorf("entry %d: unknown %s entry tag %d", i, ks.kind, tag)
		}
		if r.err == nil {
			byAlias[alias] = s
		}
	}
	if r.err != nil {
		return nil, fmt.Errorf("malformed %s keystore: %w", ks.kind, r.err)
	}
	if r.off != len(body) {
		return nil, fmt.Errorf("malformed %s keystore: %d unexpected bytes after the entries", ks.kind, len(body)-r.off)
	}
	for _, s := range byAlias {
		switch s.tag {
		case 1:
			ks.keys = append(ks.keys, s.key)
		case 2:
			ks.trusted++
		case 3:
			ks.secretKeys++
		}
	}
	slices.SortFunc(ks.keys, func(a, b javaKeyEntry) int { return strings.Compare(a.alias, b.alias) })
	return ks, nil
}

// ksReader reads big-endian fields; the first error sticks and every later
// read returns zero values.
type ksReader struct {
	b   []byte
	off int
	err error
}

var errKSTruncated = errors.New("truncated")

func (r *ksReader) next(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b)-r.off {
		r.err = errKSTruncated
		return nil
	}
	b := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return b
}

func (r *ksReader) u8() byte {
	if b := r.next(1); b != nil {
		return b[0]
	}
	return 0
}

func (r *ksReader) u16() uint16 {
	if b := r.next(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (r *ksReader) u32() uint32 {
	if b := r.next(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (r *ksReader) peek() byte {
	if r.err == nil && r.off < len(r.b) {
		return r.b[r.off]
	}
	return 0
}

// utf reads a DataOutput.writeUTF string: u16 length, Java modified UTF-8.
func (r *ksReader) utf() string {
	b := r.next(int(r.u16()))
	if r.err != nil {
		return ""
	}
	s, err := decodeModifiedUTF8(b)
	if err != nil {
		r.err = err
	}
	return s
}

// cert reads one certificate of a version 1 (X.509 implied) or version 2
// (type named) keystore.
func (r *ksReader) cert(version uint32) []byte {
	if version == 2 {
		if t := r.utf(); r.err == nil && t != "X.509" {
			r.err = fmt.Errorf("certificate type %q is not X.509", t)
		}
	}
	return r.next(int(r.u32()))
}

// decodeModifiedUTF8 decodes as DataInputStream.readUTF does.
func decodeModifiedUTF8(b []byte) (string, error) {
	units := make([]uint16, 0, len(b))
	for i := 0; i < len(b); {
		c := b[i]
		switch {
		case c < 0x80:
			units = append(units, uint16(c))
			i++
		case c>>5 == 0x6 && i+1 < len(b) && b[i+1]>>6 == 2:
			units = append(units, uint16(c&0x1f)<<6|uint16(b[i+1]&0x3f))
			i += 2
		case c>>4 == 0xe && i+2 < len(b) && b[i+1]>>6 == 2 && b[i+2]>>6 == 2:
			units = append(units, uint16(c&0x0f)<<12|uint16(b[i+1]&0x3f)<<6|uint16(b[i+2]&0x3f))
			i += 3
		default:
			return "", errors.New("malformed modified UTF-8 string")
		}
	}
	return string(utf16.Decode(units)), nil
}

// Java object serialization, just enough to step over a secret-key entry
// (a SealedObject) to the entries after it. Nothing is interpreted.
const (
	tcNull           = 0x70
	tcReference      = 0x71
	tcClassDesc      = 0x72
	tcObject         = 0x73
	tcString         = 0x74
	tcArray          = 0x75
	tcClass          = 0x76
	tcBlockData      = 0x77
	tcEndBlockData   = 0x78
	tcReset          = 0x79
	tcBlockDataLong  = 0x7a
	tcLongString     = 0x7c
	tcProxyClassDesc = 0x7d
	tcEnum           = 0x7e

	scWriteMethod    = 0x01
	scSerializable   = 0x02
	scExternalizable = 0x04
	scBlockData      = 0x08

	baseWireHandle = 0x7e0000
)

type serialClass struct {
	name   string
	flags  byte
	fields []byte // type codes, in stream order
	super  *serialClass
}

type serialSkipper struct {
	r       *ksReader
	handles []*serialClass // nil for handles that are not class descriptors
	depth   int
}

// skipSerialized steps over one ObjectOutputStream: header, one object.
func skipSerialized(r *ksReader) error {
	if r.u16() != 0xaced || r.u16() != 5 {
		if r.err != nil {
			return r.err
		}
		return errors.New("not a Java serialization stream")
	}
	s := &serialSkipper{r: r}
	if _, err := s.content(); err != nil {
		return err
	}
	return r.err
}

func (s *serialSkipper) newHandle(c *serialClass) {
	s.handles = append(s.handles, c)
}

// content reads one object and returns it if it is a class descriptor.
func (s *serialSkipper) content() (*serialClass, error) {
	if s.depth++; s.depth > maxSerialDepth {
		return nil, errors.New("serialized data nested too deeply")
	}
	defer func() { s.depth-- }()
	r := s.r
	tc := r.u8()
	if r.err != nil {
		return nil, r.err
	}
	switch tc {
	case tcNull:
		return nil, nil
	case tcReference:
		h := int64(r.u32()) - baseWireHandle
		if r.err != nil {
			return nil, r.err
		}
		if h < 0 || h >= int64(len(s.handles)) {
			return nil, errors.New("bad back-reference")
		}
		return s.handles[h], nil
	case tcClassDesc:
		c := &serialClass{name: r.utf()}
		r.next(8) // serialVersionUID
		s.newHandle(c)
		c.flags = r.u8()
		n := int(r.u16())
		for i := 0; i < n && r.err == nil; i++ {
			code := r.u8()
			r.utf() // field name
			switch code {
			case 'B', 'C', 'D', 'F', 'I', 'J', 'S', 'Z':
			case '[', 'L':
				if _, err := s.content(); err != nil { // the field's class name
					return nil, err
				}
			default:
				if r.err == nil {
					return nil, fmt.Errorf("bad field type code %#x", code)
				}
			}
			c.fields = append(c.fields, code)
		}
		if err := s.annotation(); err != nil {
			return nil, err
		}
		var err error
		c.super, err = s.content()
		return c, err
	case tcProxyClassDesc:
		c := &serialClass{flags: scSerializable}
		s.newHandle(c)
		n := r.u32()
		for i := uint32(0); i < n && r.err == nil; i++ {
			r.utf()
		}
		if err := s.annotation(); err != nil {
			return nil, err
		}
		var err error
		c.super, err = s.content()
		return c, err
	case tcString:
		s.newHandle(nil)
		r.next(int(r.u16()))
	case tcLongString:
		s.newHandle(nil)
		var n uint64
		if b := r.next(8); b != nil {
			n = binary.BigEndian.Uint64(b)
		}
		if n > uint64(len(r.b)-r.off) {
			return nil, errKSTruncated
		}
		r.next(int(n))
	case tcClass:
		if _, err := s.content(); err != nil {
			return nil, err
		}
		s.newHandle(nil)
	case tcEnum:
		if _, err := s.content(); err != nil {
			return nil, err
		}
		s.newHandle(nil)
		if _, err := s.content(); err != nil {
			return nil, err
		}
	case tcArray:
		c, err := s.content()
		if err != nil {
			return nil, err
		}
		if c == nil || len(c.name) < 2 || c.name[0] != '[' {
			return nil, errors.New("array without an array class")
		}
		s.newHandle(nil)
		n := int(r.u32())
		if r.err != nil || n < 0 || n > len(r.b)-r.off {
			return nil, errKSTruncated
		}
		if size := primitiveSize(c.name[1]); size > 0 {
			if n > (len(r.b)-r.off)/size {
				return nil, errKSTruncated
			}
			r.next(n * size)
		} else {
			for i := 0; i < n && r.err == nil; i++ {
				if _, err := s.content(); err != nil {
					return nil, err
				}
			}
		}
	case tcObject:
		c, err := s.content()
		if err != nil {
			return nil, err
		}
		if c == nil {
			return nil, errors.New("object without a class")
		}
		s.newHandle(nil)
		if c.flags&scExternalizable != 0 {
			if c.flags&scBlockData == 0 {
				return nil, errors.New("old-style externalizable data")
			}
			return nil, s.annotation()
		}
		var chain []*serialClass
		for k := c; k != nil; k = k.super {
			if len(chain) > maxSerialDepth {
				return nil, errors.New("class hierarchy too deep")
			}
			chain = append(chain, k)
		}
		for i := len(chain) - 1; i >= 0; i-- {
			k := chain[i]
			if k.flags&scSerializable == 0 {
				continue
			}
			for _, code := range k.fields {
				if size := primitiveSize(code); size > 0 {
					r.next(size)
				} else if _, err := s.content(); err != nil {
					return nil, err
				}
			}
			if k.flags&scWriteMethod != 0 {
				if err := s.annotation(); err != nil {
					return nil, err
				}
			}
		}
	case tcReset:
		s.handles = s.handles[:0]
		return s.content()
	default:
		return nil, fmt.Errorf("unsupported serialization type code %#x", tc)
	}
	return nil, r.err
}

// annotation reads block data and objects up to TC_ENDBLOCKDATA.
func (s *serialSkipper) annotation() error {
	r := s.r
	for r.err == nil {
		switch r.peek() {
		case tcEndBlockData:
			r.u8()
			return nil
		case tcBlockData:
			r.u8()
			r.next(int(r.u8()))
		case tcBlockDataLong:
			r.u8()
			r.next(int(int32(r.u32())))
		default:
			if _, err := s.content(); err != nil {
				return err
			}
		}
	}
	return r.err
}

func primitiveSize(code byte) int {
	switch code {
	case 'B', 'Z':
		return 1
	case 'C', 'S':
		return 2
	case 'F', 'I':
		return 4
	case 'D', 'J':
		return 8
	}
	return 0
}

// recoverJavaKey decrypts a private-key entry's EncryptedPrivateKeyInfo.
func recoverJavaKey(protected []byte, pass string, maxIter int) (any, error) {
	var info struct {
		Algo pkix.AlgorithmIdentifier
		Data []byte
	}
	if rest, err := asn1.Unmarshal(protected, &info); err != nil || len(rest) != 0 {
		return nil, errors.New("malformed encrypted private key")
	}
	var plain []byte
	switch {
	case info.Algo.Algorithm.Equal(oidJCEKeyProtector):
		var params struct {
			Salt       []byte
			Iterations int
		}
		if rest, err := asn1.Unmarshal(info.Algo.Parameters.FullBytes, &params); err != nil || len(rest) != 0 {
			return nil, errors.New("malformed PBEWithMD5AndTripleDES parameters")
		}
		if len(params.Salt) != 8 {
			return nil, fmt.Errorf("PBEWithMD5AndTripleDES salt of %d bytes, want 8", len(params.Salt))
		}
		if params.Iterations < 1 || params.Iterations > maxIter {
			return nil, fmt.Errorf("PBEWithMD5AndTripleDES iteration count %d out of range 1..%d", params.Iterations, maxIter)
		}
		pw, ok := pbePassword(pass)
		if !ok {
			// Java refuses such a password for this cipher, so it cannot
			// be the one the key was protected with.
			return nil, fmt.Errorf("%w; the password has characters outside printable ASCII, which PBEWithMD5AndTripleDES cannot use", errJavaKeyPassword)
		}
		plain = decryptPBEWithMD5AndTripleDES(info.Data, pw, params.Salt, params.Iterations)
	case info.Algo.Algorithm.Equal(oidJDKKeyProtector):
		plain = recoverJDKKeyProtector(info.Data, utf16BE(pass))
	default:
		return nil, fmt.Errorf("unsupported key protection algorithm %v", info.Algo.Algorithm)
	}
	if plain == nil {
		return nil, errJavaKeyPassword
	}
	defer clear(plain)
	// A wrong password still passes the PKCS#5 padding check about once in
	// 256 tries; output that is not even shaped like PKCS#8 is that.
	var shape struct {
		Version int
		Algo    pkix.AlgorithmIdentifier
		Key     []byte
	}
	if rest, err := asn1.Unmarshal(plain, &shape); err != nil || len(rest) != 0 {
		return nil, errJavaKeyPassword
	}
	key, err := x509.ParsePKCS8PrivateKey(plain)
	if err != nil {
		return nil, fmt.Errorf("decrypted private key (%v): %w", shape.Algo.Algorithm, err)
	}
	return key, nil
}

// pbePassword is the password as Sun's PBEKey encodes it: one byte per
// char, printable ASCII only.
func pbePassword(pass string) ([]byte, bool) {
	for i := 0; i < len(pass); i++ {
		if pass[i] < 0x20 || pass[i] > 0x7e {
			return nil, false
		}
	}
	return []byte(pass), true
}

// pbeMD5TripleDESKey derives the 3DES key and CBC IV of Sun's
// PBEWithMD5AndTripleDES (com.sun.crypto.provider.PBES1Core): each 4-byte
// salt half is hashed as MD5(half || password), then iterations-1 more
// times as MD5(previous || password); the two 16-byte results give the
// 24-byte key and the 8-byte IV. When the halves are equal the first half
// is reversed first: that is what JDK 8 and later do (checked against Java
// 17 and 25); JCE 1.2's "salt[3-1]" typo is gone.
func pbeMD5TripleDESKey(pw, salt []byte, iterations int) (key, iv []byte) {
	s := slices.Clone(salt)
	if bytes.Equal(s[:4], s[4:]) {
		slices.Reverse(s[:4])
	}
	out := make([]byte, 0, 2*md5.Size)
	h := md5.New()
	for half := range 2 {
		d := s[half*4 : half*4+4]
		for range iterations {
			h.Reset()
			h.Write(d)
			h.Write(pw)
			d = h.Sum(nil)
		}
		out = append(out, d...)
	}
	return out[:24], out[24:]
}

// decryptPBEWithMD5AndTripleDES returns nil when the ciphertext or its
// padding is wrong, which is what a wrong password looks like.
func decryptPBEWithMD5AndTripleDES(ct, pw, salt []byte, iterations int) []byte {
	if len(ct) == 0 || len(ct)%des.BlockSize != 0 {
		return nil
	}
	key, iv := pbeMD5TripleDESKey(pw, salt, iterations)
	block, err := des.NewTripleDESCipher(key)
	if err != nil {
		return nil
	}
	plain := make([]byte, len(ct))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(plain, ct)
	n := int(plain[len(plain)-1])
	if n < 1 || n > des.BlockSize {
		return nil
	}
	for _, p := range plain[len(plain)-n:] {
		if int(p) != n {
			return nil
		}
	}
	return plain[:len(plain)-n]
}

// recoverJDKKeyProtector undoes sun.security.provider.KeyProtector (JKS):
// data is salt(20) || key XOR stream || SHA-1(password || key), the stream
// being SHA-1(password || salt), then SHA-1(password || previous), ...
// Returns nil when the check digest does not match.
func recoverJDKKeyProtector(data, pw []byte) []byte {
	const saltLen, digestLen = 20, sha1.Size
	if len(data) < saltLen+digestLen {
		return nil
	}
	salt, enc, check := data[:saltLen], data[saltLen:len(data)-digestLen], data[len(data)-digestLen:]
	plain := make([]byte, len(enc))
	h := sha1.New()
	d := salt
	for off := 0; off < len(enc); off += digestLen {
		h.Reset()
		h.Write(pw)
		h.Write(d)
		d = h.Sum(nil)
		subtle.XORBytes(plain[off:], enc[off:], d)
	}
	h.Reset()
	h.Write(pw)
	h.Write(plain)
	if subtle.ConstantTimeCompare(h.Sum(nil), check) != 1 {
		return nil
	}
	return plain
}
