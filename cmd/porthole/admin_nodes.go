package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/porthole/porthole/internal/cluster"
	"github.com/porthole/porthole/internal/config"
)

// adminNodesCmd lists a cluster's nodes from its database, like the other
// admin commands: it works whether or not any node is up.
func adminNodesCmd(e *adminEnv) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "nodes",
		Short: "List the nodes of the cluster that shares the PostgreSQL database: name, address, state, last seen, tunnels",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := config.LoadWithFlags(cmd.Flags(), e.cfgFile, &e.cfg); err != nil {
				return err
			}
			dbURL, err := e.cfg.DatabaseURL()
			if err != nil {
				return err
			}
			if !strings.HasPrefix(dbURL, "postgres://") && !strings.HasPrefix(dbURL, "postgresql://") {
				return fmt.Errorf("admin nodes: a cluster shares a PostgreSQL database; pass --database postgres://... or --config")
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			nodes, err := cluster.ListNodes(ctx, dbURL)
			if err != nil {
				return err
			}
			if nodes == nil {
				nodes = []cluster.NodeInfo{}
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), nodes)
			}
			rows := make([][]string, 0, len(nodes))
			for _, n := range nodes {
				rows = append(rows, []string{n.Name, n.Addr, n.State, ts(n.LastSeen), strconv.Itoa(n.Tunnels)})
			}
			return table(cmd.OutOrStdout(), "NAME\tADDRESS\tSTATE\tLAST SEEN\tTUNNELS", rows)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
