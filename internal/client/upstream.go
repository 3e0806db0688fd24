package client

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/porthole/porthole/internal/httpfwd"
)

// Upstream protocols: what the client speaks to the local app of an HTTP
// tunnel (upstream_protocol, --upstream-protocol). The tunnel hop itself
// is HTTP/1.1 whatever is chosen here.
const (
	// UpstreamHTTP1 is HTTP/1.1, the default: what every web app speaks.
	UpstreamHTTP1 = "http1"
	// UpstreamHTTP2 is HTTP/2 over TLS, negotiated with ALPN "h2"; it
	// needs an https:// target, and fails when the app does not offer h2.
	UpstreamHTTP2 = "http2"
	// UpstreamH2C is cleartext HTTP/2 with prior knowledge (RFC 9113
	// section 3.3), for gRPC servers without TLS; it needs an http:// target.
	UpstreamH2C = "h2c"
	// UpstreamAuto is HTTP/2 when an https:// target offers it in ALPN,
	// else HTTP/1.1; an http:// target gets HTTP/1.1.
	UpstreamAuto = "auto"
)

// UpstreamProtocols lists the accepted values, for help texts.
const UpstreamProtocols = "http1, http2, h2c or auto"

// validateUpstreamProtocol checks upstream_protocol against the tunnel's
// proto and target scheme.
func validateUpstreamProtocol(t *TunnelConfig) error {
	p := t.UpstreamProtocol
	if p == "" {
		return nil
	}
	if t.Proto != "http" {
		return errors.New("upstream_protocol is for http tunnels")
	}
	target, err := ParseTarget(t.Proto, t.Addr)
	if err != nil {
		return err
	}
	switch p {
	case UpstreamHTTP1, UpstreamAuto:
	case UpstreamHTTP2:
		if target.Scheme != "https" {
			return fmt.Errorf("upstream_protocol http2 is HTTP/2 over TLS and needs an https:// target, not %s; for a cleartext HTTP/2 app use h2c", target)
		}
	case UpstreamH2C:
		if target.Scheme != "http" {
			return fmt.Errorf("upstream_protocol h2c is cleartext HTTP/2 and needs an http:// target, not %s; for HTTP/2 over TLS use http2", target)
		}
	default:
		return fmt.Errorf("upstream_protocol %q: want %s", p, UpstreamProtocols)
	}
	return nil
}

// upstream sends requests to an HTTP/2 local app (http2, h2c, auto with an
// https:// target). Protocol upgrades (WebSocket) still go over HTTP/1.1:
// net/http's HTTP/2 client cannot carry them.
type upstream struct {
	h1 http.RoundTripper
	h2 *http.Transport
	// h2Limited is h2 within the limits on the app's 1xx responses and
	// header fields that h1 (httpfwd.Transport) applies itself.
	h2Limited http.RoundTripper
}

// newUpstream returns the round-tripper to the local app for cfg's
// upstream protocol: h1 itself for HTTP/1.1, which warns once when a gRPC
// request meets it (gRPC needs HTTP/2).
func newUpstream(cfg *TunnelConfig, target Target, local *localDialer, h1 http.RoundTripper, log *slog.Logger) http.RoundTripper {
	p := cfg.UpstreamProtocol
	if p == UpstreamAuto && target.Scheme != "https" {
		p = UpstreamHTTP1
	}
	if p == "" || p == UpstreamHTTP1 {
		return &grpcHint{RoundTripper: h1, log: log, target: target}
	}
	protos := new(http.Protocols)
	switch p {
	case UpstreamHTTP2:
		protos.SetHTTP2(true)
	case UpstreamH2C:
		protos.SetUnencryptedHTTP2(true)
	case UpstreamAuto:
		protos.SetHTTP1(true)
		protos.SetHTTP2(true)
	}
	h2 := &http.Transport{
		DialContext:         local.DialContext,
		Protocols:           protos,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		TLSHandshakeTimeout: 10 * time.Second,
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: cfg.InsecureSkipVerify}, //nolint:gosec // opt-in for self-signed local apps
		// The same bound as on HTTP/1.1; on HTTP/2 it is the header
		// list size the client advertises, trailers included.
		MaxResponseHeaderBytes: appMaxHeaderBytes,
		HTTP2: &http.HTTP2Config{
			// Pings find a dead app connection that TCP would not.
			SendPingTimeout: 30 * time.Second,
			PingTimeout:     15 * time.Second,
		},
	}
	return &upstream{h1: h1, h2: h2, h2Limited: httpfwd.LimitInformational(h2, appMaxHeaderFields)}
}

func (u *upstream) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Header.Get("Upgrade") != "" {
		return u.h1.RoundTrip(req)
	}
	start := time.Now()
	resp, err := u.h2Limited.RoundTrip(req)
	if err != nil && httpfwd.IsGRPC(req.Header) && req.Context().Err() == nil {
		if r, ok := grpcReset(req, err, start); ok {
			return r, nil
		}
	}
	return resp, err
}

// CloseIdleConnections closes both transports' idle connections.
func (u *upstream) CloseIdleConnections() {
	u.h2.CloseIdleConnections()
	if ci, ok := u.h1.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// grpcHint passes requests to HTTP/1.1 and, the first time a gRPC
// request fails there, says which flag the tunnel needs.
type grpcHint struct {
	http.RoundTripper
	log    *slog.Logger
	target Target
	once   sync.Once
}

func (g *grpcHint) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := g.RoundTripper.RoundTrip(req)
	if err != nil && httpfwd.IsGRPC(req.Header) && req.Context().Err() == nil {
		g.once.Do(func() {
			flag := "h2c"
			if g.target.Scheme == "https" {
				flag = "http2"
			}
			g.log.Warn("a gRPC request failed over HTTP/1.1: gRPC needs HTTP/2 to the local app; start the tunnel with --upstream-protocol "+flag,
				"target", g.target.String())
		})
	}
	return resp, err
}

// UpstreamHelp is the help text of --upstream-protocol.
const UpstreamHelp = "protocol to the local app: http1, http2 (TLS with ALPN h2, https:// targets), h2c (cleartext HTTP/2, http:// targets) or auto (h2 when an https:// target offers it, else HTTP/1.1); gRPC needs http2 or h2c; http1 when unset"
