package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/porthole/porthole/internal/dashboard"
	"github.com/porthole/porthole/internal/server"
)

// adminAPIFlags reach a running server's admin JSON API.
type adminAPIFlags struct {
	addr, token string
}

func (f *adminAPIFlags) register(cmd *cobra.Command) {
	cmd.PersistentFlags().StringVar(&f.addr, "admin-addr", "127.0.0.1:8082", "the server's admin listener")
	cmd.PersistentFlags().StringVar(&f.token, "admin-token", "", "admin API token (when unset: $PORTHOLE_ADMIN_TOKEN)")
}

func (f *adminAPIFlags) do(method, path string, out any) error {
	token := f.token
	if token == "" {
		token = os.Getenv("PORTHOLE_ADMIN_TOKEN")
	}
	req, err := http.NewRequest(method, "http://"+f.addr+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return fmt.Errorf("no server admin API at %s: %w", f.addr, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return fmt.Errorf("admin API: %s", e.Error)
		}
		return fmt.Errorf("admin API answered %s", resp.Status)
	}
	return json.Unmarshal(body, out)
}

func adminSessionsCmd() *cobra.Command {
	var f adminAPIFlags
	cmd := &cobra.Command{Use: "sessions", Short: "List or kick the sessions of a running server (admin API)"}
	f.register(cmd)
	var user string
	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List connected sessions with their tunnels",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var resp struct {
				Sessions []server.SessionInfo `json:"sessions"`
			}
			if err := f.do(http.MethodGet, "/api/sessions?user="+url.QueryEscape(user), &resp); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(resp.Sessions)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SESSION\tUSER\tREMOTE\tSINCE\tTUNNELS\tREQUESTS\tIN\tOUT")
			for _, s := range resp.Sessions {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", s.ID, s.User, s.Remote, s.Since.Format(time.RFC3339),
					len(s.Tunnels), s.Requests, dashboard.Bytes(s.BytesIn), dashboard.Bytes(s.BytesOut))
				for _, t := range s.Tunnels {
					fmt.Fprintf(tw, "\t  %s\t%s\t\t\t%d\t%s\t%s\n", t.Kind, t.URL, t.Requests, dashboard.Bytes(t.BytesIn), dashboard.Bytes(t.BytesOut))
				}
			}
			return tw.Flush()
		},
	}
	list.Flags().StringVar(&user, "user", "", "only this user's sessions")
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	var reason string
	kick := &cobra.Command{
		Use:   "kick SESSION_ID",
		Short: "Close a session; its client exits with the reason and its names are freed",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("kick needs one SESSION_ID")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			var resp map[string]any
			if err := f.do(http.MethodPost, "/api/sessions/"+url.PathEscape(args[0])+"/kick?reason="+url.QueryEscape(reason), &resp); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "kicked session %s\n", args[0])
			return nil
		},
	}
	kick.Flags().StringVar(&reason, "reason", "", "reason shown to the client")
	cmd.AddCommand(list, kick)
	return cmd
}
