package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/porthole/porthole/internal/auth"
	"github.com/porthole/porthole/internal/store"
)

// adminCertsCmd revokes client certificates.
func adminCertsCmd(e *adminEnv) *cobra.Command {
	cmd := &cobra.Command{Use: "certs", Short: "Revoke client certificates"}
	var file, user, expires string
	revoke := &cobra.Command{
		Use:   "revoke [SERIAL_OR_SHA256]",
		Short: "Revoke a client certificate by serial number or SHA-256 fingerprint (or --file); running sessions using it are cut off within 5 s",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			exp, err := parseExpiry(expires, time.Now())
			if err != nil {
				return usageError{err}
			}
			var ref string
			switch {
			case file != "" && len(args) == 1:
				return usagef("give a serial or fingerprint, or --file, not both")
			case file != "":
				leaf, err := readCertFile(file)
				if err != nil {
					return usageError{err}
				}
				ref = auth.CertRefs(leaf)[1]
				if exp.IsZero() {
					// The certificate is refused anyway after it expires.
					exp = leaf.NotAfter
				}
			case len(args) == 1:
				if ref, err = auth.ParseCertRef(args[0]); err != nil {
					return usageError{err}
				}
			default:
				return usagef("%s needs a serial number, a SHA-256 fingerprint or --file", cmd.CommandPath())
			}
			return e.run(func(ctx context.Context, st store.Store, out io.Writer) error {
				if err := st.RevokeCert(ctx, store.CertRevocation{Ref: ref, User: user, ExpiresAt: exp}); err != nil {
					return err
				}
				fmt.Fprintf(out, "Revoked client certificate %s; running servers cut off its sessions within 5 s.\n", ref)
				return nil
			})(cmd, args)
		},
	}
	revoke.Flags().StringVar(&file, "file", "", "the certificate (PEM) to revoke, by its fingerprint; kept until it expires")
	revoke.Flags().StringVar(&user, "user", "", "the certificate's user, for the record")
	revoke.Flags().StringVar(&expires, "expires", "", "when the certificate expires anyway, so the entry can be dropped then (default: kept; with --file: its expiry)")
	cmd.AddCommand(revoke)
	return cmd
}

func readCertFile(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: no PEM CERTIFICATE block", path)
	}
	return x509.ParseCertificate(blk.Bytes)
}

// tokensCutoffCmd revokes, at once, every token of an issuer (or of one
// user from it) issued before a time: the way to revoke tokens that carry
// no id, or all of a leaked signing key's tokens.
func tokensCutoffCmd(e *adminEnv) *cobra.Command {
	var issuer, user, before string
	var all bool
	cmd := &cobra.Command{
		Use:   "cutoff (--user NAME | --all)",
		Short: "Revoke every token issued before a time (default now) for a user, or for all users, of an issuer; running sessions are cut off within 5 s",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if (user == "") == !all {
				return usagef("%s needs --user NAME or --all (every user of the issuer)", cmd.CommandPath())
			}
			at := time.Now()
			if before != "" {
				t, err := time.Parse(time.RFC3339, before)
				if err != nil {
					return usagef("--before %q: want an RFC 3339 time (2026-12-07T10:00:00Z)", before)
				}
				at = t
			}
			return e.run(func(ctx context.Context, st store.Store, out io.Writer) error {
				iss := issuer
				if iss == "" {
					iss = e.cfg.Auth.OwnIssuer()
				}
				if err := st.SetTokenCutoff(ctx, iss, user, at); err != nil {
					return err
				}
				who := "every user"
				if user != "" {
					who = user
				}
				fmt.Fprintf(out, "Revoked the tokens of %s from issuer %s issued before %s; running servers cut off their sessions within 5 s.\n", who, iss, ts(at))
				return nil
			})(cmd, args)
		},
	}
	cmd.Flags().StringVar(&issuer, "issuer", "", "the tokens' issuer (iss claim); default this server's own token_issuer")
	cmd.Flags().StringVar(&user, "user", "", "the user whose tokens to revoke")
	cmd.Flags().BoolVar(&all, "all", false, "revoke the tokens of every user of the issuer")
	cmd.Flags().StringVar(&before, "before", "", "revoke tokens issued before this RFC 3339 time (when unset: now)")
	return cmd
}
