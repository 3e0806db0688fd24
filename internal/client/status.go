package client

import (
	"encoding/json"
	"net/http"
	"time"
)

// Status is the client's state as /api/status reports it.
type Status struct {
	State      string  `json:"state"`
	Server     string  `json:"server"`
	LatencyMS  float64 `json:"latency_ms"`
	Reconnects int64   `json:"reconnects"`
	Uptime     string  `json:"uptime"`
	UptimeSec  float64 `json:"uptime_seconds"`
	Connected  string  `json:"connected_since,omitempty"`
	LastError  string  `json:"last_error,omitempty"`
	// NextRetry and RetryAttempt say when the next reconnect attempt is
	// due and which one it is, while reconnecting.
	NextRetry    string          `json:"next_retry,omitempty"`
	RetryAttempt int64           `json:"retry_attempt,omitempty"`
	Tunnels      []*TunnelStatus `json:"tunnels"`
	// Links are the client's simultaneous sessions (--links), one entry
	// per link.
	Links []LinkStatus `json:"links"`
}

// Status returns a snapshot of the client's state.
func (c *Client) Status() *Status {
	up := time.Since(c.started)
	st := &Status{
		State:      c.state.Load().(string),
		Server:     c.server.Load().(string),
		LatencyMS:  float64(c.rttNanos.Load()) / 1e6,
		Reconnects: c.reconnects.Load(),
		Uptime:     up.Round(time.Second).String(),
		UptimeSec:  up.Seconds(),
		LastError:  c.lastErr.Load().(string),
	}
	if ns := c.since.Load(); ns != 0 && st.State == StateOnline {
		st.Connected = time.Unix(0, ns).UTC().Format(time.RFC3339)
	}
	if ns := c.nextRetry.Load(); ns != 0 && st.State == StateReconnecting {
		st.NextRetry = time.Unix(0, ns).UTC().Format(time.RFC3339Nano)
		st.RetryAttempt = c.attempt.Load()
	}
	for _, t := range c.tunnels {
		st.Tunnels = append(st.Tunnels, t.status())
	}
	st.Links = c.linkStatus()
	return st
}

// Handler serves the local status API.
func (c *Client) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, c.Status())
	})
	mux.HandleFunc("GET /api/tunnels", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, c.Status().Tunnels)
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
