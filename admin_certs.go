package portico

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"os"
	"sort"
	"strconv"
	"time"

	"github.com/porticoproxy/portico/listener"
)

// certInfo is one certificate in use, in the fields of Envoy's
// CertificateDetails.
type certInfo struct {
	owner   string // "listener <name> chain <chain>" or "cluster <name>"
	ca      bool   // a trusted CA rather than a served certificate
	path    string // the file, or "<inline>"
	serial  string
	sans    []map[string]string
	days    int64
	from    time.Time
	expires time.Time
	err     error // the certificate could not be read or parsed
}

// certsLocked lists the certificates in use: each listener filter chain's
// served certificates (the leaf of each chain) and each cluster's trusted
// CAs. It reads certificate files as they are now. g.mu is held.
func (g *Gateway) certsLocked(now time.Time) []certInfo {
	var out []certInfo
	for _, ll := range g.listeners {
		chains := ll.cfg.FilterChains
		if ll.cfg.DefaultFilterChain != nil {
			chains = append(chains[:len(chains):len(chains)], *ll.cfg.DefaultFilterChain)
		}
		for _, fc := range chains {
			if fc.TLS == nil {
				continue
			}
			owner := "listener " + ll.cfg.Name + " chain " + fc.Name
			for _, c := range fc.TLS.Certificates {
				out = append(out, leafInfo(owner, c, now))
			}
		}
	}
	for name, lc := range g.clusters.Load().byName {
		t := lc.c.Config().TLS
		if t == nil {
			continue
		}
		owner := "cluster " + name
		if len(t.RootCAs) > 0 {
			out = append(out, bundleInfo(owner, "<inline>", t.RootCAs, nil, now)...)
		}
		if t.RootCAFile != "" {
			b, err := os.ReadFile(t.RootCAFile)
			out = append(out, bundleInfo(owner, t.RootCAFile, b, err, now)...)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].owner < out[j].owner })
	return out
}

func leafInfo(owner string, c listener.Certificate, now time.Time) certInfo {
	pemBytes, path, err := c.CertPEM, "<inline>", error(nil)
	if len(pemBytes) == 0 {
		path = c.CertFile
		pemBytes, err = os.ReadFile(c.CertFile)
	}
	if err != nil {
		return certInfo{owner: owner, path: path, err: err}
	}
	infos := bundleInfo(owner, path, pemBytes, nil, now)
	if len(infos) == 0 {
		return certInfo{owner: owner, path: path, err: errors.New("no PEM certificate")}
	}
	infos[0].ca = false
	return infos[0]
}

// bundleInfo describes every certificate of a PEM bundle as a CA.
func bundleInfo(owner, path string, b []byte, err error, now time.Time) []certInfo {
	if err != nil {
		return []certInfo{{owner: owner, ca: true, path: path, err: err}}
	}
	var out []certInfo
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return out
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		ci := certInfo{owner: owner, ca: true, path: path}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			ci.err = err
			out = append(out, ci)
			continue
		}
		ci.serial = c.SerialNumber.Text(16)
		for _, n := range c.DNSNames {
			ci.sans = append(ci.sans, map[string]string{"dns": n})
		}
		for _, ip := range c.IPAddresses {
			ci.sans = append(ci.sans, map[string]string{"ip_address": ip.String()})
		}
		for _, u := range c.URIs {
			ci.sans = append(ci.sans, map[string]string{"uri": u.String()})
		}
		ci.from, ci.expires = c.NotBefore, c.NotAfter
		ci.days = max(int64(c.NotAfter.Sub(now)/(24*time.Hour)), 0)
		out = append(out, ci)
	}
}

// adminCerts serves /certs as Envoy's Certificates: one element per TLS
// context (listener filter chain or cluster) with its ca_cert and
// cert_chain details.
func (g *Gateway) adminCerts(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	certs := g.certsLocked(time.Now())
	g.mu.Unlock()
	type details struct {
		Path                string              `json:"path"`
		SerialNumber        string              `json:"serial_number,omitempty"`
		SubjectAltNames     []map[string]string `json:"subject_alt_names,omitempty"`
		DaysUntilExpiration string              `json:"days_until_expiration,omitempty"`
		ValidFrom           *time.Time          `json:"valid_from,omitempty"`
		ExpirationTime      *time.Time          `json:"expiration_time,omitempty"`
		Error               string              `json:"error,omitempty"`
	}
	type context struct {
		CACert    []details `json:"ca_cert"`
		CertChain []details `json:"cert_chain"`
	}
	var out []context
	owner := ""
	for _, c := range certs {
		if len(out) == 0 || c.owner != owner {
			out = append(out, context{CACert: []details{}, CertChain: []details{}})
			owner = c.owner
		}
		d := details{Path: c.path}
		if c.err != nil {
			d.Error = c.err.Error()
		} else {
			from, exp := c.from, c.expires
			d.SerialNumber, d.SubjectAltNames = c.serial, c.sans
			d.DaysUntilExpiration = strconv.FormatInt(c.days, 10)
			d.ValidFrom, d.ExpirationTime = &from, &exp
		}
		cur := &out[len(out)-1]
		if c.ca {
			cur.CACert = append(cur.CACert, d)
		} else {
			cur.CertChain = append(cur.CertChain, d)
		}
	}
	if out == nil {
		out = []context{}
	}
	writeJSON(w, map[string]any{"certificates": out})
}
