package main

import "github.com/spf13/cobra"

func adminCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{Use: "admin", Short: "Manage users, keys, tokens and reservations"}
}
