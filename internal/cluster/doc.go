// Package cluster lets several porthole servers share one PostgreSQL
// database and serve each other's tunnels.
//
// It owns the cluster's state in the database and its copy in memory: a
// node's row in cluster_nodes with a lease it renews (Node), one row in
// cluster_claims per hostname or TCP port saying which owner holds it at
// which node and generation, and the route log that NOTIFY announces so
// every node keeps an in-memory route map. Registry puts that map behind
// internal/registry's interface, so the server's request path reads
// memory only; binds and releases write the database.
//
// It leaves to others: forwarding a visitor to the holding node (the
// server, over internal/cluster/link), the tunnels themselves (the
// server), and the rest of the schema (internal/store, which also runs
// this package's migration).
//
// Fencing: a node that has not renewed its lease for FenceAfter refuses
// new binds, and stops serving its names once other owners could take
// them (claims of a node whose lease lapsed stay held for their owner for
// the grace period), so two owners are never served under one name.
package cluster
