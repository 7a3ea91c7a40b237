package mock

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/porticoproxy/portico/llm/internal/eventstream"
)

// Amazon Bedrock Converse: converse and converse-stream (a binary AWS
// event stream), and CountTokens (count-tokens).

type converseRequest struct {
	Messages []struct {
		Role    string `json:"role"`
		Content []struct {
			Text       *string         `json:"text"`
			ToolResult json.RawMessage `json:"toolResult"`
		} `json:"content"`
	} `json:"messages"`
	ToolConfig *struct {
		Tools []struct {
			ToolSpec *struct {
				Name        string `json:"name"`
				InputSchema struct {
					JSON json.RawMessage `json:"json"`
				} `json:"inputSchema"`
			} `json:"toolSpec"`
		} `json:"tools"`
		ToolChoice *struct {
			Tool *struct {
				Name string `json:"name"`
			} `json:"tool"`
		} `json:"toolChoice"`
	} `json:"toolConfig"`
}

func (s *Server) converse(w http.ResponseWriter, r *http.Request, path string) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	var req converseRequest
	if err := json.Unmarshal(body, &req); err != nil {
		w.Header().Set("X-Amzn-Errortype", "ValidationException")
		writeJSON(w, http.StatusBadRequest, map[string]any{"message": err.Error()})
		return
	}
	stream := strings.HasSuffix(path, "/converse-stream")
	model := strings.TrimSuffix(strings.TrimSuffix(path, "-stream"), "/converse")
	model = model[strings.LastIndex(model, "/model/")+len("/model/"):]
	var last string
	afterTool := false
	if n := len(req.Messages); n > 0 {
		for _, c := range req.Messages[n-1].Content {
			switch {
			case c.Text != nil:
				last += *c.Text
			case len(c.ToolResult) > 0:
				afterTool, last = true, string(c.ToolResult)
			}
		}
	}
	var tools []tool
	forced := ""
	if tc := req.ToolConfig; tc != nil {
		for _, t := range tc.Tools {
			if t.ToolSpec != nil {
				tools = append(tools, tool{name: t.ToolSpec.Name, schema: t.ToolSpec.InputSchema.JSON})
			}
		}
		if tc.ToolChoice != nil && tc.ToolChoice.Tool != nil {
			forced = tc.ToolChoice.Tool.Name
		}
	}
	t := plan(model, len(body), last, afterTool, tools, forced, false)
	stop := "end_turn"
	content := []any{map[string]any{"text": t.text}}
	if t.toolCall {
		stop = "tool_use"
		content = append(content, map[string]any{"toolUse": map[string]any{"toolUseId": "tooluse_mock_0", "name": t.tool, "input": json.RawMessage(t.args)}})
	}
	usage := map[string]any{"inputTokens": t.input, "outputTokens": t.output, "totalTokens": t.input + t.output}
	if !stream {
		writeJSON(w, http.StatusOK, map[string]any{"output": map[string]any{"message": map[string]any{"role": "assistant", "content": content}},
			"stopReason": stop, "usage": usage, "metrics": map[string]any{"latencyMs": 1}})
		return
	}
	w.Header().Set("Content-Type", "application/vnd.amazon.eventstream")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	send := func(event string, v map[string]any) bool {
		payload, _ := json.Marshal(v)
		w.Write(eventstream.AppendMessage(nil, [][2]string{{":event-type", event}, {":content-type", "application/json"}, {":message-type", "event"}}, payload))
		rc.Flush()
		if s.Delay > 0 {
			select {
			case <-time.After(s.Delay):
			case <-r.Context().Done():
				return false
			}
		}
		return r.Context().Err() == nil
	}
	if !send("messageStart", map[string]any{"role": "assistant"}) {
		return
	}
	for _, wd := range words(t.text) {
		if !send("contentBlockDelta", map[string]any{"contentBlockIndex": 0, "delta": map[string]any{"text": wd}}) {
			return
		}
	}
	if !send("contentBlockStop", map[string]any{"contentBlockIndex": 0}) {
		return
	}
	if t.toolCall {
		if !send("contentBlockStart", map[string]any{"contentBlockIndex": 1, "start": map[string]any{"toolUse": map[string]any{"toolUseId": "tooluse_mock_0", "name": t.tool}}}) {
			return
		}
		half := len(t.args) / 2
		for _, part := range []string{t.args[:half], t.args[half:]} {
			if !send("contentBlockDelta", map[string]any{"contentBlockIndex": 1, "delta": map[string]any{"toolUse": map[string]any{"input": part}}}) {
				return
			}
		}
		if !send("contentBlockStop", map[string]any{"contentBlockIndex": 1}) {
			return
		}
	}
	if !send("messageStop", map[string]any{"stopReason": stop}) {
		return
	}
	send("metadata", map[string]any{"usage": usage, "metrics": map[string]any{"latencyMs": 1}})
}

// countTokens answers Bedrock's CountTokens as converse counts its input:
// the tokens of the Converse request in input.converse (or of the body in
// input.invokeModel).
func (s *Server) countTokens(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	var req struct {
		Input struct {
			Converse    json.RawMessage `json:"converse"`
			InvokeModel *struct {
				Body string `json:"body"`
			} `json:"invokeModel"`
		} `json:"input"`
	}
	err = json.Unmarshal(body, &req)
	var n int
	switch in := req.Input; {
	case err != nil:
	case len(in.Converse) > 0:
		n = len(in.Converse)
	case in.InvokeModel != nil:
		var b []byte
		if b, err = base64.StdEncoding.DecodeString(in.InvokeModel.Body); err == nil {
			n = len(b)
		}
	default:
		err = errors.New("input: one of converse and invokeModel is required")
	}
	if err != nil {
		w.Header().Set("X-Amzn-Errortype", "ValidationException")
		writeJSON(w, http.StatusBadRequest, map[string]any{"message": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"inputTokens": tokens(n)})
}
