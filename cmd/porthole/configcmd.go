package main

import (
	"fmt"
	"os"

	"github.com/pelletier/go-toml/v2"
	"github.com/spf13/cobra"

	"github.com/porthole/porthole/internal/client"
	"github.com/porthole/porthole/internal/config"
	"github.com/porthole/porthole/internal/server"
)

func configCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Work with configuration files"}
	var kind string
	check := &cobra.Command{
		Use:   "check FILE",
		Short: "Validate a server or client configuration file; report the first error with its line",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("config check needs one FILE")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			path := args[0]
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if kind == "" {
				kind = guessKind(data)
			}
			var v interface{ Validate() error }
			switch kind {
			case "server":
				c := server.DefaultConfig()
				v = &c
			case "client":
				c := client.DefaultConfig()
				c.Servers = []string{"ws://localhost:8081"}
				v = &c
			default:
				return usagef("--kind %q: want server or client", kind)
			}
			if err := config.Decode(path, data, v); err != nil {
				return err
			}
			if err := v.Validate(); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: valid %s configuration\n", path, kind)
			return nil
		},
	}
	check.Flags().StringVar(&kind, "kind", "", "server or client (guessed from the keys when empty)")
	cmd.AddCommand(check)
	return cmd
}

// guessKind tells client files (they have tunnels or servers) from server
// files.
func guessKind(data []byte) string {
	var m map[string]any
	if toml.Unmarshal(data, &m) != nil {
		return "server"
	}
	for _, k := range []string{"tunnels", "servers", "api_key", "token", "inspect_addr", "reconnect"} {
		if _, ok := m[k]; ok {
			return "client"
		}
	}
	return "server"
}
