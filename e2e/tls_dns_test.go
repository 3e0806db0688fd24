package e2e

import (
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// tlsDNS is a small authoritative DNS server on 127.0.0.1 (UDP and TCP on
// one port) for the ACME test: every name in its zones resolves to
// 127.0.0.1, and it accepts RFC 2136 updates signed with its TSIG key, the
// way a real primary would take them from certmagic's rfc2136 provider.
// Pebble asks it (over TCP) for A records and for the DNS-01 TXT records.
type tlsDNS struct {
	Addr    string
	KeyName string // TSIG key name, fully qualified
	Secret  string // TSIG secret, base64

	zones []string // fully qualified, lowercase

	mu      sync.Mutex
	txt     map[string][]string // fqdn -> values
	updates int                 // accepted updates
	refused int                 // updates refused for a bad or missing signature
}

func startTLSDNS(t *testing.T, zones ...string) *tlsDNS {
	t.Helper()
	d := &tlsDNS{
		KeyName: "porthole-test.",
		// base64 of 32 fixed bytes: a test key, not a secret.
		Secret: "cG9ydGhvbGUtdGVzdC10c2lnLWtleS0wMTIzNDU2Nzg=",
		txt:    map[string][]string{},
	}
	for _, z := range zones {
		d.zones = append(d.zones, dns.Fqdn(strings.ToLower(z)))
	}
	// UDP and TCP must share the port: the resolvers are given one
	// address. Retry when the TCP side of a free UDP port is taken.
	var pc net.PacketConn
	var ln net.Listener
	for i := 0; ; i++ {
		var err error
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
		if i == 20 {
			t.Fatal("no port free for both UDP and TCP")
		}
	}
	d.Addr = pc.LocalAddr().String()
	secrets := map[string]string{d.KeyName: d.Secret}
	// The default accept function answers NOTIMP to UPDATE messages.
	accept := func(dns.Header) dns.MsgAcceptAction { return dns.MsgAccept }
	udp := &dns.Server{PacketConn: pc, Handler: d, TsigSecret: secrets, MsgAcceptFunc: accept}
	tcp := &dns.Server{Listener: ln, Handler: d, TsigSecret: secrets, MsgAcceptFunc: accept}
	go udp.ActivateAndServe()
	go tcp.ActivateAndServe()
	t.Cleanup(func() {
		udp.Shutdown()
		tcp.Shutdown()
	})
	return d
}

// zoneOf returns the zone holding name, or "".
func (d *tlsDNS) zoneOf(name string) string {
	for _, z := range d.zones {
		if name == z || strings.HasSuffix(name, "."+z) {
			return z
		}
	}
	return ""
}

func (d *tlsDNS) soa(zone string) *dns.SOA {
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 60},
		Ns:      "ns." + zone,
		Mbox:    "hostmaster." + zone,
		Serial:  uint32(time.Now().Unix()),
		Refresh: 60, Retry: 60, Expire: 600, Minttl: 1,
	}
}

func (d *tlsDNS) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	if r.Opcode == dns.OpcodeUpdate {
		d.update(w, r, m)
		return
	}
	if len(r.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		w.WriteMsg(m)
		return
	}
	q := r.Question[0]
	name := strings.ToLower(q.Name)
	zone := d.zoneOf(name)
	if zone == "" {
		m.Rcode = dns.RcodeRefused
		w.WriteMsg(m)
		return
	}
	hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: 1}
	switch q.Qtype {
	case dns.TypeSOA:
		if name == zone {
			m.Answer = append(m.Answer, d.soa(zone))
		} else {
			m.Ns = append(m.Ns, d.soa(zone))
		}
	case dns.TypeA:
		hdr.Rrtype = dns.TypeA
		m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: net.IPv4(127, 0, 0, 1)})
	case dns.TypeTXT:
		hdr.Rrtype = dns.TypeTXT
		d.mu.Lock()
		for _, v := range d.txt[name] {
			m.Answer = append(m.Answer, &dns.TXT{Hdr: hdr, Txt: []string{v}})
		}
		d.mu.Unlock()
	default:
		// No AAAA, CAA or anything else: an empty NOERROR answer.
		m.Ns = append(m.Ns, d.soa(zone))
	}
	w.WriteMsg(m)
}

// update applies an RFC 2136 update to the TXT records after checking its
// TSIG signature (RFC 8945); an unsigned or badly signed one is refused.
func (d *tlsDNS) update(w dns.ResponseWriter, r *dns.Msg, m *dns.Msg) {
	if r.IsTsig() == nil || w.TsigStatus() != nil {
		d.mu.Lock()
		d.refused++
		d.mu.Unlock()
		m.Rcode = dns.RcodeNotAuth
		w.WriteMsg(m)
		return
	}
	if len(r.Question) != 1 || d.zoneOf(strings.ToLower(r.Question[0].Name)) == "" {
		m.Rcode = dns.RcodeNotZone
		w.WriteMsg(m)
		return
	}
	d.mu.Lock()
	for _, rr := range r.Ns {
		h := rr.Header()
		name := strings.ToLower(h.Name)
		txt, isTXT := rr.(*dns.TXT)
		switch h.Class {
		case dns.ClassINET: // add
			if isTXT {
				d.txt[name] = append(d.txt[name], strings.Join(txt.Txt, ""))
			}
		case dns.ClassANY: // delete an RRset or a name
			delete(d.txt, name)
		case dns.ClassNONE: // delete one record
			if isTXT {
				v := strings.Join(txt.Txt, "")
				kept := d.txt[name][:0]
				for _, old := range d.txt[name] {
					if old != v {
						kept = append(kept, old)
					}
				}
				d.txt[name] = kept
			}
		}
	}
	d.updates++
	d.mu.Unlock()
	// Sign the answer with the same key, as the client expects.
	m.SetTsig(d.KeyName, r.IsTsig().Algorithm, 300, time.Now().Unix())
	w.WriteMsg(m)
}

// counts returns how many updates were accepted and refused.
func (d *tlsDNS) counts() (accepted, refused int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.updates, d.refused
}
