package certs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// FileSource serves a certificate and key read from PEM files, and
// re-reads them when asked (SIGHUP) or when a poll sees them change. A
// failed reload keeps the certificate that was being served: a renewal
// tool that writes the two files one after the other must not take the
// listener down in between.
type FileSource struct {
	certFile, keyFile string
	log               *slog.Logger
	stats             *counters

	cur atomic.Pointer[fileCert]
	mu  sync.Mutex // serializes reloads
}

// fileCert is one loaded pair and what identifies the files it came from.
type fileCert struct {
	cert     *tls.Certificate
	stamp    [2]os.FileInfo
	certHash [sha256.Size]byte
}

// LoadFiles reads certFile and keyFile. It fails when they do not parse or
// do not match, so a server never starts without a certificate.
func LoadFiles(certFile, keyFile string, log *slog.Logger) (*FileSource, error) {
	return loadFiles(certFile, keyFile, log, &counters{})
}

func loadFiles(certFile, keyFile string, log *slog.Logger, st *counters) (*FileSource, error) {
	f := &FileSource{certFile: certFile, keyFile: keyFile, log: log, stats: st}
	fc, err := f.read()
	if err != nil {
		return nil, err
	}
	f.cur.Store(fc)
	f.logLoaded("certificate loaded", fc)
	return f, nil
}

// GetCertificate returns the current certificate, whatever the client asks
// for: a file pair is one certificate.
func (f *FileSource) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return f.cur.Load().cert, nil
}

// Leaf returns the current certificate's leaf.
func (f *FileSource) Leaf() *x509.Certificate { return f.cur.Load().cert.Leaf }

// Covers reports whether the current certificate is valid for name.
func (f *FileSource) Covers(name string) bool {
	return f.cur.Load().cert.Leaf.VerifyHostname(name) == nil
}

// Reload re-reads the files now. On error the old certificate stays in
// use. It reports whether the certificate changed.
func (f *FileSource) Reload() (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reloadLocked()
}

func (f *FileSource) reloadLocked() (bool, error) {
	fc, err := f.read()
	if err != nil {
		f.stats.reloadFailures.Add(1)
		f.log.Error("certificate reload failed; still serving the previous certificate",
			"cert", f.certFile, "key", f.keyFile, "err", err)
		return false, err
	}
	old := f.cur.Load()
	f.cur.Store(fc)
	if fc.certHash == old.certHash {
		return false, nil
	}
	f.stats.reloads.Add(1)
	f.logLoaded("certificate reloaded", fc)
	return true, nil
}

// Watch polls the files every interval and reloads when either changed
// (new size, modification time or inode: renewal tools replace files by
// rename or by switching a symlink). It returns when ctx ends.
func (f *FileSource) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		f.mu.Lock()
		if f.changed() {
			f.reloadLocked()
		}
		f.mu.Unlock()
	}
}

// changed compares the files with those of the last successful load.
func (f *FileSource) changed() bool {
	old := f.cur.Load().stamp
	for i, name := range []string{f.certFile, f.keyFile} {
		fi, err := os.Stat(name)
		if err != nil {
			// Missing for a moment during a replace: look again next tick.
			return false
		}
		if !os.SameFile(fi, old[i]) || !fi.ModTime().Equal(old[i].ModTime()) || fi.Size() != old[i].Size() {
			return true
		}
	}
	return false
}

func (f *FileSource) read() (*fileCert, error) {
	var fc fileCert
	var err error
	// Stat before reading: a change during the read is then seen again
	// on the next poll instead of being missed.
	for i, name := range []string{f.certFile, f.keyFile} {
		if fc.stamp[i], err = os.Stat(name); err != nil {
			return nil, err
		}
	}
	certPEM, err := os.ReadFile(f.certFile)
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(f.keyFile)
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s and %s: %w", f.certFile, f.keyFile, err)
	}
	if cert.Leaf == nil {
		return nil, errors.New("certificate has no leaf")
	}
	fc.cert = &cert
	fc.certHash = sha256.Sum256(bytes.TrimSpace(certPEM))
	return &fc, nil
}

func (f *FileSource) logLoaded(msg string, fc *fileCert) {
	leaf := fc.cert.Leaf
	f.log.Info(msg,
		"file", f.certFile,
		"names", LeafNames(leaf),
		"not_after", leaf.NotAfter.UTC().Format(time.RFC3339),
		"pin", SPKIPin(leaf))
	if left := time.Until(leaf.NotAfter); left < 14*24*time.Hour {
		f.log.Warn("certificate expires soon; replace the files (they are picked up without a restart)",
			"file", f.certFile, "expires_in", left.Round(time.Minute).String())
	}
}

// LeafNames lists the names a certificate is for: its DNS names and IP
// addresses, or its common name when it has neither.
func LeafNames(leaf *x509.Certificate) []string {
	names := append([]string(nil), leaf.DNSNames...)
	for _, ip := range leaf.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 && leaf.Subject.CommonName != "" {
		names = append(names, leaf.Subject.CommonName)
	}
	return names
}
