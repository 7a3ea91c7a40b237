package llm

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/porticoproxy/portico/filter"
	"github.com/porticoproxy/portico/llm/internal/eventstream"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

const testKey = "sk-upstream-SECRET-0123456789"

// goldenCase is one directory of testdata/golden. Its name says the front
// door and the provider: "oa-an-…" is an OpenAI Chat client served by an
// Anthropic provider, "an-oa-…" the reverse, "oa-oa-…" and "an-an-…"
// same-schema pass-through. Front doors: oa (Chat Completions), an
// (Messages), ct (count_tokens), rs (Responses), em (Embeddings).
// Providers: oa (OpenAI-compatible), on (OpenAI with native Responses),
// an (Anthropic), gm (Gemini), br (Bedrock), az (Azure OpenAI).
//
// Inputs: request.json (the client's body), upstream.json, upstream.sse
// or upstream.bedrock (the scripted provider response; the last is a
// Bedrock event stream written one message a line, "<event-type> <json>"
// or "!<exception-type> <json>", and encoded to binary by the test) and
// upstream.status (optional). Goldens: want_upstream.json (the request
// the provider got), want_upstream_path.txt (its path and query),
// want_response.json or
// want_response.sse (what the client got) and want_call.json (the Call,
// usage included).
type goldenCase struct {
	name     string
	dir      string
	api      API
	prov     string
	kind     Kind
	request  []byte
	upstream []byte
	status   int
	stream   bool
	binary   bool // a Bedrock event stream
}

var goldenFronts = map[string]API{"oa": ChatCompletions, "an": Messages, "ct": CountTokens, "rs": Responses, "em": Embeddings}

var goldenKinds = map[string]Kind{"oa": OpenAI, "on": OpenAI, "an": Anthropic, "gm": Gemini, "br": Bedrock, "az": AzureOpenAI}

func loadGolden(t *testing.T) []goldenCase {
	t.Helper()
	dirs, err := filepath.Glob("testdata/golden/*")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no golden cases: %v", err)
	}
	var out []goldenCase
	for _, dir := range dirs {
		c := goldenCase{name: filepath.Base(dir), dir: dir, status: http.StatusOK}
		front, prov, _ := strings.Cut(c.name, "-")
		prov, _, _ = strings.Cut(prov, "-")
		var ok bool
		if c.api, ok = goldenFronts[front]; !ok {
			t.Fatalf("%s: unknown front door %q", dir, front)
		}
		if c.kind, ok = goldenKinds[prov]; !ok {
			t.Fatalf("%s: unknown provider %q", dir, prov)
		}
		c.prov = prov
		c.request = mustRead(t, filepath.Join(dir, "request.json"))
		if b, err := os.ReadFile(filepath.Join(dir, "upstream.sse")); err == nil {
			c.upstream, c.stream = b, true
		} else if b, err := os.ReadFile(filepath.Join(dir, "upstream.bedrock")); err == nil {
			c.upstream, c.stream, c.binary = encodeBedrockStream(t, b), true, true
		} else {
			c.upstream, _ = os.ReadFile(filepath.Join(dir, "upstream.json"))
		}
		if b, err := os.ReadFile(filepath.Join(dir, "upstream.status")); err == nil {
			c.status, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		}
		out = append(out, c)
	}
	return out
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// goldenResult is what one run of a case produced.
type goldenResult struct {
	upstream     []byte
	upstreamPath string
	upstreamHdr  http.Header
	status       int
	header       http.Header
	body         []byte
	call         *Call
}

// chunkReader returns one chunk per Read.
type chunkReader struct{ chunks [][]byte }

func (r *chunkReader) Read(p []byte) (int, error) {
	for len(r.chunks) > 0 && len(r.chunks[0]) == 0 {
		r.chunks = r.chunks[1:]
	}
	if len(r.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.chunks[0])
	r.chunks[0] = r.chunks[0][n:]
	return n, nil
}

func (r *chunkReader) Close() error { return nil }

// encodeBedrockStream encodes the text form of a Bedrock event stream.
func encodeBedrockStream(t testing.TB, text []byte) []byte {
	t.Helper()
	var out []byte
	for _, line := range strings.Split(string(text), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		name, payload, ok := strings.Cut(line, " ")
		if !ok || !json.Valid([]byte(payload)) {
			t.Fatalf("bad event stream line %q", line)
		}
		hdrs := [][2]string{{":event-type", name}, {":content-type", "application/json"}, {":message-type", "event"}}
		if exc, ok := strings.CutPrefix(name, "!"); ok {
			hdrs = [][2]string{{":exception-type", exc}, {":content-type", "application/json"}, {":message-type", "exception"}}
		}
		out = eventstream.AppendMessage(out, hdrs, []byte(payload))
	}
	return out
}

func testGateway(t testing.TB, kind Kind) *Gateway {
	t.Helper()
	return testGatewayFor(t, kind, Provider{})
}

// testGatewayFor is testGateway with the provider's other fields from p.
func testGatewayFor(t testing.TB, kind Kind, p Provider) *Gateway {
	t.Helper()
	p.Name, p.Kind, p.BaseURL, p.APIKey = "up", kind, baseFor(kind), testKey
	g, err := New(Config{
		Providers: []Provider{p},
		Models: []Model{
			{Name: "alias-model", Provider: "up", UpstreamModel: "real-model"},
			{Name: "*", Provider: "up"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	g.now = func() time.Time { return time.Unix(1700000000, 0) }
	return g
}

func baseFor(kind Kind) string {
	if kind == OpenAI {
		return "http://upstream.test/v1"
	}
	return "http://upstream.test"
}

// wantPaths are the upstream paths of each provider kind.
var wantPaths = map[Kind][]string{
	OpenAI:      {"/v1/chat/completions", "/v1/responses", "/v1/embeddings"},
	Anthropic:   {"/v1/messages"},
	Gemini:      {"/v1beta/models/"},
	Bedrock:     {"/model/"},
	AzureOpenAI: {"/openai/deployments/"},
}

func pathFor(api API) string {
	switch api {
	case ChatCompletions:
		return "/v1/chat/completions"
	case CountTokens:
		return "/v1/messages/count_tokens"
	case Responses:
		return "/v1/responses"
	case Embeddings:
		return "/v1/embeddings"
	}
	return "/v1/messages"
}

// run serves the case through a chain holding the front door, with the
// upstream body delivered in the given chunks.
func (c *goldenCase) run(t testing.TB, chunks [][]byte) goldenResult {
	t.Helper()
	var p Provider
	if c.prov == "on" {
		p.Responses = ResponsesNative
	}
	g := testGatewayFor(t, c.kind, p)
	chain, err := filter.NewChain(g.FrontDoor(c.api))
	if err != nil {
		t.Fatal(err)
	}
	var res goldenResult
	up := filter.UpstreamFunc(func(ctx context.Context, x *filter.Exchange) (*http.Response, error) {
		res.upstream, _ = io.ReadAll(x.Out.Body)
		res.upstreamPath = x.Out.URL.EscapedPath()
		if q := x.Out.URL.RawQuery; q != "" {
			res.upstreamPath += "?" + q
		}
		res.upstreamHdr = x.Out.Header.Clone()
		ct := "application/json"
		cl := int64(len(c.upstream))
		if c.stream {
			ct, cl = "text/event-stream; charset=utf-8", -1
			if c.binary {
				ct = "application/vnd.amazon.eventstream"
			}
		}
		return &http.Response{StatusCode: c.status, Header: http.Header{"Content-Type": {ct}, "Request-Id": {"req_1"}},
			Body: &chunkReader{chunks: chunks}, ContentLength: cl}, nil
	})
	r := httptest.NewRequest(http.MethodPost, pathFor(c.api), bytes.NewReader(c.request))
	r.Header.Set("Authorization", "Bearer client-key")
	r.Header.Set("X-Api-Key", "client-key")
	r.Header.Set("Content-Type", "application/json")
	if c.api.anthropic() {
		r.Header.Set("Anthropic-Version", "2023-06-01")
	}
	w := httptest.NewRecorder()
	x := filter.NewExchange(r)
	chain.Serve(w, x, up)
	res.status = w.Code
	res.header = w.Header()
	res.body = w.Body.Bytes()
	res.call = CallOf(x)
	return res
}

// callSummary is the golden form of a Call.
func callSummary(c *Call, status int) []byte {
	if c == nil {
		return []byte("null\n")
	}
	b, _ := json.MarshalIndent(map[string]any{
		"status": status, "api": c.API.String(), "provider": c.Provider, "provider_kind": c.ProviderKind,
		"request_model": c.RequestModel, "model": c.Model, "response_model": c.ResponseModel,
		"stream": c.Stream, "translated": c.Translated, "stop_reason": c.StopReason,
		"upstream_error": c.UpstreamError, "usage": c.Usage,
	}, "", "  ")
	return append(b, '\n')
}

func checkGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (-want +got):\n%s", path, cmp.Diff(string(want), string(got)))
	}
}

func TestGolden(t *testing.T) {
	for _, c := range loadGolden(t) {
		t.Run(c.name, func(t *testing.T) {
			res := c.run(t, [][]byte{c.upstream})
			if res.upstream != nil {
				checkGolden(t, filepath.Join(c.dir, "want_upstream.json"), append(res.upstream, '\n'))
				checkGolden(t, filepath.Join(c.dir, "want_upstream_path.txt"), []byte("POST "+res.upstreamPath+"\n"))
			}
			ext := ".json"
			if c.stream && res.status < 300 {
				ext = ".sse"
			}
			checkGolden(t, filepath.Join(c.dir, "want_response"+ext), res.body)
			checkGolden(t, filepath.Join(c.dir, "want_call.json"), callSummary(res.call, res.status))
			checkUpstreamHeaders(t, &c, res)
			checkNoSecret(t, res)
			if c.stream && res.status < 300 {
				checkEvents(t, c.api, res.body)
			} else if !json.Valid(res.body) {
				t.Errorf("response body is not JSON: %q", res.body)
			}
		})
	}
}

// checkUpstreamHeaders asserts the client's credentials were replaced by
// the provider's.
func checkUpstreamHeaders(t *testing.T, c *goldenCase, res goldenResult) {
	t.Helper()
	if res.upstreamHdr == nil {
		return
	}
	h := res.upstreamHdr
	pathOK := false
	for _, p := range wantPaths[c.kind] {
		pathOK = pathOK || strings.HasPrefix(res.upstreamPath, p)
	}
	if !pathOK {
		t.Errorf("upstream path = %q", res.upstreamPath)
	}
	// Exactly the provider's credential, in its header.
	creds := map[string]string{"Authorization": "", "X-Api-Key": "", "Api-Key": "", "X-Goog-Api-Key": ""}
	switch c.kind {
	case OpenAI, Bedrock:
		creds["Authorization"] = "Bearer " + testKey
	case Anthropic:
		creds["X-Api-Key"] = testKey
	case Gemini:
		creds["X-Goog-Api-Key"] = testKey
	case AzureOpenAI:
		creds["Api-Key"] = testKey
	}
	for k, want := range creds {
		if got := h.Get(k); got != want {
			t.Errorf("upstream %s = %q, want %q", k, got, want)
		}
	}
	switch c.kind {
	case OpenAI, Gemini, Bedrock, AzureOpenAI:
		if got := h.Get("Anthropic-Version"); got != "" {
			t.Errorf("upstream anthropic-version = %q, want none", got)
		}
	case Anthropic:
		if got := h.Get("Anthropic-Version"); got != DefaultAnthropicVersion {
			t.Errorf("upstream anthropic-version = %q", got)
		}
	}
}

func checkNoSecret(t *testing.T, res goldenResult) {
	t.Helper()
	if bytes.Contains(res.body, []byte(testKey)) || bytes.Contains(res.body, []byte("SECRET")) {
		t.Errorf("the provider's key reached the client: %s", res.body)
	}
	for k, vv := range res.header {
		for _, v := range vv {
			if strings.Contains(v, "SECRET") {
				t.Errorf("the provider's key reached the client in header %s", k)
			}
		}
	}
}

// checkEvents checks the stream's framing: Anthropic and Responses events
// are named after their data's type (Responses events also carry
// increasing sequence numbers); OpenAI chunks are unnamed JSON or [DONE].
func checkEvents(t *testing.T, api API, body []byte) {
	t.Helper()
	var seq int64
	for _, ev := range strings.Split(strings.TrimSuffix(string(body), "\n\n"), "\n\n") {
		var lines []string
		for _, l := range strings.Split(ev, "\n") {
			if !strings.HasPrefix(l, ":") { // comments (keep-alives) pass through
				lines = append(lines, l)
			}
		}
		if api.anthropic() || api == Responses {
			if len(lines) != 2 || !strings.HasPrefix(lines[0], "event: ") || !strings.HasPrefix(lines[1], "data: ") {
				t.Errorf("malformed Anthropic event %q", ev)
				continue
			}
			var v struct {
				Type string
				Seq  *int64 `json:"sequence_number"`
			}
			if err := json.Unmarshal([]byte(strings.TrimPrefix(lines[1], "data: ")), &v); err != nil || v.Type != strings.TrimPrefix(lines[0], "event: ") {
				t.Errorf("event %q: data type %q, err %v", lines[0], v.Type, err)
			}
			if api == Responses {
				if v.Seq == nil || *v.Seq != seq {
					t.Errorf("event %q: sequence_number %v, want %d", lines[0], v.Seq, seq)
				}
				seq++
			}
			continue
		}
		if len(lines) != 1 || !strings.HasPrefix(lines[0], "data: ") {
			t.Errorf("malformed OpenAI chunk %q", ev)
			continue
		}
		if d := strings.TrimPrefix(lines[0], "data: "); d != "[DONE]" && !json.Valid([]byte(d)) {
			t.Errorf("chunk is not JSON: %q", d)
		}
	}
}

// TestStreamSplitInvariance feeds every stream case's upstream bytes in
// every two-way split, byte by byte, and in random chunkings: the client
// must get the same bytes and the Call the same usage every time.
func TestStreamSplitInvariance(t *testing.T) {
	for _, c := range loadGolden(t) {
		if !c.stream || c.status >= 300 {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			want := c.run(t, [][]byte{c.upstream})
			check := func(desc string, chunks [][]byte) {
				got := c.run(t, chunks)
				if !bytes.Equal(got.body, want.body) {
					t.Fatalf("%s: output differs (-whole +split):\n%s", desc, cmp.Diff(string(want.body), string(got.body)))
				}
				if got.call.Usage != want.call.Usage {
					t.Fatalf("%s: usage %+v, want %+v", desc, got.call.Usage, want.call.Usage)
				}
			}
			b := c.upstream
			for k := 1; k < len(b); k++ {
				check(fmt.Sprintf("split at %d", k), [][]byte{clone(b[:k]), clone(b[k:])})
			}
			bytewise := make([][]byte, len(b))
			for i := range b {
				bytewise[i] = []byte{b[i]}
			}
			check("byte by byte", bytewise)
			rng := rand.New(rand.NewPCG(1, uint64(len(b))))
			for i := range 50 {
				var chunks [][]byte
				rest := b
				for len(rest) > 0 {
					n := 1 + rng.IntN(min(len(rest), 64))
					chunks = append(chunks, clone(rest[:n]))
					rest = rest[n:]
				}
				check(fmt.Sprintf("random chunking %d", i), chunks)
			}
		})
	}
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }
