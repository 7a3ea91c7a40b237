package llm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"unicode/utf8"

	"github.com/porticoproxy/portico/filter"
	"github.com/porticoproxy/portico/llm/internal/jsonobj"
)

// apiError is an error answered to the client in its API's error schema.
type apiError struct {
	status  int
	typ     string // Anthropic's error type; OpenAI clients get it as code
	message string
}

func (e *apiError) Error() string { return fmt.Sprintf("llm: %d %s: %s", e.status, e.typ, e.message) }

func badRequest(format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, typ: "invalid_request_error", message: fmt.Sprintf(format, args...)}
}

// anthropicErrorType is Anthropic's error type for a status.
func anthropicErrorType(status int) string {
	switch status {
	case 400, 405, 422:
		return "invalid_request_error"
	case 401:
		return "authentication_error"
	case 402:
		return "billing_error"
	case 403:
		return "permission_error"
	case 404:
		return "not_found_error"
	case 413:
		return "request_too_large"
	case 429:
		return "rate_limit_error"
	case 504:
		return "timeout_error"
	case 529:
		return "overloaded_error"
	}
	if status >= 500 {
		return "api_error"
	}
	return "invalid_request_error"
}

// openAIErrorType is the OpenAI error type for a status.
func openAIErrorType(status int) string {
	switch status {
	case 401:
		return "authentication_error"
	case 403:
		return "permission_error"
	case 429:
		return "rate_limit_error"
	}
	if status >= 500 {
		return "server_error"
	}
	return "invalid_request_error"
}

// errorBody encodes e in the error schema of api.
func errorBody(api API, e *apiError) []byte {
	var b []byte
	if api.anthropic() {
		b = append(b, `{"type":"error","error":{"type":`...)
		b = jsonobj.AppendString(b, e.typ)
		b = append(b, `,"message":`...)
		b = jsonobj.AppendString(b, e.message)
		return append(b, `}}`...)
	}
	b = append(b, `{"error":{"message":`...)
	b = jsonobj.AppendString(b, e.message)
	b = append(b, `,"type":`...)
	b = jsonobj.AppendString(b, openAIErrorType(e.status))
	b = append(b, `,"param":null,"code":`...)
	b = jsonobj.AppendString(b, e.typ)
	return append(b, `}}`...)
}

// reply answers e locally in the error schema of api.
func reply(api API, e *apiError) *filter.ReplyError {
	status := e.status
	if status == 529 && !api.anthropic() {
		status = http.StatusServiceUnavailable
	}
	return &filter.ReplyError{
		Status:  status,
		Header:  http.Header{"Content-Type": {"application/json"}},
		Body:    errorBody(api, e),
		Details: "llm_" + e.typ,
	}
}

// upstreamErrorMessage extracts the message and type of a provider's
// error body, whatever its schema; plain bodies become the message,
// truncated.
func upstreamErrorMessage(status int, body []byte) (typ, msg string) {
	var oa oaErrorBody
	if json.Unmarshal(body, &oa) == nil && oa.Error != nil && oa.Error.Message != "" {
		return anthropicErrorType(status), oa.Error.Message
	}
	var an anErrorBody
	if json.Unmarshal(body, &an) == nil && an.Error != nil && an.Error.Message != "" {
		t := an.Error.Type
		if t == "" {
			t = anthropicErrorType(status)
		}
		return t, an.Error.Message
	}
	// Bedrock's (and other AWS APIs') {"message": …}.
	var plain struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &plain) == nil && plain.Message != "" {
		return anthropicErrorType(status), plain.Message
	}
	msg = string(bytes.TrimSpace(body))
	if len(msg) > 512 {
		msg = msg[:512]
		for !utf8.ValidString(msg) {
			msg = msg[:len(msg)-1]
		}
		msg += "…"
	}
	if msg == "" {
		msg = http.StatusText(status)
	}
	return anthropicErrorType(status), "upstream error: " + msg
}

// redact replaces every occurrence of the secret in b.
func redact(b []byte, secret string) []byte {
	if len(secret) < 4 || !bytes.Contains(b, []byte(secret)) {
		return b
	}
	return bytes.ReplaceAll(b, []byte(secret), []byte(redacted))
}

// upstreamError maps a provider's error response to the client's schema.
// Credential rejections (401, 403) are the gateway's configuration
// problem, not the client's: they become 502 with a message naming the
// provider, never echoing the provider's text, which may quote the key.
// Same-schema errors pass through unchanged but for the redaction of the
// key.
func (f *frontDoor) upstreamError(call *Call, p *provider, status int, body []byte) (int, []byte) {
	if p.kind == Gemini && status == http.StatusBadRequest && bytes.Contains(body, []byte("API_KEY_INVALID")) {
		// Gemini rejects a bad key with 400.
		status = http.StatusUnauthorized
	}
	if status == http.StatusUnauthorized || status == http.StatusForbidden {
		e := &apiError{status: http.StatusBadGateway, typ: "api_error",
			message: fmt.Sprintf("provider %q rejected the gateway's credentials (status %d)", p.name, status)}
		return e.status, errorBody(f.api, e)
	}
	body = redact(body, p.key)
	if !call.Translated && json.Valid(body) {
		return status, body
	}
	typ, msg := upstreamErrorMessage(status, body)
	e := &apiError{status: status, typ: typ, message: msg}
	if status == 529 && !f.api.anthropic() {
		status = http.StatusServiceUnavailable
	}
	return status, errorBody(f.api, e)
}

// streamError encodes an error event in the client's streaming schema:
// Anthropic's "event: error", or OpenAI's data chunk with an "error"
// member.
func streamError(dst []byte, anthropic bool, typ, msg string) []byte {
	if anthropic {
		dst = append(dst, "event: error\ndata: "...)
		dst = append(dst, `{"type":"error","error":{"type":`...)
		dst = jsonobj.AppendString(dst, typ)
		dst = append(dst, `,"message":`...)
		dst = jsonobj.AppendString(dst, msg)
		return append(dst, "}}\n\n"...)
	}
	dst = append(dst, `data: {"error":{"message":`...)
	dst = jsonobj.AppendString(dst, msg)
	dst = append(dst, `,"type":`...)
	dst = jsonobj.AppendString(dst, openAIErrorType(statusOfAnthropicType(typ)))
	dst = append(dst, `,"param":null,"code":`...)
	dst = jsonobj.AppendString(dst, typ)
	return append(dst, "}}\n\n"...)
}

// statusOfAnthropicType is the HTTP status of an Anthropic error type.
func statusOfAnthropicType(typ string) int {
	switch typ {
	case "invalid_request_error":
		return 400
	case "authentication_error":
		return 401
	case "permission_error":
		return 403
	case "not_found_error":
		return 404
	case "request_too_large":
		return 413
	case "rate_limit_error":
		return 429
	case "overloaded_error":
		return 529
	case "timeout_error":
		return 504
	}
	return 500
}

// errorFromStreamPayload extracts type and message from a mid-stream error
// payload of either schema ({"error":{...}} or {"type":"error","error":{...}}).
func errorFromStreamPayload(raw json.RawMessage) (typ, msg string) {
	var e struct {
		Type    string `json:"type"`
		Message string `json:"message"`
		Code    any    `json:"code"`
	}
	if json.Unmarshal(raw, &e) != nil {
		var s string
		if json.Unmarshal(raw, &s) == nil && s != "" {
			return "api_error", s
		}
		return "api_error", "upstream error"
	}
	typ = e.Type
	switch typ {
	case "invalid_request_error", "authentication_error", "permission_error", "not_found_error",
		"request_too_large", "rate_limit_error", "api_error", "overloaded_error", "timeout_error", "billing_error":
	case "server_error", "":
		typ = "api_error"
	default:
		// OpenAI's types (tokens, requests, insufficient_quota …) have no
		// Anthropic twin; the code often says more.
		if c, ok := e.Code.(string); ok && c == "rate_limit_exceeded" {
			typ = "rate_limit_error"
		} else {
			typ = "api_error"
		}
	}
	if e.Message == "" {
		e.Message = "upstream error"
	}
	return typ, e.Message
}
