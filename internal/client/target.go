package client

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// Target is where a tunnel forwards to.
type Target struct {
	Scheme string // "http", "https" or "tcp"
	Host   string // host:port
}

func (t Target) String() string { return t.Scheme + "://" + t.Host }

// ParseTarget parses a TARGET argument for kind ("http" or "tcp"): PORT,
// HOST:PORT, or for http also http(s)://HOST:PORT. PORT alone means
// localhost:PORT.
func ParseTarget(kind, s string) (Target, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Target{}, fmt.Errorf("target is empty: give a PORT, HOST:PORT or URL")
	}
	scheme := "http"
	if kind == "tcp" {
		scheme = "tcp"
	}
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil {
			return Target{}, fmt.Errorf("target %q: %v", s, err)
		}
		switch {
		case kind == "http" && (u.Scheme == "http" || u.Scheme == "https"):
		case kind == "tcp" && u.Scheme == "tcp":
		default:
			return Target{}, fmt.Errorf("target %q: scheme %q does not fit a %s tunnel", s, u.Scheme, kind)
		}
		if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
			return Target{}, fmt.Errorf("target %q: give only scheme, host and port", s)
		}
		scheme = u.Scheme
		s = u.Host
		if u.Port() == "" {
			if scheme == "https" {
				s = net.JoinHostPort(u.Hostname(), "443")
			} else if scheme == "http" {
				s = net.JoinHostPort(u.Hostname(), "80")
			}
		}
	}
	if p, err := strconv.Atoi(s); err == nil {
		if p < 1 || p > 65535 {
			return Target{}, fmt.Errorf("target port %d is out of range 1-65535", p)
		}
		return Target{Scheme: scheme, Host: net.JoinHostPort("localhost", s)}, nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return Target{}, fmt.Errorf("target %q is not PORT, HOST:PORT or a URL", s)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return Target{}, fmt.Errorf("target %q: port %q is not a number in 1-65535", s, port)
	}
	if host == "" {
		host = "localhost"
	}
	return Target{Scheme: scheme, Host: net.JoinHostPort(host, port)}, nil
}
