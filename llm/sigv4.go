package llm

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// AWSCredentials are the AWS credentials that sign requests with SigV4.
// The secret parts are Secrets: they print as "[redacted]".
type AWSCredentials struct {
	// AccessKeyID is the access key ID ("AKIA…" or, with a session token,
	// "ASIA…").
	AccessKeyID string `json:"access_key_id"`
	// SecretAccessKey is the secret access key.
	SecretAccessKey Secret `json:"secret_access_key"`
	// SessionToken is the session token of temporary credentials, sent
	// as X-Amz-Security-Token; empty for long-term credentials.
	SessionToken Secret `json:"session_token,omitempty"`
}

// SigV4 signs HTTP requests with AWS Signature Version 4, the
// authentication of Amazon Bedrock (and every other AWS API). Gateway.Clusters
// puts one, as cluster middleware, on the cluster of every Bedrock provider
// that signs (one without an API key); a Bedrock provider that names its
// own cluster (Provider.Cluster) needs the middleware added to that
// cluster (see Gateway.Middleware).
//
// Signing happens per attempt, in the cluster's transport, after every
// filter has shaped the request: retries and hedges are signed afresh with
// their own time. Signed are the host, the content type and every
// x-amz-* header; the payload is hashed into the signature.
//
// A SigV4 is immutable once in use and safe for concurrent use.
type SigV4 struct {
	// Region is the AWS region ("us-east-1"). Required.
	Region string
	// Service is the signing name of the service: "bedrock" for Bedrock
	// runtime. Required.
	Service string
	// Credentials sign the requests. Required.
	Credentials AWSCredentials
	// Now returns the signing time; nil means time.Now. Tests fix it.
	Now func() time.Time
}

const (
	sigV4Algorithm = "AWS4-HMAC-SHA256"
	amzDateFormat  = "20060102T150405Z"
)

// Sign signs req in place: it sets X-Amz-Date, X-Amz-Security-Token (for
// temporary credentials) and Authorization. The payload is hashed from
// req.GetBody when set; otherwise req.Body is read and replaced.
func (s *SigV4) Sign(req *http.Request) error {
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	payload, err := payloadHash(req)
	if err != nil {
		return fmt.Errorf("sigv4: read body: %w", err)
	}
	s.sign(req, req.URL.EscapedPath(), payload, now().UTC())
	return nil
}

// Middleware returns next wrapped so that every request is signed before
// next sends it: a cluster middleware (cluster.Config.Middleware). The
// request is cloned, not modified, as http.RoundTripper requires.
func (s *SigV4) Middleware(next http.RoundTripper) http.RoundTripper {
	return sigV4Transport{s: s, next: next}
}

type sigV4Transport struct {
	s    *SigV4
	next http.RoundTripper
}

func (t sigV4Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	r := req.Clone(req.Context())
	if err := t.s.Sign(r); err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	return t.next.RoundTrip(r)
}

// payloadHash returns the hex SHA-256 of the request body.
func payloadHash(req *http.Request) (string, error) {
	var body []byte
	switch {
	case req.Body == nil || req.Body == http.NoBody:
	case req.GetBody != nil:
		rc, err := req.GetBody()
		if err != nil {
			return "", err
		}
		h := sha256.New()
		_, err = io.Copy(h, rc)
		rc.Close()
		if err != nil {
			return "", err
		}
		return hex.EncodeToString(h.Sum(nil)), nil
	default:
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return "", err
		}
		body = b
		req.Body = io.NopCloser(bytes.NewReader(b))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	}
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:]), nil
}

// sign signs req for the escaped path it is sent with (its canonical URI
// is that path URI-encoded once more, as every AWS service but S3
// expects).
func (s *SigV4) sign(req *http.Request, wirePath, payload string, t time.Time) {
	amzDate := t.Format(amzDateFormat)
	h := req.Header
	if h == nil {
		h = http.Header{}
		req.Header = h
	}
	h.Set("X-Amz-Date", amzDate)
	if tok := string(s.Credentials.SessionToken); tok != "" {
		h.Set("X-Amz-Security-Token", tok)
	} else {
		h.Del("X-Amz-Security-Token")
	}
	h.Del("Authorization")
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	canonical, signed := canonicalRequest(req.Method, wirePath, req.URL.RawQuery, host, h, payload)
	scope := amzDate[:8] + "/" + s.Region + "/" + s.Service + "/aws4_request"
	sum := sha256.Sum256([]byte(canonical))
	toSign := sigV4Algorithm + "\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(sum[:])
	key := hmacSHA256([]byte("AWS4"+string(s.Credentials.SecretAccessKey)), amzDate[:8])
	key = hmacSHA256(key, s.Region)
	key = hmacSHA256(key, s.Service)
	key = hmacSHA256(key, "aws4_request")
	sig := hex.EncodeToString(hmacSHA256(key, toSign))
	h.Set("Authorization", sigV4Algorithm+" Credential="+s.Credentials.AccessKeyID+"/"+scope+
		", SignedHeaders="+signed+", Signature="+sig)
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

// canonicalRequest returns SigV4's canonical request and the signed header
// list. It signs host, content-type and every x-amz-* header.
func canonicalRequest(method, wirePath, rawQuery, host string, h http.Header, payload string) (canonical, signed string) {
	type kv struct{ k, v string }
	hdrs := []kv{{"host", strings.TrimSpace(host)}}
	for name, vv := range h {
		lk := strings.ToLower(name)
		if lk != "content-type" && !strings.HasPrefix(lk, "x-amz-") {
			continue
		}
		vals := make([]string, len(vv))
		for i, v := range vv {
			vals[i] = strings.Join(strings.Fields(v), " ")
		}
		hdrs = append(hdrs, kv{lk, strings.Join(vals, ",")})
	}
	slices.SortFunc(hdrs, func(a, b kv) int { return strings.Compare(a.k, b.k) })
	var b strings.Builder
	b.WriteString(method)
	b.WriteByte('\n')
	b.WriteString(canonicalURI(wirePath))
	b.WriteByte('\n')
	b.WriteString(canonicalQuery(rawQuery))
	b.WriteByte('\n')
	var names strings.Builder
	for i, e := range hdrs {
		b.WriteString(e.k)
		b.WriteByte(':')
		b.WriteString(e.v)
		b.WriteByte('\n')
		if i > 0 {
			names.WriteByte(';')
		}
		names.WriteString(e.k)
	}
	b.WriteByte('\n')
	b.WriteString(names.String())
	b.WriteByte('\n')
	b.WriteString(payload)
	return b.String(), names.String()
}

// canonicalURI URI-encodes each segment of the path as sent.
func canonicalURI(wirePath string) string {
	if wirePath == "" {
		return "/"
	}
	segs := strings.Split(wirePath, "/")
	for i, s := range segs {
		segs[i] = awsEscape(s)
	}
	return strings.Join(segs, "/")
}

// canonicalQuery sorts the query's parameters and re-encodes them.
func canonicalQuery(raw string) string {
	if raw == "" {
		return ""
	}
	var params []string
	for _, p := range strings.Split(raw, "&") {
		if p == "" {
			continue
		}
		k, v, _ := strings.Cut(p, "=")
		if uk, err := url.QueryUnescape(k); err == nil {
			k = uk
		}
		if uv, err := url.QueryUnescape(v); err == nil {
			v = uv
		}
		params = append(params, awsEscape(k)+"="+awsEscape(v))
	}
	slices.Sort(params)
	return strings.Join(params, "&")
}

// awsEscape percent-encodes every byte but the unreserved characters
// (RFC 3986), with upper-case hex, as SigV4 requires.
func awsEscape(s string) string {
	const hexUpper = "0123456789ABCDEF"
	n := 0
	for i := 0; i < len(s); i++ {
		if !unreserved(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	b := make([]byte, 0, len(s)+2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if unreserved(c) {
			b = append(b, c)
			continue
		}
		b = append(b, '%', hexUpper[c>>4], hexUpper[c&15])
	}
	return string(b)
}

func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~'
}

// validate reports whether the signer is usable.
func (s *SigV4) validate() error {
	switch {
	case s.Region == "":
		return errors.New("region: required to sign requests")
	case s.Service == "":
		return errors.New("service: required to sign requests")
	case s.Credentials.AccessKeyID == "" || s.Credentials.SecretAccessKey == "":
		return errors.New("credentials: an access key ID and a secret access key are required")
	}
	return nil
}
