package xds

// CONTRACT FILE for the issue-5 helpers (written by the lead). The types
// and signatures here are what the three parts of the xds package agree
// on; bodies marked "owner: ..." are filled by that part. Fields may be
// added; signatures change only by agreement with the lead.

import (
	"crypto/tls"
	"crypto/x509"
	"errors"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/porticoproxy/portico/cluster"
	"github.com/porticoproxy/portico/route"
)

var errNotImplemented = errors.New("xds: not implemented yet")

// Refs are the resources a translated resource depends on, by name: what
// an xDS client must subscribe to (and wait for, when warming) before the
// resource can serve.
type Refs struct {
	// Routes are RDS route configuration names (HCM rds.route_config_name).
	Routes []string
	// Secrets are SDS secret names (sds_secret_config(s) in TLS contexts).
	Secrets []string
	// Endpoints are EDS service names: a Cluster of type EDS depends on
	// the ClusterLoadAssignment named eds_cluster_config.service_name, or
	// the cluster's own name when that is empty.
	Endpoints []string
}

// Secret is a translated SDS secret: a TLS certificate (with key) or a
// validation context (trusted CAs, SAN matchers), or both.
type Secret struct {
	Name string
	// CertPEM and KeyPEM are set for a tls_certificate secret.
	CertPEM, KeyPEM []byte
	// Certificate is the parsed pair, for expiry reporting.
	Certificate *tls.Certificate
	// CAPEM holds the trusted CAs of a validation_context secret.
	CAPEM []byte
	// Roots is CAPEM parsed.
	Roots *x509.CertPool
	// MatchSubjectAltNames are the validation context's SAN matchers.
	MatchSubjectAltNames []cluster.SANMatcher
}

// SecretLookup returns the current version of a named SDS secret; ok is
// false when the secret is not known (yet). Translators that meet an SDS
// reference call it; a missing secret is an error naming the secret.
type SecretLookup func(name string) (s *Secret, ok bool)

// HTTPFilterFactory, FilterRegistry and FactoryContext (owner: listener
// part) are in filters.go.

// Translator turns Envoy v3 resources into Portico configuration. The
// zero value is strict, with the default HTTP filters (DefaultFilters), no
// SDS secrets and the system DNS resolver.
type Translator struct {
	// Options are the strict/lenient settings shared by every resource.
	Options TranslateOptions
	// Filters resolves HCM http_filters; nil means DefaultFilters().
	Filters *FilterRegistry
	// FactoryContext is what filter factories and connection managers
	// are built against: the gateway's health-check state, the access
	// logs' owner, a logger (filters.go).
	FactoryContext FactoryContext
	// Secrets resolves SDS references; nil means none are known.
	Secrets SecretLookup
	// Resolver resolves STRICT_DNS/LOGICAL_DNS hosts and the dynamic
	// forward proxy's DNS cache; nil means the system resolver.
	Resolver cluster.Resolver

	// dnsCaches are the dynamic forward proxy DNS caches by name, shared
	// by the clusters naming them; guarded by dnsCachesMu (owner: cluster
	// part, cluster_dfp.go).
	dnsCaches map[string]*sharedDNSCache
}

// Translator.Listener (owner: listener part) is in listener.go.

// RouteConfiguration translates an RDS resource.
func (t *Translator) RouteConfiguration(rc *routev3.RouteConfiguration) (route.Config, error) {
	return TranslateRouteConfiguration(rc, t.Options)
}

// Translator.Cluster, Translator.Endpoints and Translator.Secret (owner:
// cluster part) are in cluster.go, endpoint.go and secret.go.

// Mode selects the xDS transport variant.
type Mode int

const (
	// ADS is state-of-the-world aggregated discovery on one stream.
	ADS Mode = iota
	// DeltaADS is incremental aggregated discovery on one stream.
	DeltaADS
	// PerType opens one state-of-the-world stream per resource type
	// (LDS, RDS, CDS, EDS, SDS services).
	PerType
	// DeltaPerType opens one incremental stream per resource type.
	DeltaPerType
)

// NACK describes a rejected update, for ClientConfig.OnNACK.
type NACK struct {
	TypeURL  string
	Version  string
	Nonce    string
	Resource string // the rejected resource's name, when known
	Err      error
}

// ClientConfig, Client, NewClient and Run are in client.go.
