package certs

import (
	"sync/atomic"
	"time"
)

// Stats is a snapshot of the certificate machinery for metrics.
type Stats struct {
	// Certificates in use, one entry per certificate.
	Certificates []CertInfo
	// Reloads counts file certificates replaced by a reload;
	// ReloadFailures counts reloads that kept the old certificate.
	Reloads, ReloadFailures int64
	// ACME counts certificate operations, for new certificates and for
	// renewals: Attempts when one starts, Obtained and Failed at its end.
	ACME struct{ New, Renewal ACMECounts }
	// OnDemandAllowed and OnDemandRefused count on-demand decisions: a
	// refused name never reaches the CA.
	OnDemandAllowed, OnDemandRefused int64
}

// ACMECounts counts ACME operations of one kind.
type ACMECounts struct{ Attempts, Obtained, Failed int64 }

// CertInfo describes one certificate in use.
type CertInfo struct {
	// Source is "file" or "acme".
	Source string
	// Name is the certificate's first name (e.g. "*.tunnel.example.com").
	Name     string
	NotAfter time.Time
}

// StatsSource is what a metrics collector reads.
type StatsSource interface {
	Stats() Stats
}

// counters are the live counters behind Stats.
type counters struct {
	reloads, reloadFailures          atomic.Int64
	attempts, obtained, failed       [2]atomic.Int64 // [0] new, [1] renewal
	onDemandAllowed, onDemandRefused atomic.Int64
}

func (c *counters) fill(s *Stats) {
	s.Reloads = c.reloads.Load()
	s.ReloadFailures = c.reloadFailures.Load()
	s.ACME.New = ACMECounts{c.attempts[0].Load(), c.obtained[0].Load(), c.failed[0].Load()}
	s.ACME.Renewal = ACMECounts{c.attempts[1].Load(), c.obtained[1].Load(), c.failed[1].Load()}
	s.OnDemandAllowed = c.onDemandAllowed.Load()
	s.OnDemandRefused = c.onDemandRefused.Load()
}
