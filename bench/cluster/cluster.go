package main

import (
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// database is the PostgreSQL server the clusters of a run share; each
// cluster gets a schema of its own, dropped at the end of the run.
type database struct {
	base    string
	db      *sql.DB
	mu      sync.Mutex
	schemas []string
}

func openDatabase(base string) (*database, error) {
	cfg, err := pgx.ParseConfig(base)
	if err != nil {
		return nil, fmt.Errorf("-database: %w", err)
	}
	db := stdlib.OpenDB(*cfg)
	if err := db.Ping(); err != nil {
		db.Close()
		return nil, fmt.Errorf("PostgreSQL at -database: %w", err)
	}
	return &database{base: base, db: db}, nil
}

// newSchema creates a schema and returns the nodes' database URL, with
// search_path set to it.
func (d *database) newSchema(label string) (string, error) {
	schema := fmt.Sprintf("porthole_bench_cluster_%d_%s", time.Now().UnixNano(), label)
	if _, err := d.db.Exec("CREATE SCHEMA " + schema); err != nil {
		return "", fmt.Errorf("create schema: %w", err)
	}
	d.mu.Lock()
	d.schemas = append(d.schemas, schema)
	d.mu.Unlock()
	u, err := url.Parse(d.base)
	if err != nil {
		return "", err
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// close drops every schema the run created.
func (d *database) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, s := range d.schemas {
		if _, err := d.db.Exec("DROP SCHEMA " + s + " CASCADE"); err != nil {
			logf("drop schema %s: %v", s, err)
		}
	}
	d.schemas = nil
	d.db.Close()
}

// cluster is three (or more) `porthole server` processes on one schema.
// Node i listens on 127.0.0.(11+i), as nodes on separate hosts would on
// their own addresses.
type cluster struct {
	r      *runner
	label  string
	db     string
	secret string
	ports  string
	config string // server TOML (--config), or empty
	nodes  []*node
}

// node is one running `porthole server` of a cluster.
type node struct {
	*proc
	name, ip                            string
	httpAddr, tunnelAddr, adminAddr, cl string
}

func (n *node) wsURL() string { return "ws://" + n.tunnelAddr }

// startCluster starts n nodes on a fresh schema; serverTOML, when not
// empty, is every node's --config.
func (r *runner) startCluster(label string, n int, serverTOML string) (*cluster, error) {
	db, err := r.db.newSchema(label)
	if err != nil {
		return nil, err
	}
	c := &cluster{r: r, label: label, db: db}
	c.secret = filepath.Join(r.dir, label+".secret")
	key := make([]byte, 32)
	rand.Read(key)
	if err := os.WriteFile(c.secret, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		return nil, err
	}
	if serverTOML != "" {
		c.config = filepath.Join(r.dir, label+"-server.toml")
		if err := os.WriteFile(c.config, []byte(serverTOML), 0o600); err != nil {
			return nil, err
		}
	}
	lo := 30000 + int(time.Now().UnixNano()%20000)
	c.ports = fmt.Sprintf("%d-%d", lo, lo+9)
	// One at a time, as an operator brings a cluster up: the first one
	// migrates the schema.
	for i := range n {
		nd, err := c.startNode(i)
		if err != nil {
			c.stop()
			return nil, err
		}
		c.nodes = append(c.nodes, nd)
	}
	return c, nil
}

func (c *cluster) startNode(i int) (*node, error) {
	nd := &node{name: fmt.Sprintf("node%d", i+1), ip: fmt.Sprintf("127.0.0.%d", 11+i)}
	var last error
	for try := range 5 {
		free := func() (string, error) {
			ln, err := net.Listen("tcp", nd.ip+":0")
			if err != nil {
				return "", fmt.Errorf("loopback address %s: %w", nd.ip, err)
			}
			defer ln.Close()
			return ln.Addr().String(), nil
		}
		for _, a := range []*string{&nd.httpAddr, &nd.tunnelAddr, &nd.adminAddr, &nd.cl} {
			var err error
			if *a, err = free(); err != nil {
				return nil, err
			}
		}
		data := filepath.Join(c.r.dir, fmt.Sprintf("%s-%s-data", c.label, nd.name))
		args := []string{"server", "--log-format", "json", "--log-level", c.r.o.logLevel,
			"--no-auth", "--domain", "localhost",
			"--http-addr", nd.httpAddr, "--tunnel-addr", nd.tunnelAddr, "--admin-addr", nd.adminAddr,
			"--data-dir", data, "--database", c.db, "--tcp-ports", c.ports,
			"--cluster-addr", nd.cl, "--cluster-secret-file", c.secret, "--node-name", nd.name,
			"--shutdown-timeout", "5s"}
		if c.config != "" {
			args = append(args, "--config", c.config)
		}
		p, err := startProc(c.r.dir, fmt.Sprintf("%s-%s-%d", c.label, nd.name, try), nil, c.r.bin, args...)
		if err != nil {
			return nil, err
		}
		nd.proc = p
		if last = waitHealthy(p, "http://"+nd.adminAddr+"/readyz", 30*time.Second); last == nil {
			return nd, nil
		}
		p.kill()
	}
	return nil, fmt.Errorf("%s of cluster %s did not start: %w", nd.name, c.label, last)
}

// waitHealthy polls u until it answers 200 or p exits.
func waitHealthy(p *proc, u string, within time.Duration) error {
	deadline := time.Now().Add(within)
	hc := &http.Client{Timeout: 2 * time.Second}
	for {
		if p.exited() {
			return fmt.Errorf("exited (%v):\n%s", p.waitErr, p.tail(15))
		}
		if resp, err := hc.Get(u); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready within %s:\n%s", within, p.tail(15))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop stops every node still running, all at once (SIGTERM: each one
// drains and leaves).
func (c *cluster) stop() {
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.stop(syscall.SIGTERM, 20*time.Second)
		}()
	}
	wg.Wait()
}
