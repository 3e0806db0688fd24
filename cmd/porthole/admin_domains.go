package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/porthole/porthole/internal/auth"
	"github.com/porthole/porthole/internal/names"
	"github.com/porthole/porthole/internal/store"
)

func adminDomainsCmd(e *adminEnv) *cobra.Command {
	cmd := &cobra.Command{Use: "domains", Short: "Custom domains: add one for a user, verify its DNS record, list, remove"}
	var user string
	add := &cobra.Command{
		Use: "add --user NAME HOSTNAME", Short: "Register a custom domain for a user and print the DNS TXT record that proves it",
		Args: exactArgs(1, "a HOSTNAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if user == "" {
				return usagef("domains add needs --user NAME")
			}
			host := strings.ToLower(strings.TrimSuffix(args[0], "."))
			if err := names.ValidateHostname(host); err != nil {
				return usageError{err}
			}
			return e.run(func(ctx context.Context, st store.Store, out io.Writer) error {
				if d := e.cfg.Domain; host == d || strings.HasSuffix(host, "."+d) {
					return fmt.Errorf("%s is under this server's domain %s: reserve the subdomain with 'porthole admin reserve' instead", host, d)
				}
				d, err := st.AddDomain(ctx, store.Domain{Hostname: host, User: user, Token: auth.NewDomainToken()})
				if err != nil {
					return err
				}
				fmt.Fprintf(out, "Added %s for %s. To prove it, create this DNS record:\n\n", d.Hostname, d.User)
				fmt.Fprintf(out, "  %s. TXT %q\n\n", auth.ChallengeName(d.Hostname), d.Token)
				fmt.Fprintf(out, "and point %s at this server (CNAME or A/AAAA). The server checks the record when the\n", d.Hostname)
				fmt.Fprintf(out, "domain is first bound; 'porthole admin domains verify %s' checks it now.\n", d.Hostname)
				return nil
			})(cmd, args)
		},
	}
	add.Flags().StringVar(&user, "user", "", "the user who may bind the domain")

	var resolver string
	verify := &cobra.Command{
		Use: "verify HOSTNAME", Short: "Look up a custom domain's TXT record now and record the result", Args: exactArgs(1, "a HOSTNAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return e.run(func(ctx context.Context, st store.Store, out io.Writer) error {
				v := &auth.DNSVerifier{Resolver: e.cfg.Auth.DNSResolver}
				if resolver != "" {
					v.Resolver = resolver
				}
				d, err := auth.VerifyDomain(ctx, st, v, args[0], time.Now())
				if err != nil {
					if errors.Is(err, store.ErrNotFound) {
						return err
					}
					return fmt.Errorf("%s is not verified: %w (want %s TXT %q)", d.Hostname, err, auth.ChallengeName(d.Hostname), d.Token)
				}
				fmt.Fprintf(out, "%s is verified for %s.\n", d.Hostname, d.User)
				return nil
			})(cmd, args)
		},
	}
	verify.Flags().StringVar(&resolver, "resolver", "", "DNS server HOST:PORT to ask (default: auth.dns_resolver, else the system's)")

	var listUser string
	var asJSON bool
	list := &cobra.Command{
		Use: "list", Short: "List custom domains and their verification state", Args: noArgs,
		RunE: e.run(func(ctx context.Context, st store.Store, out io.Writer) error {
			ds, err := st.ListDomains(ctx, listUser)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(out, ds)
			}
			var rows [][]string
			for _, d := range ds {
				status := "pending"
				if d.Verified() {
					status = "verified"
				}
				rows = append(rows, []string{d.Hostname, d.User, status, ts(d.CheckedAt), auth.ChallengeName(d.Hostname) + " TXT " + d.Token})
			}
			return table(out, "HOSTNAME\tUSER\tSTATUS\tLAST CHECK\tRECORD", rows)
		}),
	}
	list.Flags().StringVar(&listUser, "user", "", "only this user's domains")
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	remove := &cobra.Command{
		Use: "remove HOSTNAME", Short: "Remove a custom domain", Args: exactArgs(1, "a HOSTNAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return e.run(func(ctx context.Context, st store.Store, out io.Writer) error {
				if err := st.RemoveDomain(ctx, args[0]); err != nil {
					return err
				}
				fmt.Fprintf(out, "Removed %s.\n", args[0])
				return nil
			})(cmd, args)
		},
	}
	cmd.AddCommand(add, verify, list, remove)
	return cmd
}
