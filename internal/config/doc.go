// Package config loads porthole's TOML configuration files: strict decoding
// (an unknown key is an error that names its line), durations written as
// "10s", and the rule that command-line flags override file values. Each
// part (server, client) defines its own Config struct with defaults and a
// Validate method; this package only reads files into them.
package config
