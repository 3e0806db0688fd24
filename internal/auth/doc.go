// Package auth turns the credentials a tunnel client presents (an API key,
// a signed token, a client certificate) into one Identity that the rest of
// the server works with. It owns credential checks and the reasons for
// refusals; it leaves storage to package store and the protocol to package
// protocol.
package auth
