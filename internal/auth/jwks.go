package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
)

// jwk is the part of a JSON Web Key (RFC 7517, 7518, 8037) porthole uses.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Crv string `json:"crv"`
	N   string `json:"n"`
	E   string `json:"e"`
	X   string `json:"x"`
	Y   string `json:"y"`
	D   string `json:"d"`
}

// Bounds on a JWK Set: an issuer publishes a handful of keys of a few
// hundred bytes each, so a larger set is a mistake (or not a key set),
// and an RSA modulus past maxRSABits would make every token check slow.
const (
	maxJWKSBytes = 1 << 20
	maxJWKSKeys  = 100
	maxRSABits   = 16384
)

// parseJWKS reads the public keys of a JWK Set, by kid. Keys for
// encryption (use "enc") are skipped; a private key is refused, since a
// verifier has no business holding one.
func parseJWKS(data []byte) (map[string]crypto.PublicKey, error) {
	if len(data) > maxJWKSBytes {
		return nil, fmt.Errorf("the JWK set is larger than %d KiB", maxJWKSBytes>>10)
	}
	var set struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("not a JWK set: %w", err)
	}
	if len(set.Keys) > maxJWKSKeys {
		return nil, fmt.Errorf("the JWK set holds %d keys, more than %d", len(set.Keys), maxJWKSKeys)
	}
	out := map[string]crypto.PublicKey{}
	for i, k := range set.Keys {
		if k.Use == "enc" {
			continue
		}
		if k.D != "" {
			return nil, fmt.Errorf("key %d (%q) is a private key; publish only public keys", i, k.Kid)
		}
		pub, err := k.public()
		if err != nil {
			return nil, fmt.Errorf("key %d (%q): %w", i, k.Kid, err)
		}
		if _, dup := out[k.Kid]; dup {
			return nil, fmt.Errorf("key id %q appears twice", k.Kid)
		}
		out[k.Kid] = pub
	}
	if len(out) == 0 {
		return nil, errors.New("no signing keys in the set")
	}
	return out, nil
}

func b64(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }

func (k jwk) public() (crypto.PublicKey, error) {
	switch k.Kty {
	case "RSA":
		n, err1 := b64(k.N)
		e, err2 := b64(k.E)
		if err1 != nil || err2 != nil || len(n) == 0 || len(e) == 0 || len(e) > 4 {
			return nil, errors.New("bad RSA n or e")
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		if pub.E < 3 || pub.E%2 == 0 {
			return nil, fmt.Errorf("RSA exponent %d is not a valid public exponent", pub.E)
		}
		if pub.N.BitLen() < 2048 {
			return nil, fmt.Errorf("RSA key of %d bits is too short (at least 2048)", pub.N.BitLen())
		}
		if pub.N.BitLen() > maxRSABits {
			return nil, fmt.Errorf("RSA key of %d bits is too long (at most %d)", pub.N.BitLen(), maxRSABits)
		}
		return pub, nil
	case "EC":
		var curve elliptic.Curve
		switch k.Crv {
		case "P-256":
			curve = elliptic.P256()
		case "P-384":
			curve = elliptic.P384()
		case "P-521":
			curve = elliptic.P521()
		default:
			return nil, fmt.Errorf("unsupported curve %q", k.Crv)
		}
		x, err1 := b64(k.X)
		y, err2 := b64(k.Y)
		if err1 != nil || err2 != nil {
			return nil, errors.New("bad EC x or y")
		}
		size := (curve.Params().BitSize + 7) / 8
		if len(x) != size || len(y) != size {
			return nil, errors.New("bad EC point size")
		}
		// Parse through the uncompressed encoding so that a point off the
		// curve is refused.
		raw := append(append([]byte{4}, x...), y...)
		pub, err := ecdsa.ParseUncompressedPublicKey(curve, raw)
		if err != nil {
			return nil, fmt.Errorf("bad EC point: %w", err)
		}
		return pub, nil
	case "OKP":
		if k.Crv != "Ed25519" {
			return nil, fmt.Errorf("unsupported OKP curve %q", k.Crv)
		}
		x, err := b64(k.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return nil, errors.New("bad Ed25519 x")
		}
		return ed25519.PublicKey(x), nil
	}
	return nil, fmt.Errorf("unsupported key type %q", k.Kty)
}
