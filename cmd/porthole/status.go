package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/porthole/porthole/internal/client"
	"github.com/porthole/porthole/internal/dashboard"
)

func statusCmd() *cobra.Command {
	var asJSON bool
	addr := client.DefaultConfig().InspectAddr
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the state of a running client (asks its status API)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			hc := &http.Client{Timeout: 5 * time.Second}
			resp, err := hc.Get("http://" + addr + "/api/status")
			if err != nil {
				return fmt.Errorf("no porthole client answers at %s (is one running? pass --inspect-addr): %w", addr, err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
			if err != nil {
				return err
			}
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("status API at %s answered %s", addr, resp.Status)
			}
			if asJSON {
				_, err := cmd.OutOrStdout().Write(body)
				return err
			}
			var st client.Status
			if err := json.Unmarshal(body, &st); err != nil {
				return fmt.Errorf("status API at %s: %w", addr, err)
			}
			printStatus(cmd.OutOrStdout(), &st)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the status as JSON")
	cmd.Flags().StringVar(&addr, "inspect-addr", addr, "address of the client's status API")
	return cmd
}

func printStatus(out io.Writer, st *client.Status) {
	fmt.Fprintf(out, "State:       %s\n", st.State)
	fmt.Fprintf(out, "Server:      %s\n", st.Server)
	fmt.Fprintf(out, "Latency:     %.1f ms\n", st.LatencyMS)
	fmt.Fprintf(out, "Uptime:      %s\n", st.Uptime)
	fmt.Fprintf(out, "Reconnects:  %d\n", st.Reconnects)
	if st.Connected != "" {
		fmt.Fprintf(out, "Connected:   since %s\n", st.Connected)
	}
	if at, err := time.Parse(time.RFC3339Nano, st.NextRetry); err == nil {
		fmt.Fprintf(out, "Next retry:  %s (attempt %d, in %s)\n", at.Local().Format("15:04:05"), st.RetryAttempt, max(0, time.Until(at)).Round(100*time.Millisecond))
	}
	if st.LastError != "" {
		fmt.Fprintf(out, "Last error:  %s\n", st.LastError)
	}
	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tPUBLIC URL\tTARGET\tREQUESTS\tERRORS\tIN\tOUT\tOPEN")
	for _, t := range st.Tunnels {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\t%d\n", t.Name, t.URL, t.Target, t.Requests, t.Errors, dashboard.Bytes(t.BytesIn), dashboard.Bytes(t.BytesOut), t.OpenConns)
	}
	tw.Flush()
}
