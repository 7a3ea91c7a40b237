package llm

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// The AWS Signature Version 4 test suite's credentials, scope and time
// (docs.aws.amazon.com/IAM/latest/UserGuide/signature-v4-test-suite.html;
// also awslabs/aws-c-auth tests/aws-signing-test-suite/v4).
var suiteSigner = SigV4{
	Region:      "us-east-1",
	Service:     "service",
	Credentials: AWSCredentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"},
	Now:         func() time.Time { return time.Date(2015, 8, 30, 12, 36, 0, 0, time.UTC) },
}

const suiteCredential = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "

// TestSigV4Suite checks the signer against AWS's published test vectors.
func TestSigV4Suite(t *testing.T) {
	for _, tc := range []struct {
		name    string
		method  string
		target  string // as sent on the wire
		header  map[string]string
		body    string
		token   string
		want    string
		wantCan string // canonical request, when the suite publishes it
	}{{
		name: "get-vanilla", method: "GET", target: "/",
		want: "SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
		wantCan: "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n" +
			"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
	}, {
		name: "get-vanilla-query-order-key-case", method: "GET", target: "/?Param2=value2&Param1=value1",
		want: "SignedHeaders=host;x-amz-date, Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
	}, {
		name: "get-utf8", method: "GET", target: "/ሴ",
		want: "SignedHeaders=host;x-amz-date, Signature=8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85",
	}, {
		name: "post-vanilla", method: "POST", target: "/",
		want: "SignedHeaders=host;x-amz-date, Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
	}, {
		name: "post-x-www-form-urlencoded", method: "POST", target: "/",
		header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, body: "Param1=value1",
		want: "SignedHeaders=content-type;host;x-amz-date, Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a",
		wantCan: "POST\n/\n\ncontent-type:application/x-www-form-urlencoded\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n" +
			"content-type;host;x-amz-date\n9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
	}, {
		name: "get-vanilla-with-session-token", method: "GET", target: "/",
		token: "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267",
		want:  "SignedHeaders=host;x-amz-date;x-amz-security-token, Signature=07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			s := suiteSigner
			s.Credentials.SessionToken = Secret(tc.token)
			path, query, _ := strings.Cut(tc.target, "?")
			req := httptest.NewRequest(tc.method, "http://example.amazonaws.com/", strings.NewReader(tc.body))
			req.URL.RawQuery = query
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			payload, err := payloadHash(req)
			if err != nil {
				t.Fatal(err)
			}
			s.sign(req, path, payload, s.Now())
			if got := req.Header.Get("Authorization"); got != suiteCredential+tc.want {
				t.Errorf("Authorization =\n%s\nwant\n%s", got, suiteCredential+tc.want)
			}
			if got := req.Header.Get("X-Amz-Date"); got != "20150830T123600Z" {
				t.Errorf("X-Amz-Date = %q", got)
			}
			if got := req.Header.Get("X-Amz-Security-Token"); got != tc.token {
				t.Errorf("X-Amz-Security-Token = %q, want %q", got, tc.token)
			}
			if tc.wantCan != "" {
				got, _ := canonicalRequest(tc.method, path, query, "example.amazonaws.com", req.Header, payload)
				if got != tc.wantCan {
					t.Errorf("canonical request =\n%s\nwant\n%s", got, tc.wantCan)
				}
			}
			if b, _ := io.ReadAll(req.Body); string(b) != tc.body {
				t.Errorf("body after signing = %q", b)
			}
		})
	}
}

// TestSigV4BedrockPath checks the case every hand-written Bedrock signer
// gets wrong once: model IDs hold ':' (and ARNs '/'), which are sent
// percent-encoded and signed encoded twice.
func TestSigV4BedrockPath(t *testing.T) {
	req := httptest.NewRequest("POST", "https://bedrock-runtime.us-east-1.amazonaws.com/", strings.NewReader(`{}`))
	req.URL.Path, req.URL.RawPath = bedrockPath("anthropic.claude-3-5-sonnet-20240620-v1:0", "converse")
	if got := req.URL.EscapedPath(); got != "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse" {
		t.Fatalf("path on the wire = %s", got)
	}
	can, _ := canonicalRequest("POST", req.URL.EscapedPath(), "", "bedrock-runtime.us-east-1.amazonaws.com", http.Header{}, "x")
	if !strings.Contains(can, "\n/model/anthropic.claude-3-5-sonnet-20240620-v1%253A0/converse\n") {
		t.Errorf("canonical request:\n%s", can)
	}
	req.URL.Path, req.URL.RawPath = bedrockPath("arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude", "converse-stream")
	if got := req.URL.EscapedPath(); got != "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude/converse-stream" {
		t.Errorf("ARN path on the wire = %s", got)
	}
}

// TestSigV4Middleware signs through a cluster-style RoundTripper chain: the
// request reaching the transport carries a signature over its final host,
// path and body; the caller's request is not modified; each attempt is
// signed with its own time.
func TestSigV4Middleware(t *testing.T) {
	clock := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	s := &SigV4{Region: "eu-west-3", Service: "bedrock",
		Credentials: AWSCredentials{AccessKeyID: "AKIDTEST", SecretAccessKey: "secret-SECRET", SessionToken: "tok"},
		Now:         func() time.Time { return clock }}
	var got []*http.Request
	var bodies []string
	rt := s.Middleware(roundTripFunc(func(r *http.Request) (*http.Response, error) {
		b, _ := io.ReadAll(r.Body)
		got = append(got, r)
		bodies = append(bodies, string(b))
		return &http.Response{StatusCode: 200, Body: http.NoBody}, nil
	}))
	body := []byte(`{"messages":[]}`)
	req, _ := http.NewRequest("POST", "http://10.0.0.1:8443/model/m%3A0/converse", bytes.NewReader(body))
	req.Host = "bedrock-runtime.eu-west-3.amazonaws.com"
	req.Header.Set("Content-Type", "application/json")
	for range 2 {
		req.Body, _ = req.GetBody() // as the cluster does for each attempt
		if _, err := rt.RoundTrip(req); err != nil {
			t.Fatal(err)
		}
		clock = clock.Add(time.Minute)
	}
	if req.Header.Get("Authorization") != "" || req.Header.Get("X-Amz-Date") != "" {
		t.Errorf("the caller's request was modified: %v", req.Header)
	}
	for i, r := range got {
		if bodies[i] != string(body) {
			t.Errorf("attempt %d: body %q", i, bodies[i])
		}
		// Verify independently: re-sign a copy with the same time and
		// compare.
		v := r.Clone(r.Context())
		v.Body = io.NopCloser(bytes.NewReader(body))
		v.GetBody = nil
		when, _ := time.Parse(amzDateFormat, r.Header.Get("X-Amz-Date"))
		vs := *s
		vs.Now = func() time.Time { return when }
		if err := vs.Sign(v); err != nil {
			t.Fatal(err)
		}
		auth := r.Header.Get("Authorization")
		if auth == "" || auth != v.Header.Get("Authorization") {
			t.Errorf("attempt %d: Authorization %q, re-signed %q", i, auth, v.Header.Get("Authorization"))
		}
		wantScope := fmt.Sprintf("Credential=AKIDTEST/202601%02d/eu-west-3/bedrock/aws4_request", 2)
		if !strings.Contains(auth, wantScope) || !strings.Contains(auth, "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token,") {
			t.Errorf("attempt %d: Authorization %q", i, auth)
		}
		if r.Header.Get("X-Amz-Security-Token") != "tok" {
			t.Errorf("attempt %d: no session token", i)
		}
	}
	if got[0].Header.Get("X-Amz-Date") == got[1].Header.Get("X-Amz-Date") {
		t.Error("both attempts were signed with the same time")
	}
	// A different host, path or body changes the signature.
	base := got[0].Header.Get("Authorization")
	for _, mutate := range []func(*http.Request){
		func(r *http.Request) { r.Host = "evil.example" },
		func(r *http.Request) { r.URL.Path, r.URL.RawPath = "/model/m:1/converse", "/model/m%3A1/converse" },
		func(r *http.Request) { r.Body = io.NopCloser(strings.NewReader(`{"messages":[1]}`)) },
	} {
		v, _ := http.NewRequest("POST", "http://10.0.0.1:8443/model/m%3A0/converse", bytes.NewReader(body))
		v.Host = req.Host
		v.Header.Set("Content-Type", "application/json")
		mutate(v)
		v.GetBody = nil
		vs := *s
		vs.Now = func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }
		vs.Sign(v)
		if v.Header.Get("Authorization") == base {
			t.Error("a changed request kept the same signature")
		}
	}
	if s := fmt.Sprintf("%v %+v", *s, s.Credentials); strings.Contains(s, "SECRET") {
		t.Errorf("the secret prints: %s", s)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
