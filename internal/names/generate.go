package names

import (
	"crypto/rand"
	"fmt"
	"math/big"
)

// Strategy chooses how the server names a tunnel that did not ask for a name.
type Strategy string

const (
	// Readable names are adjective-noun-number, such as quiet-otter-3141:
	// easy to read aloud, and with about 2e8 combinations hard to guess.
	Readable Strategy = "random"
	// UUID names are random version-4 UUIDs: long, and unguessable.
	UUID Strategy = "uuid"
	// Specified requires every client to ask for a name with --subdomain.
	Specified Strategy = "user"
)

// ParseStrategy validates a strategy name from configuration.
func ParseStrategy(s string) (Strategy, error) {
	switch Strategy(s) {
	case Readable, UUID, Specified:
		return Strategy(s), nil
	case "":
		return Readable, nil
	}
	return "", fmt.Errorf("unknown subdomain strategy %q (want random, uuid or user)", s)
}

// Generate returns a new random name for strategy s. Specified returns an
// error: the client must choose.
func Generate(s Strategy) (string, error) {
	switch s {
	case Readable, "":
		a := adjectives[randInt(len(adjectives))]
		n := nouns[randInt(len(nouns))]
		return fmt.Sprintf("%s-%s-%d", a, n, 10+randInt(9990)), nil
	case UUID:
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", err
		}
		b[6] = b[6]&0x0f | 0x40
		b[8] = b[8]&0x3f | 0x80
		return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
	}
	return "", fmt.Errorf("this server requires a subdomain: pass --subdomain NAME")
}

func randInt(n int) int {
	v, err := rand.Int(rand.Reader, big.NewInt(int64(n)))
	if err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return int(v.Int64())
}
