package server

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/argon2"
)

// Basic-auth passwords are kept only as argon2id digests. argon2id rather
// than bcrypt: it takes the salt as a parameter, so one salt for the
// process makes equal entries give equal digests, and then
//   - a presented credential is hashed once and compared with every
//     entry (bcrypt salts each hash, and would need one hash per entry),
//   - pool members' rules compare by digest, at no cost under the claim
//     lock, and no fast digest of a configured password is ever kept,
//   - there is no 72-byte limit on USER:PASSWORD.
//
// The salt is random per process: a digest is useless to another server,
// and precomputed tables are useless against it.
var credSalt = func() (b [16]byte) {
	rand.Read(b[:])
	return
}()

// credMAC keys the verification cache's digests of presented
// credentials.
var credMAC = func() (b [32]byte) {
	rand.Read(b[:])
	return
}()

// argon2id cost, from the OWASP password storage recommendations
// (m=7 MiB, t=5, p=1): about 25 ms and 7 MiB per hash on a current core.
// Variables so that the fuzz target can make hashing cheap.
var (
	argonTime   uint32 = 5
	argonMemory uint32 = 7 * 1024 // KiB
)

// hashSlots bounds the hashes computed at once, server-wide: wrong
// passwords sprayed from many addresses can then take at most half the
// CPUs (and hashSlots × 7 MiB of memory); waiting requests give up when
// their visitor leaves.
var hashSlots = make(chan struct{}, max(1, runtime.GOMAXPROCS(0)/2))

type credDigest [32]byte

// credHashes counts argon2id hashes computed (tests check the cache).
var credHashes atomic.Int64

// hashCred returns the argon2id digest of a USER:PASSWORD credential.
func hashCred(ctx context.Context, cred string) (credDigest, error) {
	var d credDigest
	select {
	case hashSlots <- struct{}{}:
	case <-ctx.Done():
		return d, ctx.Err()
	}
	defer func() { <-hashSlots }()
	credHashes.Add(1)
	copy(d[:], argon2.IDKey([]byte(cred), credSalt[:], argonTime, argonMemory, 1, uint32(len(d))))
	return d, nil
}

// credCache remembers credentials that passed, so that a visitor's every
// request (browsers resend the header each time) does not pay for a hash.
// It is keyed by an HMAC of the presented credential under a random
// per-process key, holds only successes, and is bounded per tunnel in
// size and in age.
type credCache struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]time.Time // expiry
}

const (
	credCacheSize = 64
	credCacheTTL  = 10 * time.Minute
)

func cacheKey(cred string) [sha256.Size]byte {
	m := hmac.New(sha256.New, credMAC[:])
	m.Write([]byte(cred))
	var k [sha256.Size]byte
	m.Sum(k[:0])
	return k
}

func (c *credCache) hit(k [sha256.Size]byte, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	exp, ok := c.m[k]
	if ok && now.After(exp) {
		delete(c.m, k)
		ok = false
	}
	return ok
}

func (c *credCache) add(k [sha256.Size]byte, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[[sha256.Size]byte]time.Time)
	}
	if _, ok := c.m[k]; !ok && len(c.m) >= credCacheSize {
		for old := range c.m { // any one: constant work
			delete(c.m, old)
			break
		}
	}
	c.m[k] = now.Add(credCacheTTL)
}

// verifyBasic reports whether cred matches one of want; it compares with
// every entry, so timing does not tell which one (or whether any) did.
func verifyBasic(ctx context.Context, want []credDigest, cache *credCache, cred string) (bool, error) {
	k := cacheKey(cred)
	now := time.Now()
	if cache.hit(k, now) {
		return true, nil
	}
	d, err := hashCred(ctx, cred)
	if err != nil {
		return false, err
	}
	match := 0
	for _, w := range want {
		match |= subtle.ConstantTimeCompare(d[:], w[:])
	}
	if match == 1 {
		cache.add(k, now)
	}
	return match == 1, nil
}
