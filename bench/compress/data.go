package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
)

var (
	firstNames = []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "oscar", "peggy", "trent", "victor", "walter"}
	lastNames  = []string{"johnson", "smith", "garcia", "müller", "rossi", "dubois", "kowalski", "tanaka", "silva", "nguyen", "okafor", "larsen"}
	cities     = []string{"Lyon", "Berlin", "Osaka", "Porto", "Austin", "Nairobi", "Oslo", "Lima", "Pune", "Quebec"}
	statuses   = []string{"active", "suspended", "pending", "active", "active"}
	tagWords   = []string{"billing", "eu-west", "beta", "vip", "trial", "support", "mobile", "api", "legacy", "partner"}
)

// genJSON returns about size bytes of newline-delimited JSON records as an
// API or a log shipper sends them: repeated keys, small vocabularies,
// numbers, timestamps and random identifiers.
func genJSON(size int) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	var b bytes.Buffer
	b.Grow(size + 512)
	for id := 100000; b.Len() < size; id++ {
		first, last := firstNames[rng.IntN(len(firstNames))], lastNames[rng.IntN(len(lastNames))]
		fmt.Fprintf(&b, `{"id":%d,"uuid":"%08x-%04x-%04x-%04x-%012x","name":"%s %s","email":"%s.%s%d@example.com",`,
			id, rng.Uint32(), rng.Uint32()&0xffff, rng.Uint32()&0xffff, rng.Uint32()&0xffff, rng.Uint64()&0xffffffffffff,
			first, last, first, last, rng.IntN(100))
		fmt.Fprintf(&b, `"status":"%s","created_at":"2024-%02d-%02dT%02d:%02d:%02dZ","score":%.3f,"tags":["%s","%s"],`,
			statuses[rng.IntN(len(statuses))], 1+rng.IntN(12), 1+rng.IntN(28), rng.IntN(24), rng.IntN(60), rng.IntN(60),
			rng.Float64()*100, tagWords[rng.IntN(len(tagWords))], tagWords[rng.IntN(len(tagWords))])
		fmt.Fprintf(&b, `"address":{"city":"%s","zip":"%05d"},"balance_cents":%d,"verified":%t}`+"\n",
			cities[rng.IntN(len(cities))], rng.IntN(100000), rng.IntN(10000000), rng.IntN(2) == 0)
	}
	return b.Bytes()[:size]
}

// genRandom returns size random bytes: what already-compressed data (JPEG,
// video, zip, gzip bodies, TLS) looks like to a compressor.
func genRandom(size int) []byte {
	rng := rand.NewChaCha8([32]byte{7})
	b := make([]byte, size)
	rng.Read(b)
	return b
}

// genMessages returns n consecutive size-byte pieces of JSON.
func genMessages(n, size int) [][]byte {
	all := genJSON(n * size)
	out := make([][]byte, n)
	for i := range out {
		out[i] = all[i*size : (i+1)*size]
	}
	return out
}
