// Package demo runs porthole end to end in one process: a server on
// loopback, a small built-in web app, and a client tunnel to it. It owns the
// demo app; everything else is the real server and client packages.
package demo
