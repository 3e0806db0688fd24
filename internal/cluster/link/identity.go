package link

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"sync"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/hkdf"
)

// MinSecretBytes is the shortest cluster secret accepted, after
// surrounding white space is trimmed.
const MinSecretBytes = 16

// alpn names the link protocol in the TLS handshake, so that a TLS
// client of another kind (a browser, a probe) fails the handshake
// instead of reaching the session.
const alpn = "porthole-link/1"

// ValidateSecret reports whether secret can authenticate a cluster.
func ValidateSecret(secret []byte) error {
	if n := len(bytes.TrimSpace(secret)); n < MinSecretBytes {
		return fmt.Errorf("cluster secret is %d bytes long; at least %d are needed (for example: openssl rand -base64 32)", n, MinSecretBytes)
	}
	return nil
}

// identity is the TLS identity every node of a cluster derives from the
// shared secret: the same ed25519 key on every node, in a self-signed
// certificate. Each end presents it and accepts only a peer presenting
// the same public key, so a handshake completes only between holders of
// the secret; the secret itself never crosses the wire. TLS 1.3 signs
// the handshake transcript with the key (CertificateVerify, with
// different contexts for client and server), so a recorded or reflected
// handshake cannot be replayed.
type identity struct {
	pub  ed25519.PublicKey
	cert tls.Certificate
}

// The derivation's parameters. The public key is not secret: any
// stranger who can open a TLS connection to the cluster port receives
// the certificate before it has to prove anything. An offline guess of
// the secret therefore costs one argon2id (RFC 9106; these are its
// second recommended setting's time and OWASP's memory floor), not one
// hash.
const (
	kdfSalt    = "porthole cluster link secret v1"
	kdfTime    = 2
	kdfMemory  = 19 << 10 // KiB
	kdfThreads = 1
	hkdfInfo   = "porthole cluster link ed25519 identity v1"
)

var (
	identMu    sync.Mutex
	identCache = map[[32]byte]*identity{}
)

// deriveIdentity returns the identity for secret, computed once per
// process and secret (argon2id takes tens of milliseconds).
func deriveIdentity(secret []byte) (*identity, error) {
	secret = bytes.TrimSpace(secret)
	if err := ValidateSecret(secret); err != nil {
		return nil, err
	}
	key := sha256.Sum256(secret)
	identMu.Lock()
	defer identMu.Unlock()
	if id, ok := identCache[key]; ok {
		return id, nil
	}
	stretched := argon2.IDKey(secret, []byte(kdfSalt), kdfTime, kdfMemory, kdfThreads, 32)
	seed := make([]byte, ed25519.SeedSize)
	if _, err := io.ReadFull(hkdf.New(sha256.New, stretched, nil, []byte(hkdfInfo)), seed); err != nil {
		return nil, err
	}
	priv := ed25519.NewKeyFromSeed(seed)
	pub := priv.Public().(ed25519.PublicKey)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "porthole cluster node"},
		NotBefore:    time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:     time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	// ed25519 signatures are deterministic: the random source is unused.
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, pub, priv)
	if err != nil {
		return nil, fmt.Errorf("cluster link certificate: %w", err)
	}
	id := &identity{pub: pub, cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv}}
	identCache[key] = id
	return id, nil
}

// errPeerIdentity is the handshake error for a peer without the secret.
var errPeerIdentity = errors.New("cluster link: peer does not hold the cluster secret")

// verify accepts a connection only if the peer presented this cluster's
// public key. Chains and names mean nothing here: the key is the
// credential.
func (id *identity) verify(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) != 1 {
		return errPeerIdentity
	}
	pk, ok := cs.PeerCertificates[0].PublicKey.(ed25519.PublicKey)
	if !ok || !pk.Equal(id.pub) {
		return errPeerIdentity
	}
	if cs.NegotiatedProtocol != alpn {
		return fmt.Errorf("cluster link: peer did not negotiate %s", alpn)
	}
	return nil
}

func (id *identity) serverConfig() *tls.Config {
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		Certificates:     []tls.Certificate{id.cert},
		ClientAuth:       tls.RequireAnyClientCert,
		NextProtos:       []string{alpn},
		VerifyConnection: id.verify,
		// Session tickets would let a later connection skip the
		// certificate exchange; every connection proves the key again.
		SessionTicketsDisabled: true,
	}
}

func (id *identity) clientConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{id.cert},
		NextProtos:   []string{alpn},
		ServerName:   "porthole-cluster",
		// The chain is not verified against roots: VerifyConnection pins
		// the cluster's key instead, which is stronger.
		InsecureSkipVerify:     true,
		VerifyConnection:       id.verify,
		SessionTicketsDisabled: true,
		ClientSessionCache:     nil,
	}
}
