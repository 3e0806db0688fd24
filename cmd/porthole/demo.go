package main

import (
	"fmt"
	"net"

	"github.com/spf13/cobra"

	"github.com/porthole/porthole/internal/client"
	"github.com/porthole/porthole/internal/demo"
	"github.com/porthole/porthole/internal/inspect"
	"github.com/porthole/porthole/internal/version"
)

func demoCmd(g *globalFlags) *cobra.Command {
	o := demo.DefaultOptions()
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a server, a small web app and a tunnel to it in one process, on loopback",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			log, err := g.logger(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			o.Logger = log
			o.Version = version.String()
			o.Explicit = map[string]bool{}
			for _, f := range []string{"http-addr", "tunnel-addr", "admin-addr", "inspect-addr"} {
				o.Explicit[f] = cmd.Flags().Changed(f)
			}
			out := cmd.OutOrStdout()
			var inspectURL string
			o.OnForwarding = func(t *client.TunnelStatus) {
				fmt.Fprintf(out, "Forwarding %s -> %s\n", t.URL, t.Target)
				fmt.Fprintf(out, "Open %s in a browser, or: curl %s/echo\n", t.URL, t.URL)
				if inspectURL != "" {
					fmt.Fprintf(out, "Watch the requests in the inspector: %s\n", inspectURL)
				}
			}
			store, err := inspect.NewStore(inspect.DefaultConfig(), nil)
			if err != nil {
				return err
			}
			o.Inspector = store
			o.OnClient = func(c *client.Client) {
				host, _, _ := net.SplitHostPort(o.InspectAddr)
				h := inspect.NewHandler(inspect.Options{
					Store: store, Metrics: inspect.NewMetrics(c.InspectSnapshot, store), Replayer: c,
					Status: c.Handler(), ListenHost: host, Logger: log,
				})
				url, stop := startInspect(log, o.InspectAddr, h, o.Explicit["inspect-addr"])
				inspectURL = url
				go func() { <-cmd.Context().Done(); stop() }()
			}
			return demo.Run(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.HTTPAddr, "http-addr", o.HTTPAddr, "public HTTP listener")
	f.StringVar(&o.TunnelAddr, "tunnel-addr", o.TunnelAddr, "tunnel listener")
	f.StringVar(&o.AdminAddr, "admin-addr", o.AdminAddr, "admin listener")
	f.StringVar(&o.InspectAddr, "inspect-addr", o.InspectAddr, "client status API")
	return cmd
}
