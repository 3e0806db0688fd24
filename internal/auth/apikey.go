package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"math/big"
	"strings"
)

// An API key is APIKeyPrefix followed by 43 base62 characters: 256 bits
// from crypto/rand. Keys that random need no salt or slow hash: a
// SHA-256 of the key is stored, and guessing a key stays as hard as
// guessing 256 random bits.
const (
	apiKeyBytes   = 32
	apiKeyEncoded = 43 // ceil(256 / log2(62))
	base62        = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)

// NewAPIKey returns a fresh key, the id it is listed and revoked by, and
// the hash to store. Only the hash is kept; the key is shown once.
func NewAPIKey() (key, id string, hash []byte) {
	var b [apiKeyBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	n := new(big.Int).SetBytes(b[:])
	enc := make([]byte, apiKeyEncoded)
	base := big.NewInt(62)
	mod := new(big.Int)
	for i := apiKeyEncoded - 1; i >= 0; i-- {
		n.DivMod(n, base, mod)
		enc[i] = base62[mod.Int64()]
	}
	key = APIKeyPrefix + string(enc)
	var idb [8]byte
	if _, err := rand.Read(idb[:]); err != nil {
		panic(err)
	}
	return key, "key_" + hex.EncodeToString(idb[:]), HashAPIKey(key)
}

// HashAPIKey is what the store keeps of key.
func HashAPIKey(key string) []byte {
	h := sha256.Sum256([]byte(key))
	return h[:]
}

// wellFormedAPIKey checks a key's shape before any lookup, so that a
// typo gets a precise message and garbage costs no database query.
func wellFormedAPIKey(key string) bool {
	if !strings.HasPrefix(key, APIKeyPrefix) || len(key) != len(APIKeyPrefix)+apiKeyEncoded {
		return false
	}
	for _, c := range key[len(APIKeyPrefix):] {
		if !strings.ContainsRune(base62, c) {
			return false
		}
	}
	return true
}

// hashesEqual compares two hashes in constant time.
func hashesEqual(a, b []byte) bool {
	return len(a) == len(b) && subtle.ConstantTimeCompare(a, b) == 1
}

// IsKeyID reports whether s has the form of an API key id.
func IsKeyID(s string) bool {
	if !strings.HasPrefix(s, "key_") || len(s) != 4+16 {
		return false
	}
	_, err := hex.DecodeString(s[4:])
	return err == nil
}
