package main

import (
	"fmt"
	"strconv"
	"strings"
)

// attack is one attack of the run, as the measuring side sees it.
type attack struct {
	name   string
	title  string // in the table
	server string // "open" (--no-auth, defaults) or "auth"
	actor  string
	// budget is the bound the documentation and the tests set for it.
	budget string
	// setup starts what the attack needs on the server's side (the
	// attacker's own tunnel client) and completes its params; the
	// returned function undoes it.
	setup func(e *env, p *params) (func(), error)
	// verdict says, from the attacker's counts and the server's limit
	// hits during the phase, whether and how the attacker was cut off.
	verdict func(c map[string]int64, hits map[string]float64) string
}

// attacks are the run's attacks, in the order of the report. They run
// grouped by server kind (serverOrder), each on a fresh server.
var attacks = []*attack{
	{
		name: "stalled-readers", title: "100 stalled readers (1 GiB each)", server: "open", actor: "anonymous visitor",
		budget: "RSS growth < 200 MiB (buffer_budget 64 MiB); the other tunnel serves",
		setup: func(e *env, p *params) (func(), error) {
			p.Conns = 100
			return e.attackerTunnel(p, "big", e.apps.bulk, "")
		},
		verdict: func(c map[string]int64, hits map[string]float64) string {
			s := fmt.Sprintf("%d stalled; at the end %d still held, %d closed by the server", c["stalled"], c["held"], c["cut"])
			if n := hits["buffer_budget"]; n > 0 {
				s += fmt.Sprintf("; their tunnel's data waited %.0f times (buffer_budget)", n)
			}
			return s
		},
	},
	{
		name: "h2-streams", title: "HTTP/2 stream flood, 4 conns x 100 stalled streams", server: "tls", actor: "anonymous visitor",
		budget: "each HTTP/2 request counts as a visitor connection: visitor_connections_per_ip 256, http.max_concurrent_streams 100",
		setup: func(e *env, p *params) (func(), error) {
			p.Conns = 4
			return e.attackerTunnel(p, "big", e.apps.bulk, "")
		},
		verdict: func(c map[string]int64, hits map[string]float64) string {
			s := fmt.Sprintf("%d connections, %d streams opened: at most %d admitted and stalled at once (server's per-connection bound %d); refused %d x 429, %d x 503",
				c["conns"], c["streams_opened"], c["stalled_peak"], c["server_max_concurrent_streams"], c["status_429"], c["status_503"])
			if n := sumPrefix(c, "rst_"); n > 0 {
				s += fmt.Sprintf("; %d streams reset by the server", n)
			}
			if n := c["conn_closed_by_server"]; n > 0 {
				s += fmt.Sprintf("; %d connections closed by the server", n)
			}
			return s
		},
	},
	{
		name: "ping-flood", title: "ping flood (raw frames)", server: "open", actor: "tunnel client (none needed under --no-auth)",
		budget: "goroutines +100, RSS +20 MiB; cut off",
		verdict: func(c map[string]int64, hits map[string]float64) string {
			return sessionsVerdict(c, hits, []frameKind{pingKind})
		},
	},
	{
		name: "frame-floods", title: "window-update / unknown-stream / stream-open / go-away floods", server: "open",
		actor:  "tunnel client (none needed under --no-auth)",
		budget: "goroutines +100, RSS +20 MiB; cut off",
		verdict: func(c map[string]int64, hits map[string]float64) string {
			return sessionsVerdict(c, hits, floodKinds)
		},
	},
	{
		name: "huge-headers", title: "30 MB response headers, endless 1xx", server: "open", actor: "malicious local app",
		budget: "502 past 64 KiB of headers or a bound on 1xx; server keeps serving",
		setup: func(e *env, p *params) (func(), error) {
			p.Workers = 4
			return e.attackerTunnel(p, "evil", e.apps.evil, "")
		},
		verdict: func(c map[string]int64, hits map[string]float64) string {
			var parts []string
			for _, path := range []string{"big", "1xx"} {
				var o []string
				for _, k := range sortedKeys(c) {
					if rest, ok := strings.CutPrefix(k, path+"_"); ok {
						o = append(o, fmt.Sprintf("%s x%d", strings.TrimPrefix(rest, "status_"), c[k]))
					}
				}
				parts = append(parts, fmt.Sprintf("/%s: %s", path, strings.Join(o, ", ")))
			}
			s := strings.Join(parts, "; ")
			if c["big_status_200"] > 0 || c["1xx_1xx_passed"] > 0 {
				return "NOT cut off, passed on to the visitor: " + s
			}
			return "refused: " + s
		},
	},
	{
		name: "basic-auth", title: "--basic-auth guessing, 4 addresses + fresh addresses", server: "open", actor: "anonymous visitor",
		budget: "10 wrong passwords per address (IPv6 /64), then 1 a second; 429 whatever is sent; argon2id hashes on half the CPUs at most",
		setup: func(e *env, p *params) (func(), error) {
			p.Workers = 16
			return e.attackerTunnel(p, "guarded", e.apps.small, "", "--basic-auth", guessUser+":"+guessPassword)
		},
		verdict: func(c map[string]int64, hits map[string]float64) string {
			s := fmt.Sprintf("4 addresses: %d checked (401), %d throttled (429); right password after a 429: %d x 429, %d x 200 (a try came back, 1 a second); "+
				"%d fresh addresses: %d checked (401), %d throttled (429)",
				c["local_status_401"], c["local_status_429"], c["right_while_blocked_429"], c["right_while_blocked_200"],
				c["spray_addresses"], c["spray_status_401"], c["spray_status_429"])
			if n := c["local_no_answer"] + c["spray_no_answer"]; n > 0 {
				s += fmt.Sprintf("; %d unanswered", n)
			}
			return s
		},
	},
	{
		name: "slowloris", title: "slowloris, 1000 connections", server: "open", actor: "anonymous visitor",
		budget: "closed at read_header_timeout (10 s); visitor_connections_per_ip (256)",
		setup: func(e *env, p *params) (func(), error) {
			p.Conns = 1000
			return func() {}, nil
		},
		verdict: func(c map[string]int64, hits map[string]float64) string {
			s := fmt.Sprintf("%d connections closed by the server, %s after opening on average; at most %d open at once",
				c["closed"], meanMs(c, "closed"), c["open_peak"])
			if n := c["status_429"] + c["status_503"]; n > 0 {
				s += fmt.Sprintf("; %d refused (429/503)", n)
			}
			return s
		},
	},
	{
		name: "handshake-flood", title: "bad-credential handshake flood", server: "auth", actor: "anonymous client",
		budget: "[auth] failed_auth_burst 10, failed_auth_per_minute 30 per address",
		setup: func(e *env, p *params) (func(), error) {
			p.Rate, p.Workers = e.o.handshakeRate, 32
			return func() {}, nil
		},
		verdict: func(c map[string]int64, hits map[string]float64) string {
			sent := sumPrefix(c, "status_")
			return fmt.Sprintf("%d handshakes from %d addresses: %d refused 401, %d throttled 429 before the key was looked at; %d other, %d skipped",
				sent, len(handshakeAddrs), c["status_401"], c["status_429"], sumExcept(c, "status_401", "status_429", "skipped"), c["skipped"])
		},
	},
	{
		name: "idle-conns", title: "10k idle connections (49 addresses)", server: "open", actor: "anonymous visitor",
		budget: "max_visitor_connections 10,000 (about 100 MiB), visitor_connections_per_ip 256",
		setup: func(e *env, p *params) (func(), error) {
			p.Conns = 10_000
			return func() {}, nil
		},
		verdict: func(c map[string]int64, hits map[string]float64) string {
			return fmt.Sprintf("%d accepted (at most %d open at once); refused: %d with 503, %d with 429; %d closed by the server",
				c["accepted"], c["open_peak"], c["refused_503"], c["refused_429"], c["closed_by_server"])
		},
	},
	{
		name: "address-spray", title: "100k distinct source addresses", server: "auth", actor: "anonymous visitor",
		budget: "per-address table: 100,000 entries, then one shared overflow entry",
		setup: func(e *env, p *params) (func(), error) {
			p.Conns, p.Workers = e.o.sprayAddrs, 64
			return e.attackerTunnel(p, "spray", e.apps.small, e.keys["sprayer"])
		},
		verdict: func(c map[string]int64, hits map[string]float64) string {
			s := fmt.Sprintf("%d distinct addresses, %d requests: %d served, %d refused 429", c["addresses"],
				sumPrefix(c, "status_"), c["status_200"], c["status_429"])
			if n := sumPrefix(c, "status_") - c["status_200"] - c["status_429"]; n > 0 {
				s += fmt.Sprintf(", %d other", n)
			}
			return s
		},
	},
}

// sessionsVerdict reports the sessions of a frame flood: how many, how
// many the server cut and how soon, per kind.
func sessionsVerdict(c map[string]int64, hits map[string]float64, kinds []frameKind) string {
	var parts []string
	for _, k := range kinds {
		parts = append(parts, fmt.Sprintf("%s %d cut after %s", k.name, c[k.name+"_cut"], meanMs(c, k.name+"_cut")))
		if n := c[k.name+"_stalled"]; n > 0 {
			parts[len(parts)-1] += fmt.Sprintf(" (%d stalled, not cut)", n)
		}
	}
	return fmt.Sprintf("%d sessions: %s", c["sessions"], strings.Join(parts, "; "))
}

// meanMs is the mean of the durations counted under k by counters.since.
func meanMs(c map[string]int64, k string) string {
	if c[k] == 0 {
		return "-"
	}
	ms := float64(c[k+"_ms"]) / float64(c[k])
	if ms >= 1000 {
		return strconv.FormatFloat(ms/1000, 'f', 1, 64) + " s"
	}
	return strconv.FormatFloat(ms, 'f', 0, 64) + " ms"
}

func sumPrefix(c map[string]int64, prefix string) int64 {
	var n int64
	for k, v := range c {
		if strings.HasPrefix(k, prefix) {
			n += v
		}
	}
	return n
}

func sumExcept(c map[string]int64, except ...string) int64 {
	var n int64
outer:
	for k, v := range c {
		for _, e := range except {
			if k == e {
				continue outer
			}
		}
		n += v
	}
	return n
}
