package client

import (
	"strings"
	"testing"
)

// TestPlaintextCredentialRefused: an API key or token is not sent over
// ws:// to a host off this machine unless asked for; loopback is fine.
func TestPlaintextCredentialRefused(t *testing.T) {
	for _, tc := range []struct {
		server, key, token string
		insecure           bool
		wantErr            string
	}{
		{server: "ws://example.com:8080", key: "phk_x", wantErr: "--insecure-plaintext"},
		{server: "ws://10.0.0.5:8080", token: "t", wantErr: "token in clear text"},
		{server: "ws://[2001:db8::1]:8080", key: "phk_x", wantErr: "API key in clear text"},
		{server: "ws://127.0.0.1:8080", key: "phk_x"},
		{server: "ws://127.9.9.9:8080", key: "phk_x"},
		{server: "ws://[::1]:8080", key: "phk_x"},
		{server: "ws://localhost:8080", key: "phk_x"},
		{server: "ws://app.localhost:8080", key: "phk_x"},
		{server: "wss://example.com", key: "phk_x"},
		{server: "ws://example.com:8080"}, // no credential
		{server: "ws://example.com:8080", key: "phk_x", insecure: true},
	} {
		cfg := DefaultConfig()
		cfg.Servers = []string{tc.server}
		cfg.APIKey, cfg.Token, cfg.InsecurePlaintext = tc.key, tc.token, tc.insecure
		err := cfg.Validate()
		switch {
		case tc.wantErr == "" && err != nil && strings.Contains(err.Error(), "clear text"):
			t.Errorf("%s key=%q token=%q insecure=%v: refused: %v", tc.server, tc.key, tc.token, tc.insecure, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s key=%q token=%q: got %v, want an error with %q", tc.server, tc.key, tc.token, err, tc.wantErr)
		}
	}
	if !PlaintextOffHost("ws://example.com") || PlaintextOffHost("ws://127.0.0.1") || PlaintextOffHost("wss://example.com") {
		t.Fatal("PlaintextOffHost disagrees with the table above")
	}
}
