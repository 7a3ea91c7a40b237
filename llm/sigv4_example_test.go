package llm_test

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/porticoproxy/portico/cluster"
	"github.com/porticoproxy/portico/llm"
)

// Sign Bedrock requests on a cluster of your own: SigV4 is cluster
// middleware, run for every attempt after the filters have shaped the
// request. (Gateway.Clusters does this for the clusters it makes.)
func ExampleSigV4() {
	signer := &llm.SigV4{
		Region:      "us-east-1",
		Service:     "bedrock",
		Credentials: llm.AWSCredentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"},
		Now:         func() time.Time { return time.Date(2015, 8, 30, 12, 36, 0, 0, time.UTC) }, // for a stable output
	}
	egress := cluster.Config{
		Name:       "bedrock_egress",
		Endpoints:  []cluster.Endpoint{{Address: "bedrock-runtime.us-east-1.amazonaws.com:443"}},
		TLS:        &cluster.TLSConfig{ServerName: "bedrock-runtime.us-east-1.amazonaws.com"},
		Middleware: []func(http.RoundTripper) http.RoundTripper{signer.Middleware},
	}
	_ = egress // with llm.Provider{Kind: llm.Bedrock, Cluster: "bedrock_egress", …}

	// What the middleware does to each request:
	req, _ := http.NewRequest("POST", "https://bedrock-runtime.us-east-1.amazonaws.com/model/amazon.nova-lite-v1%3A0/converse",
		strings.NewReader(`{"messages":[]}`))
	req.Header.Set("Content-Type", "application/json")
	if err := signer.Sign(req); err != nil {
		fmt.Println(err)
		return
	}
	auth, _ := strings.CutPrefix(req.Header.Get("Authorization"), "AWS4-HMAC-SHA256 ")
	for _, part := range strings.Split(auth, ", ") {
		fmt.Println(part)
	}
	// Output:
	// Credential=AKIDEXAMPLE/20150830/us-east-1/bedrock/aws4_request
	// SignedHeaders=content-type;host;x-amz-date
	// Signature=2a2d094e2f2c3db248bdf8159ce65eb6201190056141c69fd6ab42b2e7f527fe
}
