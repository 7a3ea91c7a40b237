package llm

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"
	"strconv"

	"github.com/porticoproxy/portico/llm/internal/jsonobj"
)

// Embeddings (POST /v1/embeddings): passed through to OpenAI-compatible
// and Azure providers, translated to batchEmbedContents for Gemini. Usage
// is the provider's prompt_tokens; Gemini reports none, so it is
// estimated from the input (Usage.Estimated).

// embeddingsEcho is what the response to a translated embeddings request
// needs from the request.
type embeddingsEcho struct {
	model  string
	base64 bool
}

// embeddingsToGemini translates an OpenAI embeddings request into a
// Gemini batchEmbedContents request.
func embeddingsToGemini(body []byte, model string, echo *embeddingsEcho) (upstreamRequest, *apiError) {
	var req struct {
		Model          string          `json:"model"`
		Input          json.RawMessage `json:"input"`
		EncodingFormat string          `json:"encoding_format"`
		Dimensions     *int64          `json:"dimensions"`
	}
	var up upstreamRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return up, badRequest("invalid request body: %v", err)
	}
	var inputs []string
	if s, ok := stringContent(req.Input); ok {
		inputs = []string{s}
	} else if err := json.Unmarshal(req.Input, &inputs); err != nil {
		return up, badRequest("input: must be a string or an array of strings (token arrays are not supported by this model's provider)")
	}
	if len(inputs) == 0 {
		return up, badRequest("input: must not be empty")
	}
	switch req.EncodingFormat {
	case "", "float":
	case "base64":
		echo.base64 = true
	default:
		return up, badRequest("encoding_format: %q is not supported", req.EncodingFormat)
	}
	echo.model = req.Model
	name := model
	if len(name) < 7 || name[:7] != "models/" {
		name = "models/" + name
	}
	b := []byte(`{"requests":[`)
	for i, in := range inputs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"model":`...)
		b = jsonobj.AppendString(b, name)
		b = append(b, `,"content":{"parts":[{"text":`...)
		b = jsonobj.AppendString(b, in)
		b = append(b, `}]}`...)
		if req.Dimensions != nil {
			b = append(b, `,"outputDimensionality":`...)
			b = strconv.AppendInt(b, *req.Dimensions, 10)
		}
		b = append(b, '}')
	}
	up.body = append(b, "]}"...)
	return up, nil
}

// translateEmbeddingsResponse translates a Gemini batchEmbedContents
// response into an OpenAI embeddings list, with the usage estimated.
func (g *Gateway) translateEmbeddingsResponse(call *Call, body []byte) ([]byte, error) {
	var resp struct {
		Embeddings []struct {
			Values []float64 `json:"values"`
		} `json:"embeddings"`
		UsageMetadata *gmUsage `json:"usageMetadata"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, err
	}
	st := call.st
	st.m.setGemini(resp.UsageMetadata, true)
	u := st.m.finish(st.body)
	call.ResponseModel = call.Model
	out := []byte(`{"object":"list","data":[`)
	for i, e := range resp.Embeddings {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, `{"object":"embedding","index":`...)
		out = strconv.AppendInt(out, int64(i), 10)
		out = append(out, `,"embedding":`...)
		if st.embed.base64 {
			raw := make([]byte, 0, 4*len(e.Values))
			for _, v := range e.Values {
				raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(float32(v)))
			}
			out = append(out, '"')
			out = base64.StdEncoding.AppendEncode(out, raw)
			out = append(out, '"')
		} else {
			out = append(out, '[')
			for j, v := range e.Values {
				if j > 0 {
					out = append(out, ',')
				}
				out = strconv.AppendFloat(out, v, 'g', -1, 32)
			}
			out = append(out, ']')
		}
		out = append(out, '}')
	}
	out = append(out, `],"model":`...)
	out = jsonobj.AppendString(out, cmpOr(st.embed.model, call.RequestModel))
	out = append(out, `,"usage":{"prompt_tokens":`...)
	out = strconv.AppendInt(out, u.InputTokens, 10)
	out = append(out, `,"total_tokens":`...)
	out = strconv.AppendInt(out, u.InputTokens, 10)
	return append(out, "}}"...), nil
}

// meterEmbeddings records the usage of an OpenAI embeddings response that
// passes through unchanged, and returns its model.
func meterEmbeddings(body []byte, m *meter) string {
	var resp struct {
		Model string   `json:"model"`
		Usage *oaUsage `json:"usage"`
	}
	if json.Unmarshal(body, &resp) != nil {
		return ""
	}
	m.setOpenAI(resp.Usage)
	return resp.Model
}
