package mock

import (
	"bytes"
	"encoding/json"
	"hash/fnv"
	"io"
	"math"
	"net/http"
	"strings"

	"github.com/porticoproxy/portico/llm/internal/jsonobj"
)

// Google Gemini: generateContent, streamGenerateContent?alt=sse,
// countTokens, batchEmbedContents and embedContent.

type geminiPart struct {
	Text             string          `json:"text"`
	FunctionResponse json.RawMessage `json:"functionResponse"`
}

type geminiRequest struct {
	Contents []struct {
		Role  string       `json:"role"`
		Parts []geminiPart `json:"parts"`
	} `json:"contents"`
	Tools []struct {
		FunctionDeclarations []struct {
			Name                 string          `json:"name"`
			Parameters           json.RawMessage `json:"parameters"`
			ParametersJSONSchema json.RawMessage `json:"parametersJsonSchema"`
		} `json:"functionDeclarations"`
	} `json:"tools"`
	ToolConfig *struct {
		FunctionCallingConfig struct {
			Mode                 string   `json:"mode"`
			AllowedFunctionNames []string `json:"allowedFunctionNames"`
		} `json:"functionCallingConfig"`
	} `json:"toolConfig"`
	Requests []struct {
		Content struct {
			Parts []geminiPart `json:"parts"`
		} `json:"content"`
	} `json:"requests"`
	Content *struct {
		Parts []geminiPart `json:"parts"`
	} `json:"content"`
}

func geminiError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]any{"code": status, "message": msg, "status": "INVALID_ARGUMENT"}})
}

func (s *Server) gemini(w http.ResponseWriter, r *http.Request, path string) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	var req geminiRequest
	if err := json.Unmarshal(body, &req); err != nil {
		geminiError(w, http.StatusBadRequest, err.Error())
		return
	}
	name, method, _ := strings.Cut(path[strings.LastIndex(path, "/models/")+len("/models/"):], ":")
	switch method {
	case "batchEmbedContents":
		var out []any
		for _, rq := range req.Requests {
			out = append(out, map[string]any{"values": vector(partsText(rq.Content.Parts))})
		}
		writeJSON(w, http.StatusOK, map[string]any{"embeddings": out})
		return
	case "embedContent":
		text := ""
		if req.Content != nil {
			text = partsText(req.Content.Parts)
		}
		writeJSON(w, http.StatusOK, map[string]any{"embedding": map[string]any{"values": vector(text)}})
		return
	case "countTokens":
		writeJSON(w, http.StatusOK, map[string]any{"totalTokens": geminiCount(body)})
		return
	case "generateContent", "streamGenerateContent":
	default:
		geminiError(w, http.StatusNotFound, "unknown method "+method)
		return
	}
	var last string
	afterTool := false
	if n := len(req.Contents); n > 0 {
		c := req.Contents[n-1]
		last = partsText(c.Parts)
		for _, p := range c.Parts {
			if len(p.FunctionResponse) > 0 {
				afterTool = true
				last = string(p.FunctionResponse)
			}
		}
	}
	var tools []tool
	for _, t := range req.Tools {
		for _, d := range t.FunctionDeclarations {
			schema := d.ParametersJSONSchema
			if len(schema) == 0 {
				schema = d.Parameters
			}
			tools = append(tools, tool{name: d.Name, schema: schema})
		}
	}
	forced, none := "", false
	if tc := req.ToolConfig; tc != nil {
		none = tc.FunctionCallingConfig.Mode == "NONE"
		if names := tc.FunctionCallingConfig.AllowedFunctionNames; len(names) > 0 {
			forced = names[0]
		}
	}
	t := plan(name, len(body), last, afterTool, tools, forced, none)
	usage := map[string]any{"promptTokenCount": t.input, "candidatesTokenCount": t.output, "totalTokenCount": t.input + t.output}
	call := map[string]any{}
	if t.toolCall {
		call = map[string]any{"functionCall": map[string]any{"name": t.tool, "args": json.RawMessage(t.args)}}
	}
	chunk := func(parts []any, final bool) map[string]any {
		cand := map[string]any{"content": map[string]any{"role": "model", "parts": parts}, "index": 0}
		u := map[string]any{"promptTokenCount": t.input, "totalTokenCount": t.input}
		if final {
			cand["finishReason"] = "STOP"
			u = usage
		}
		return map[string]any{"candidates": []any{cand}, "usageMetadata": u, "modelVersion": name, "responseId": "mock-gemini"}
	}
	if method == "generateContent" {
		parts := []any{map[string]any{"text": t.text}}
		if t.toolCall {
			parts = append(parts, call)
		}
		writeJSON(w, http.StatusOK, chunk(parts, true))
		return
	}
	st := newStream(w, r, s.Delay)
	ws := words(t.text)
	for i, wd := range ws {
		parts := []any{map[string]any{"text": wd}}
		final := i == len(ws)-1 && !t.toolCall
		if !st.send("", chunk(parts, final)) {
			return
		}
	}
	if t.toolCall {
		st.send("", chunk([]any{call}, true))
	}
}

// geminiCount counts a countTokens request as generateContent counts its
// input: the tokens of the generateContent request it carries, without
// the "model" member that only the countTokens form has; for the
// {"contents": …} form, which is a generateContent request itself, the
// tokens of the body.
func geminiCount(body []byte) int64 {
	obj, err := jsonobj.Parse(body)
	if err != nil {
		return tokens(len(body))
	}
	if inner, ok := obj.Get("generateContentRequest"); ok {
		return tokens(len(withoutMember(inner, "model")))
	}
	return tokens(len(body))
}

// withoutMember returns the JSON object src without its top-level member
// key, every other byte as it was.
func withoutMember(src []byte, key string) []byte {
	obj, err := jsonobj.Parse(src)
	if err != nil {
		return src
	}
	ms := obj.Members()
	for i, m := range ms {
		if m.Key != key {
			continue
		}
		from, to := 0, m.End
		if i > 0 {
			from = ms[i-1].End // from the comma before it
		} else {
			from = bytes.IndexByte(src, '{') + 1
			if len(ms) > 1 {
				to += bytes.IndexByte(src[m.End:], ',') + 1 // to the comma after it
			}
		}
		return append(append([]byte(nil), src[:from]...), src[to:]...)
	}
	return src
}

func partsText(parts []geminiPart) string {
	var b strings.Builder
	for _, p := range parts {
		b.WriteString(p.Text)
	}
	return b.String()
}

// vector is a deterministic unit-length embedding of text.
func vector(text string) []float64 {
	h := fnv.New64a()
	h.Write([]byte(text))
	seed := h.Sum64()
	v := make([]float64, 8)
	var norm float64
	for i := range v {
		seed = seed*6364136223846793005 + 1442695040888963407
		v[i] = float64(int64(seed>>11))/float64(1<<52) - 1
		norm += v[i] * v[i]
	}
	norm = math.Sqrt(norm)
	for i := range v {
		v[i] = math.Round(v[i]/norm*1e6) / 1e6
	}
	return v
}
