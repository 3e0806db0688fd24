package protocol

// Version is the control protocol version this build speaks. A peer that
// announces another version gets an error with code CodeUnsupportedVersion.
const Version = 1

// Subprotocol is the WebSocket subprotocol a client asks for. It names the
// protocol version so that an incompatible server refuses at the handshake.
const Subprotocol = "porthole.v1"

// MaxMessageSize caps one control message payload (after the 5-byte frame
// header). Larger frames are a protocol error: they close the session.
const MaxMessageSize = 64 << 10

// MaxStreamHeaderSize caps the header that opens each proxied stream.
const MaxStreamHeaderSize = 4 << 10

// MsgType identifies a control message. The values are part of the wire
// format (spec.md) and never change meaning.
type MsgType byte

const (
	TypeHello   MsgType = 0x01 // client -> server: first message, version and credentials
	TypeWelcome MsgType = 0x02 // server -> client: session accepted
	TypeBind    MsgType = 0x03 // client -> server: ask for a tunnel
	TypeBound   MsgType = 0x04 // server -> client: tunnel is live, with its public URL
	TypeError   MsgType = 0x05 // server -> client: a request failed or the session ends
	TypeUnbind  MsgType = 0x06 // client -> server: release a tunnel now (no grace period)
	TypePing    MsgType = 0x07 // either way: heartbeat
	TypePong    MsgType = 0x08 // either way: heartbeat answer
	TypeNotice  MsgType = 0x09 // server -> client: revoked, shutting down, ...
	TypeHealth  MsgType = 0x0A // client -> server: a tunnel's local app is (un)healthy
	TypeGoAway  MsgType = 0x0B // server -> client: move to another server, this one is stopping
)

func (t MsgType) String() string {
	switch t {
	case TypeHello:
		return "hello"
	case TypeWelcome:
		return "welcome"
	case TypeBind:
		return "bind"
	case TypeBound:
		return "bound"
	case TypeError:
		return "error"
	case TypeUnbind:
		return "unbind"
	case TypePing:
		return "ping"
	case TypePong:
		return "pong"
	case TypeNotice:
		return "notice"
	case TypeHealth:
		return "health"
	case TypeGoAway:
		return "go_away"
	}
	return "unknown"
}

// Message is implemented by every control message struct.
type Message interface {
	Type() MsgType
}

// Hello opens a session. Credentials travel as an HTTP header on the
// WebSocket handshake, so that a bad one is refused before the upgrade;
// APIKey and Token are reserved for transports that cannot carry headers
// and are ignored by this version's server.
type Hello struct {
	Version       int    `json:"version"`
	ClientVersion string `json:"client_version,omitempty"`
	APIKey        string `json:"api_key,omitempty"`
	Token         string `json:"token,omitempty"`
	// ResumeToken, from an earlier Welcome, proves that this client held the
	// names it is about to bind again, so it gets them back within the grace
	// period.
	ResumeToken string `json:"resume_token,omitempty"`
	// Link numbers this session among the client's simultaneous links
	// (0 for the first, and for clients that keep one). Two sessions of
	// one client with different links serve its names side by side; the
	// same link again is a reconnect and takes the names over.
	Link int `json:"link,omitempty"`
}

// Welcome accepts a session.
type Welcome struct {
	SessionID string `json:"session_id"`
	// ResumeToken is secret; a client presents it on reconnect.
	ResumeToken   string `json:"resume_token"`
	ServerVersion string `json:"server_version,omitempty"`
	User          string `json:"user,omitempty"`
	// HeartbeatMillis is how often each side pings; a peer silent for three
	// intervals is considered gone.
	HeartbeatMillis int64 `json:"heartbeat_ms"`
}

// Tunnel kinds.
const (
	KindHTTP = "http"
	KindTCP  = "tcp"
)

// Bind asks for a tunnel. ID is chosen by the client and echoed in the
// answer (Bound or Error).
type Bind struct {
	ID         uint32 `json:"id"`
	Name       string `json:"name,omitempty"` // the client's label for the tunnel
	Kind       string `json:"kind"`
	Subdomain  string `json:"subdomain,omitempty"`
	Hostname   string `json:"hostname,omitempty"`
	RemotePort int    `json:"remote_port,omitempty"`
	// Random is set when the client did not ask for a name itself: on a
	// reconnect it asks for the name it got before, but if that name is now
	// held by someone else the server may pick a new random one instead of
	// failing.
	Random bool `json:"random,omitempty"`
	// HTTPSRedirect (http tunnels) asks the server to answer plain-HTTP
	// visitors with a 308 redirect to the https URL.
	HTTPSRedirect bool `json:"https_redirect,omitempty"`
	// HSTSMaxAge (http tunnels), when positive, asks the server to add
	// "Strict-Transport-Security: max-age=N" (seconds) to responses sent
	// over HTTPS that do not carry the header already.
	HSTSMaxAge int64 `json:"hsts_max_age,omitempty"`
	// Access restricts which visitors reach the tunnel; the server
	// enforces it, so refused visitors never reach the client.
	Access *Access `json:"access,omitempty"`
	// Headers are rules the server applies to requests and responses.
	Headers *HeaderRules `json:"headers,omitempty"`
	// Pool asks to serve the name together with the user's other clients
	// that bind it with a pool too (load balancing).
	Pool *Pool `json:"pool,omitempty"`
}

// Access is a tunnel's visitor access control. Lists are capped at
// MaxAccessRules entries each.
type Access struct {
	// BasicAuth entries are "user:password"; a visitor must present one.
	BasicAuth []string `json:"basic_auth,omitempty"`
	// BasicAuthForward passes the visitor's Authorization header, once it
	// matched BasicAuth, on to the local app; by default the server
	// removes it.
	BasicAuthForward bool `json:"basic_auth_forward,omitempty"`
	// AllowCIDR, when not empty, admits only visitors from these networks;
	// DenyCIDR refuses visitors from these (checked first).
	AllowCIDR []string `json:"allow_cidr,omitempty"`
	DenyCIDR  []string `json:"deny_cidr,omitempty"`
	// RequireHeader entries are "Name: value"; a visitor must send each.
	RequireHeader []string `json:"require_header,omitempty"`
}

// HeaderRules add and remove headers. Add entries are "Name: value".
type HeaderRules struct {
	RequestAdd     []string `json:"request_add,omitempty"`
	RequestRemove  []string `json:"request_remove,omitempty"`
	ResponseAdd    []string `json:"response_add,omitempty"`
	ResponseRemove []string `json:"response_remove,omitempty"`
}

// MaxAccessRules caps each list in Access and HeaderRules.
const MaxAccessRules = 64

// Pool strategies.
const (
	PoolRoundRobin   = "round-robin"
	PoolLeastStreams = "least-streams"
)

// Pool joins a load-balanced pool. The first member's strategy holds for
// the pool.
type Pool struct {
	Strategy string `json:"strategy,omitempty"`
}

// Health reports whether a tunnel's local app passes the client's health
// check. An unhealthy pool member gets no visitors until it recovers.
type Health struct {
	TunnelID string `json:"tunnel_id"`
	Healthy  bool   `json:"healthy"`
	Reason   string `json:"reason,omitempty"`
}

// Bound says a tunnel is live.
type Bound struct {
	ID       uint32   `json:"id"`
	TunnelID string   `json:"tunnel_id"`
	Hostname string   `json:"hostname,omitempty"`
	Port     int      `json:"port,omitempty"`
	URLs     []string `json:"urls"`
}

// Error reports a failure. With ID set it answers that Bind; with ID zero it
// concerns the whole session, which the server closes after sending it when
// Final is set.
type Error struct {
	ID      uint32 `json:"id,omitempty"`
	Code    Code   `json:"code"`
	Message string `json:"message"`
	// Final tells the client not to retry: retrying cannot succeed.
	Final bool `json:"final"`
	// RetryAfterMillis, when set, is how long the client should wait.
	RetryAfterMillis int64 `json:"retry_after_ms,omitempty"`
}

// Unbind releases a tunnel at once.
type Unbind struct {
	TunnelID string `json:"tunnel_id"`
}

// Ping and Pong carry a sequence number and the sender's clock, echoed back,
// so the sender can measure round-trip latency.
type Ping struct {
	Seq      uint64 `json:"seq"`
	UnixNano int64  `json:"t"`
}

// Pong answers a Ping with its fields.
type Pong struct {
	Seq      uint64 `json:"seq"`
	UnixNano int64  `json:"t"`
}

// Notice kinds.
const (
	NoticeShutdown = "shutdown" // server is going away; reconnect (elsewhere)
	NoticeRevoked  = "revoked"  // the credential was revoked; final
	NoticeKicked   = "kicked"   // an operator closed the session
)

// Notice tells the client something about the session.
type Notice struct {
	Kind    string `json:"kind"`
	Message string `json:"message"`
	Final   bool   `json:"final"`
}

// GoAway asks the client to open a session to another server now and let
// this one drain: the server stops within DeadlineMillis, finishing the
// requests in flight, and then closes the session with a shutdown notice.
// A client that does not know the message skips it and is disconnected at
// the end, as before.
type GoAway struct {
	Reason         string `json:"reason"`
	DeadlineMillis int64  `json:"deadline_ms"`
}

func (*Hello) Type() MsgType   { return TypeHello }
func (*Welcome) Type() MsgType { return TypeWelcome }
func (*Bind) Type() MsgType    { return TypeBind }
func (*Bound) Type() MsgType   { return TypeBound }
func (*Error) Type() MsgType   { return TypeError }
func (*Unbind) Type() MsgType  { return TypeUnbind }
func (*Ping) Type() MsgType    { return TypePing }
func (*Pong) Type() MsgType    { return TypePong }
func (*Notice) Type() MsgType  { return TypeNotice }
func (*Health) Type() MsgType  { return TypeHealth }
func (*GoAway) Type() MsgType  { return TypeGoAway }

// newMessage returns an empty message of type t, or nil for an unknown type.
func newMessage(t MsgType) Message {
	switch t {
	case TypeHello:
		return &Hello{}
	case TypeWelcome:
		return &Welcome{}
	case TypeBind:
		return &Bind{}
	case TypeBound:
		return &Bound{}
	case TypeError:
		return &Error{}
	case TypeUnbind:
		return &Unbind{}
	case TypePing:
		return &Ping{}
	case TypePong:
		return &Pong{}
	case TypeNotice:
		return &Notice{}
	case TypeHealth:
		return &Health{}
	case TypeGoAway:
		return &GoAway{}
	}
	return nil
}
