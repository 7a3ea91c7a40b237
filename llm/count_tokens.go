package llm

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/porticoproxy/portico/filter"
	"github.com/porticoproxy/portico/llm/internal/jsonobj"
)

// Token counting: Anthropic's POST /v1/messages/count_tokens on providers
// of another schema (Anthropic providers get the request as it is).
//
// Gemini and Bedrock count with their own APIs. The request is translated
// as the same Messages request would be (anthropicToGemini,
// anthropicToBedrock) and sent as
//
//	Gemini:  POST {base}/{version}/models/{model}:countTokens
//	         {"generateContentRequest": {…generateContent request…, "model": "models/{model}"}}
//	         → {"totalTokens": N, …}
//	Bedrock: POST {base}/model/{modelId}/count-tokens (the CountTokens operation)
//	         {"input": {"converse": {"messages", "system", "toolConfig", "additionalModelRequestFields"}}}
//	         → {"inputTokens": N}
//
// with the provider's credentials (x-goog-api-key; SigV4 or a Bedrock API
// key), and the count comes back as {"input_tokens": N}. Bedrock's
// CountTokens takes a foundation model ID, so a cross-region inference
// profile ID (us.anthropic.claude-…) is sent without its geography
// prefix.
//
// OpenAI-compatible servers and Azure OpenAI have no counting API for
// chat: the gateway estimates (estimateTokens). It estimates too when the
// count cannot be had upstream — the request does not translate for the
// provider, the provider cannot be reached, answers 5xx or an unreadable
// body, or (Bedrock) says the model has no counter — rather than fail a
// client that only wanted a number (Claude Code calls count_tokens on
// whatever serves its model). An estimate's response details are
// "llm_count_tokens_estimate"; an exact count is an ordinary upstream
// answer. Other provider errors (4xx) reach the client in Anthropic's
// error schema.

// countEstimated is the response details of an estimated count.
const countEstimated = "llm_count_tokens_estimate"

// bedrockUncountable is in the message of Bedrock's 400
// ValidationException for a model CountTokens does not count ("The
// provided model doesn't support counting tokens"): inference profile
// IDs and ARNs, and models without a counter (several Claude models,
// Nova …).
const bedrockUncountable = "support counting tokens"

// countTokens prepares a count_tokens request for a provider that does not
// speak Anthropic: the counting request for Gemini and Bedrock, the
// estimate for the others. It returns the local reply, or nil when the
// request goes upstream.
func (f *frontDoor) countTokens(ctx context.Context, x *filter.Exchange, call *Call, obj jsonobj.Object, body []byte, t target) error {
	p, st := t.p, call.st
	callKey.Set(x, call)
	if p.kind != Gemini && p.kind != Bedrock {
		return estimateReply(body) // no counting API upstream
	}
	up, aerr := f.buildUpstream(call, st, obj, body, t)
	if aerr == nil {
		up.body, aerr = countRequest(p.kind, up.body, t.upstream)
	}
	if aerr != nil {
		// What the translation cannot express the provider cannot count.
		call.Translated = false
		return estimateReply(body)
	}
	x.SetBody(up.body)
	if err := prepareUpstream(ctx, x, p, true, &up); err != nil {
		call.Translated, call.UpstreamError = false, err.Error()
		return estimateReply(body)
	}
	x.Cluster = p.cluster
	st.pol.sent = true
	return nil
}

// countRequest wraps a translated generateContent or Converse request into
// the provider's counting request.
func countRequest(kind Kind, req []byte, model string) ([]byte, *apiError) {
	obj, err := jsonobj.Parse(req)
	if err != nil {
		return nil, badRequest("encode request: %v", err)
	}
	var out []byte
	switch kind {
	case Gemini:
		out = append(out, `{"generateContentRequest":`...)
		out = append(out, obj.Set("model", jsonobj.AppendString(nil, geminiModelName(model)))...)
	case Bedrock:
		// A ConverseTokensRequest has no inferenceConfig.
		out = append(out, `{"input":{"converse":{`...)
		n := 0
		for _, m := range obj.Members() {
			if m.Key == "inferenceConfig" {
				continue
			}
			if n > 0 {
				out = append(out, ',')
			}
			n++
			out = jsonobj.AppendString(out, m.Key)
			out = append(out, ':')
			out = append(out, req[m.Start:m.End]...)
		}
		out = append(out, "}}"...)
	}
	return append(out, '}'), nil
}

// inferenceProfileGeos are the geography prefixes of Bedrock's
// cross-region inference profile IDs (LiteLLM's list).
var inferenceProfileGeos = [...]string{"us.", "eu.", "apac.", "jp.", "au.", "us-gov.", "global."}

// bedrockCountModel is the model ID Bedrock's CountTokens takes (a
// foundation model): an inference profile ID without its geography
// prefix; other IDs and ARNs as they are.
func bedrockCountModel(model string) string {
	for _, geo := range inferenceProfileGeos {
		if rest, ok := strings.CutPrefix(model, geo); ok && strings.Contains(rest, ".") {
			return rest
		}
	}
	return model
}

// estimateReply answers a count_tokens request with the estimate.
func estimateReply(body []byte) *filter.ReplyError {
	return &filter.ReplyError{Status: http.StatusOK, Header: http.Header{"Content-Type": {"application/json"}},
		Body: countBody(estimateTokens(body)), Details: countEstimated}
}

// countBody is Anthropic's count_tokens answer.
func countBody(n int64) []byte {
	return append(strconv.AppendInt([]byte(`{"input_tokens":`), n, 10), '}')
}

// countTokensResponse runs first in the response phase of count_tokens:
// it turns Gemini's or Bedrock's count into Anthropic's answer, or, when
// the count could not be had (no response, 5xx, an unreadable body, a
// Bedrock model without a counter), replaces the response with the
// estimate. Other provider errors (4xx) are left for OnResponse to
// translate.
func (f *frontDoor) countTokensResponse(x *filter.Exchange, call *Call) {
	st := call.st
	if !call.Translated || !st.pol.sent {
		return // a local reply, or Anthropic's own count
	}
	resp := x.Resp
	switch {
	case x.Err != nil || resp == nil:
		msg := "no response"
		if x.Err != nil {
			msg = x.Err.Error()
		}
		estimateInstead(x, call, "counting tokens failed: "+msg)
	case resp.StatusCode >= 500:
		b, _ := readLimited(resp.Body, 64<<10)
		_, msg := upstreamErrorMessage(resp.StatusCode, redact(b, st.p.key))
		estimateInstead(x, call, msg)
	case resp.StatusCode >= 400:
		if st.p.kind != Bedrock || resp.StatusCode != http.StatusBadRequest {
			return // the provider's error, translated by OnResponse
		}
		b, _ := readLimited(resp.Body, 64<<10)
		resp.Body = io.NopCloser(bytes.NewReader(b))
		if bytes.Contains(bytes.ToLower(b), []byte(bedrockUncountable)) {
			// Not an error of the request's: this model has no counter.
			_, msg := upstreamErrorMessage(resp.StatusCode, redact(b, st.p.key))
			estimateInstead(x, call, msg)
		}
	default:
		limit := x.BufferLimit
		if limit <= 0 {
			limit = filter.DefaultBufferLimit
		}
		ce := resp.Header.Get("Content-Encoding")
		b, err := readLimited(resp.Body, limit)
		n, ok := countOf(st.p.kind, b)
		if err != nil || !ok || resp.StatusCode >= 300 || ce != "" && ce != "identity" {
			estimateInstead(x, call, "the provider's token count is unreadable")
			return
		}
		resp.Header.Del("Content-Encoding")
		resp.Header.Set("Content-Type", "application/json")
		setBody(resp, http.StatusOK, countBody(n))
	}
}

// estimateInstead replaces the exchange's answer with the estimate, as the
// gateway's own reply, and records why the count failed.
func estimateInstead(x *filter.Exchange, call *Call, why string) {
	if x.Resp != nil && x.Resp.Body != nil {
		x.Resp.Body.Close()
	}
	re := estimateReply(call.st.body)
	call.UpstreamError = why
	resp := &http.Response{Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: re.Header.Clone()}
	setBody(resp, re.Status, re.Body)
	x.Resp, x.Err, x.Details = resp, re, re.Details
}

// countOf reads the count of Gemini's countTokens answer (totalTokens,
// left out when zero, as proto3 JSON leaves out zeros) or of Bedrock's
// CountTokens (inputTokens, required).
func countOf(kind Kind, body []byte) (int64, bool) {
	obj, err := jsonobj.Parse(body)
	if err != nil {
		return 0, false
	}
	key := "inputTokens"
	if kind == Gemini {
		key = "totalTokens"
	}
	raw, ok := obj.Get(key)
	if !ok {
		return 0, kind == Gemini
	}
	n, err := strconv.ParseInt(string(bytes.Trim(raw, `"`)), 10, 64)
	return n, err == nil && n >= 0
}
