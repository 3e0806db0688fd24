package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/porthole/porthole/internal/protocol"
)

// DefaultHealthInterval applies when a health path is set without an interval.
const DefaultHealthInterval = 10 * time.Second

// healthLoop checks t's local app at its health path every interval and
// tells the server when the answer changes, until done is closed. The
// server starts each session assuming the app is healthy.
func (t *tunnel) healthLoop(w *protocol.Writer, currentID func() string, done <-chan struct{}) {
	every := t.cfg.HealthInterval.D()
	if every <= 0 {
		every = DefaultHealthInterval
	}
	url := fmt.Sprintf("%s://%s%s", t.target.Scheme, t.target.Host, t.cfg.HealthPath)
	hc := &http.Client{Transport: t.http.tr, Timeout: min(every, 5*time.Second),
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	reported := true
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		healthy, reason := check(hc, url)
		t.unhealthy.Store(!healthy)
		if id := currentID(); id != "" && healthy != reported {
			if w.Write(&protocol.Health{TunnelID: id, Healthy: healthy, Reason: reason}) != nil {
				return
			}
			reported = healthy
			if healthy {
				t.log.Info("local app healthy again", "check", url)
			} else {
				t.log.Warn("local app unhealthy: the server sends no visitors here until it recovers", "check", url, "reason", reason)
			}
		}
		next := tick.C
		if healthy != reported && currentID() == "" {
			// A change the server has not heard of, and the tunnel is not
			// bound yet (the loop starts with the session): check again
			// soon rather than an interval later.
			next = time.After(min(every, 200*time.Millisecond))
		}
		select {
		case <-done:
			return
		case <-next:
		}
	}
}

// check requests url; 2xx and 3xx answers are healthy.
func check(hc *http.Client, url string) (bool, string) {
	ctx, cancel := context.WithTimeout(context.Background(), hc.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, err.Error()
	}
	req.Header.Set("User-Agent", "porthole-health-check")
	resp, err := hc.Do(req)
	if err != nil {
		return false, err.Error()
	}
	// Drained, so the connection goes back to the pool for the next check.
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	if resp.StatusCode >= 400 {
		return false, resp.Status
	}
	return true, ""
}
