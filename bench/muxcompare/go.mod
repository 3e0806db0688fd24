module github.com/porthole/porthole/bench/muxcompare

go 1.26.8

replace github.com/porthole/porthole => ../..

require (
	github.com/coder/websocket v1.8.15
	github.com/porthole/porthole v0.0.0-00010101000000-000000000000
	github.com/xtaci/smux v1.5.58
)

require (
	github.com/hashicorp/yamux v0.1.2 // indirect
	github.com/klauspost/compress v1.20.1 // indirect
)
