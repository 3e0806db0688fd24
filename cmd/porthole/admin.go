package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/porthole/porthole/internal/auth"
	"github.com/porthole/porthole/internal/config"
	"github.com/porthole/porthole/internal/names"
	"github.com/porthole/porthole/internal/server"
	"github.com/porthole/porthole/internal/store"
)

// adminEnv is what every admin command works on: the server's config
// (for its data directory, database and [auth] table) and its store.
type adminEnv struct {
	cfg     server.Config
	cfgFile string
}

// open reads the config file, with the admin flags over it, and opens the
// store the server uses.
func (e *adminEnv) open(cmd *cobra.Command) (store.Store, error) {
	if err := config.LoadWithFlags(cmd.Flags(), e.cfgFile, &e.cfg); err != nil {
		return nil, err
	}
	if err := e.cfg.Auth.Validate(); err != nil {
		return nil, err
	}
	dbURL, err := e.cfg.DatabaseURL()
	if err != nil {
		return nil, err
	}
	return store.Open(cmd.Context(), dbURL, e.cfg.DataDir)
}

// run opens the store, runs fn and closes the store.
func (e *adminEnv) run(fn func(ctx context.Context, st store.Store, out io.Writer) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		st, err := e.open(cmd)
		if err != nil {
			return err
		}
		defer st.Close()
		return fn(cmd.Context(), st, cmd.OutOrStdout())
	}
}

func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s needs %s", cmd.CommandPath(), what)
		}
		return nil
	}
}

func adminCmd(g *globalFlags) *cobra.Command {
	e := &adminEnv{cfg: server.DefaultConfig()}
	cmd := &cobra.Command{
		Use:   "admin",
		Short: "Manage users, keys, tokens, reservations and custom domains (also while the server runs)",
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&e.cfgFile, "config", "", "the server's TOML configuration file")
	pf.StringVar(&e.cfg.DataDir, "data-dir", e.cfg.DataDir, "the server's state directory")
	pf.StringVar(&e.cfg.Database, "database", e.cfg.Database, "sqlite:PATH or postgres://...; overrides the SQLite file in --data-dir")
	cmd.AddCommand(adminUsersCmd(e), adminKeysCmd(e), adminTokensCmd(e), adminReserveCmd(e), adminUnreserveCmd(e), adminReservationsCmd(e), adminDomainsCmd(e), adminCertsCmd(e), adminNodesCmd(e))
	return cmd
}

func ts(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func table(out io.Writer, header string, rows [][]string) error {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, header)
	for _, r := range rows {
		fmt.Fprintln(w, strings.Join(r, "\t"))
	}
	return w.Flush()
}

func writeJSON(out io.Writer, v any) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func adminUsersCmd(e *adminEnv) *cobra.Command {
	cmd := &cobra.Command{Use: "users", Short: "Add, list and remove users; set their limits"}
	add := &cobra.Command{
		Use: "add NAME", Short: "Add a user", Args: exactArgs(1, "a user NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := store.ValidateUserName(args[0]); err != nil {
				return usageError{err}
			}
			return e.run(func(ctx context.Context, st store.Store, out io.Writer) error {
				u, err := st.CreateUser(ctx, args[0])
				if err != nil {
					return err
				}
				fmt.Fprintf(out, "Added user %s. Give them an API key with: porthole admin keys create --user %s\n", u.Name, u.Name)
				return nil
			})(cmd, args)
		},
	}
	var asJSON bool
	list := &cobra.Command{
		Use: "list", Short: "List users and their limits", Args: noArgs,
		RunE: e.run(func(ctx context.Context, st store.Store, out io.Writer) error {
			users, err := st.ListUsers(ctx)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(out, users)
			}
			var rows [][]string
			for _, u := range users {
				rows = append(rows, []string{u.Name, ts(u.CreatedAt), limitsString(u.Limits)})
			}
			return table(out, "NAME\tCREATED\tLIMITS", rows)
		}),
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	remove := &cobra.Command{
		Use: "remove NAME", Aliases: []string{"delete"}, Short: "Remove a user with their keys, reservations and domains; cut off their sessions", Args: exactArgs(1, "a user NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return e.run(func(ctx context.Context, st store.Store, out io.Writer) error {
				if err := st.DeleteUser(ctx, args[0]); err != nil {
					return err
				}
				fmt.Fprintf(out, "Removed user %s; running servers cut off their sessions within seconds.\n", args[0])
				return nil
			})(cmd, args)
		},
	}
	cmd.AddCommand(add, list, remove, adminLimitsCmd(e))
	return cmd
}

// limitFlags are the per-user limits; each takes a number, or "default"
// to fall back to the server's [limits] value.
var limitFlags = []struct{ flag, help string }{
	{"max-tunnels", "tunnels at once (0: no limit)"},
	{"max-sessions", "client sessions at once (0: no limit)"},
	{"requests-per-second", "requests per second per tunnel (0: no limit)"},
	{"burst", "request burst per tunnel"},
	{"bandwidth", "bytes per second, each direction (0: no limit)"},
	{"max-connections", "concurrent visitor connections per tunnel (0: no limit)"},
}

func adminLimitsCmd(e *adminEnv) *cobra.Command {
	vals := make(map[string]*string)
	cmd := &cobra.Command{
		Use:   "limits NAME",
		Short: "Show or set a user's limits (a number, or \"default\" for the server's value)",
		Args:  exactArgs(1, "a user NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return e.run(func(ctx context.Context, st store.Store, out io.Writer) error {
				u, err := st.GetUser(ctx, args[0])
				if err != nil {
					return err
				}
				l := u.Limits
				changed := false
				for _, f := range limitFlags {
					if !cmd.Flags().Changed(f.flag) {
						continue
					}
					changed = true
					if err := setLimit(&l, f.flag, *vals[f.flag]); err != nil {
						return usageError{err}
					}
				}
				if changed {
					if err := st.SetUserLimits(ctx, u.Name, l); err != nil {
						return err
					}
				}
				fmt.Fprintf(out, "%s: %s\n", u.Name, limitsString(l))
				return nil
			})(cmd, args)
		},
	}
	for _, f := range limitFlags {
		vals[f.flag] = cmd.Flags().String(f.flag, "", f.help)
	}
	return cmd
}

func setLimit(l *store.Limits, flag, v string) error {
	if v == "default" {
		switch flag {
		case "max-tunnels":
			l.MaxTunnels = nil
		case "max-sessions":
			l.MaxSessions = nil
		case "requests-per-second":
			l.RequestsPerSecond = nil
		case "burst":
			l.Burst = nil
		case "bandwidth":
			l.BandwidthBytesPerSecond = nil
		case "max-connections":
			l.MaxConnectionsPerTunnel = nil
		}
		return nil
	}
	if flag == "requests-per-second" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 {
			return fmt.Errorf("--%s %q: want a number >= 0 or \"default\"", flag, v)
		}
		l.RequestsPerSecond = &f
		return nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("--%s %q: want a whole number >= 0 or \"default\"", flag, v)
	}
	i := int(n)
	switch flag {
	case "max-tunnels":
		l.MaxTunnels = &i
	case "max-sessions":
		l.MaxSessions = &i
	case "burst":
		l.Burst = &i
	case "bandwidth":
		l.BandwidthBytesPerSecond = &n
	case "max-connections":
		l.MaxConnectionsPerTunnel = &i
	}
	return nil
}

func limitsString(l store.Limits) string {
	var parts []string
	add := func(name string, p any) {
		switch v := p.(type) {
		case *int:
			if v != nil {
				parts = append(parts, fmt.Sprintf("%s=%d", name, *v))
			}
		case *int64:
			if v != nil {
				parts = append(parts, fmt.Sprintf("%s=%d", name, *v))
			}
		case *float64:
			if v != nil {
				parts = append(parts, fmt.Sprintf("%s=%g", name, *v))
			}
		}
	}
	add("max_tunnels", l.MaxTunnels)
	add("max_sessions", l.MaxSessions)
	add("requests_per_second", l.RequestsPerSecond)
	add("burst", l.Burst)
	add("bandwidth_bytes_per_second", l.BandwidthBytesPerSecond)
	add("max_connections_per_tunnel", l.MaxConnectionsPerTunnel)
	if len(parts) == 0 {
		return "server defaults"
	}
	return strings.Join(parts, " ")
}

// parseExpiry reads --expires: a duration from now ("720h") or a time
// (RFC 3339 or a date).
func parseExpiry(s string, now time.Time) (time.Time, error) {
	if s == "" || s == "never" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d <= 0 {
			return time.Time{}, fmt.Errorf("--expires %q: must be in the future", s)
		}
		return now.Add(d), nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			if !t.After(now) {
				return time.Time{}, fmt.Errorf("--expires %q: must be in the future", s)
			}
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("--expires %q: want a duration (720h), a date (2026-12-31) or an RFC 3339 time", s)
}

func adminKeysCmd(e *adminEnv) *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "Create, list and revoke API keys"}
	var user, name, expires string
	create := &cobra.Command{
		Use: "create --user NAME", Short: "Create an API key; it is printed once, alone on the last line", Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if user == "" {
				return usagef("keys create needs --user NAME")
			}
			exp, err := parseExpiry(expires, time.Now())
			if err != nil {
				return usageError{err}
			}
			return e.run(func(ctx context.Context, st store.Store, out io.Writer) error {
				key, id, hash := auth.NewAPIKey()
				k, err := st.CreateAPIKey(ctx, store.NewAPIKey{ID: id, User: user, Name: name, Hash: hash, ExpiresAt: exp})
				if err != nil {
					return err
				}
				expiry := "never"
				if !k.ExpiresAt.IsZero() {
					expiry = ts(k.ExpiresAt)
				}
				fmt.Fprintf(out, "Created API key %s for %s (name %q, expires %s).\n", k.ID, k.User, k.Name, expiry)
				fmt.Fprintln(out, "It is shown only now; store it safely. Use it with --api-key or PORTHOLE_API_KEY:")
				fmt.Fprintln(out, key)
				return nil
			})(cmd, args)
		},
	}
	create.Flags().StringVar(&user, "user", "", "the user the key acts for")
	create.Flags().StringVar(&name, "name", "", "a label for the key, e.g. the machine it is for")
	create.Flags().StringVar(&expires, "expires", "", "expiry: a duration (720h), a date (2026-12-31) or an RFC 3339 time; default never")

	var listUser string
	var asJSON bool
	list := &cobra.Command{
		Use: "list", Short: "List API keys: id, name, created, last used (never the key)", Args: noArgs,
		RunE: e.run(func(ctx context.Context, st store.Store, out io.Writer) error {
			keys, err := st.ListAPIKeys(ctx, listUser)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(out, keys)
			}
			now := time.Now()
			var rows [][]string
			for _, k := range keys {
				status := "active"
				switch {
				case !k.RevokedAt.IsZero():
					status = "revoked " + ts(k.RevokedAt)
				case !k.ExpiresAt.IsZero() && !now.Before(k.ExpiresAt):
					status = "expired"
				}
				rows = append(rows, []string{k.ID, k.User, orDash(k.Name), ts(k.CreatedAt), ts(k.LastUsedAt), ts(k.ExpiresAt), status})
			}
			return table(out, "ID\tUSER\tNAME\tCREATED\tLAST USED\tEXPIRES\tSTATUS", rows)
		}),
	}
	list.Flags().StringVar(&listUser, "user", "", "only this user's keys")
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	revoke := &cobra.Command{
		Use: "revoke KEY_OR_ID", Short: "Revoke an API key; running sessions using it are cut off within 5 s", Args: exactArgs(1, "a KEY_OR_ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			arg := strings.TrimSpace(args[0])
			if !auth.LooksLikeAPIKey(arg) && !auth.IsKeyID(arg) {
				return usagef("%q is neither an API key (%s...) nor a key id (key_ and 16 hex digits, see 'porthole admin keys list')", clipArg(arg), auth.APIKeyPrefix)
			}
			return e.run(func(ctx context.Context, st store.Store, out io.Writer) error {
				id := arg
				if auth.LooksLikeAPIKey(arg) {
					k, _, err := st.APIKeyByHash(ctx, auth.HashAPIKey(arg))
					if err != nil {
						return errors.New("no such API key")
					}
					id = k.ID
				}
				k, err := st.APIKeyByID(ctx, id)
				if err != nil {
					return err
				}
				if err := st.RevokeAPIKey(ctx, id, time.Now()); err != nil {
					return err
				}
				fmt.Fprintf(out, "Revoked API key %s of %s; running servers cut off its sessions within 5 s.\n", k.ID, k.User)
				return nil
			})(cmd, args)
		},
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// clipArg shortens what a user typed for an error message, so that a
// mistyped key is not echoed whole.
func clipArg(s string) string {
	if len(s) > 12 {
		return s[:8] + "..."
	}
	return s
}

func adminTokensCmd(e *adminEnv) *cobra.Command {
	cmd := &cobra.Command{Use: "tokens", Short: "Issue and revoke signed tokens (JWT)"}
	var (
		user     string
		ttl      time.Duration
		subs     []string
		hosts    []string
		tcpAny   bool
		tcpPorts []int
	)
	issue := &cobra.Command{
		Use: "issue --user NAME --ttl 1h", Short: "Issue a token signed with the server's key; it is printed alone on the last line", Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if user == "" {
				return usagef("tokens issue needs --user NAME")
			}
			if ttl <= 0 || ttl > 366*24*time.Hour {
				return usagef("--ttl %s: want a duration between 1s and 8784h", ttl)
			}
			scope, err := tokenScope(subs, hosts, tcpAny, tcpPorts)
			if err != nil {
				return err
			}
			return e.run(func(ctx context.Context, st store.Store, out io.Writer) error {
				key, err := auth.LoadOrCreateSigningKey(auth.SigningKeyPath(e.cfg.Auth, e.cfg.DataDir))
				if err != nil {
					return err
				}
				tok, err := auth.IssueToken(ctx, st, key, e.cfg.Auth, user, ttl, scope, time.Now())
				if err != nil {
					return err
				}
				fmt.Fprintf(out, "Token %s for %s, expires %s, may bind %s. Use it with --token or PORTHOLE_TOKEN:\n", tok.ID, user, ts(tok.ExpiresAt), scopeText(scope))
				fmt.Fprintln(out, tok.Token)
				return nil
			})(cmd, args)
		},
	}
	issue.Flags().StringVar(&user, "user", "", "the user the token acts for")
	issue.Flags().DurationVar(&ttl, "ttl", time.Hour, "how long the token is valid")
	issue.Flags().StringSliceVar(&subs, "subdomain", nil, "restrict the token to this subdomain (repeatable)")
	issue.Flags().StringSliceVar(&hosts, "hostname", nil, "restrict the token to this custom hostname (repeatable)")
	issue.Flags().BoolVar(&tcpAny, "tcp", false, "with a restricted token: also allow TCP tunnels on any port")
	issue.Flags().IntSliceVar(&tcpPorts, "tcp-port", nil, "restrict the token to this TCP port (repeatable)")

	var revUser string
	var revExpires string
	revoke := &cobra.Command{
		Use: "revoke TOKEN_ID", Short: "Revoke a token by its id (jti); running sessions using it are cut off within 5 s", Args: exactArgs(1, "a TOKEN_ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			exp, err := parseExpiry(revExpires, time.Now())
			if err != nil {
				return usageError{err}
			}
			return e.run(func(ctx context.Context, st store.Store, out io.Writer) error {
				if err := st.RevokeToken(ctx, args[0], revUser, exp); err != nil {
					return err
				}
				fmt.Fprintf(out, "Revoked token %s; running servers cut off its sessions within 5 s.\n", args[0])
				return nil
			})(cmd, args)
		},
	}
	revoke.Flags().StringVar(&revUser, "user", "", "the token's user, for the record")
	revoke.Flags().StringVar(&revExpires, "expires", "", "when the token expires anyway, so the entry can be dropped then (default: kept)")
	cmd.AddCommand(issue, revoke, tokensCutoffCmd(e))
	return cmd
}

func reservationArgs(port int, args []string) (store.ReservationKind, string, error) {
	if port != 0 {
		if len(args) != 0 {
			return "", "", usagef("give either SUBDOMAIN or --port, not both")
		}
		if port < 1 || port > 65535 {
			return "", "", usagef("--port %d is not a port", port)
		}
		return store.ReservedPort, strconv.Itoa(port), nil
	}
	if len(args) != 1 {
		return "", "", usagef("needs one SUBDOMAIN (or --port N)")
	}
	if err := names.ValidateLabel(args[0]); err != nil {
		return "", "", usageError{err}
	}
	return store.ReservedSubdomain, args[0], nil
}

func adminReserveCmd(e *adminEnv) *cobra.Command {
	var user string
	var port int
	cmd := &cobra.Command{
		Use: "reserve --user NAME SUBDOMAIN", Short: "Reserve a subdomain (or with --port a TCP port) for one user: only they may bind it",
		RunE: func(cmd *cobra.Command, args []string) error {
			if user == "" {
				return usagef("reserve needs --user NAME")
			}
			kind, name, err := reservationArgs(port, args)
			if err != nil {
				return err
			}
			return e.run(func(ctx context.Context, st store.Store, out io.Writer) error {
				if err := st.Reserve(ctx, store.Reservation{Kind: kind, Name: name, User: user}); err != nil {
					if errors.Is(err, store.ErrExists) {
						owner, _ := st.ReservationOwner(ctx, kind, name)
						return fmt.Errorf("%s %s is already reserved for %s", kind, name, owner)
					}
					return err
				}
				fmt.Fprintf(out, "Reserved %s %s for %s.\n", kind, name, user)
				return nil
			})(cmd, args)
		},
	}
	cmd.Flags().StringVar(&user, "user", "", "the user who alone may bind it")
	cmd.Flags().IntVar(&port, "port", 0, "reserve this TCP port instead of a subdomain")
	return cmd
}

func adminUnreserveCmd(e *adminEnv) *cobra.Command {
	var port int
	cmd := &cobra.Command{
		Use: "unreserve SUBDOMAIN", Short: "Drop a reservation (a subdomain, or with --port a TCP port)",
		RunE: func(cmd *cobra.Command, args []string) error {
			kind, name, err := reservationArgs(port, args)
			if err != nil {
				return err
			}
			return e.run(func(ctx context.Context, st store.Store, out io.Writer) error {
				if err := st.Unreserve(ctx, kind, name); err != nil {
					return err
				}
				fmt.Fprintf(out, "Dropped the reservation of %s %s.\n", kind, name)
				return nil
			})(cmd, args)
		},
	}
	cmd.Flags().IntVar(&port, "port", 0, "a TCP port instead of a subdomain")
	return cmd
}

func adminReservationsCmd(e *adminEnv) *cobra.Command {
	var user string
	var asJSON bool
	cmd := &cobra.Command{
		Use: "reservations", Short: "List reserved subdomains and ports", Args: noArgs,
		RunE: e.run(func(ctx context.Context, st store.Store, out io.Writer) error {
			rs, err := st.ListReservations(ctx, user)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(out, rs)
			}
			var rows [][]string
			for _, r := range rs {
				rows = append(rows, []string{string(r.Kind), r.Name, r.User, ts(r.CreatedAt)})
			}
			return table(out, "KIND\tNAME\tUSER\tCREATED", rows)
		}),
	}
	cmd.Flags().StringVar(&user, "user", "", "only this user's reservations")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// tokenScope builds a token's scope from the issue flags: nil (the user's
// full rights) when none is given. Once any is given, the token may bind
// only what the flags grant, of every kind.
func tokenScope(subs, hosts []string, tcpAny bool, ports []int) (*auth.Scope, error) {
	if len(subs) == 0 && len(hosts) == 0 && !tcpAny && len(ports) == 0 {
		return nil, nil
	}
	sc := &auth.Scope{TCP: tcpAny}
	for _, s := range subs {
		if err := names.ValidateLabel(s); err != nil {
			return nil, usageError{err}
		}
		sc.Subdomains = append(sc.Subdomains, s)
	}
	for _, h := range hosts {
		h = strings.ToLower(strings.TrimSuffix(h, "."))
		if err := names.ValidateHostname(h); err != nil {
			return nil, usageError{err}
		}
		sc.Hostnames = append(sc.Hostnames, h)
	}
	if tcpAny && len(ports) > 0 {
		return nil, usagef("give --tcp (any port) or --tcp-port N, not both")
	}
	for _, p := range ports {
		if p < 1 || p > 65535 {
			return nil, usagef("--tcp-port %d is not a port", p)
		}
		sc.TCPPorts = append(sc.TCPPorts, p)
	}
	return sc, nil
}

func scopeText(sc *auth.Scope) string {
	if sc == nil {
		return "anything its user may"
	}
	return "only " + sc.String()
}
