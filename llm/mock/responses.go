package mock

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"io"
	"math"
	"net/http"
)

// OpenAI Responses and Embeddings.

type responsesRequest struct {
	Model string          `json:"model"`
	Input json.RawMessage `json:"input"`
	Tools []struct {
		Type       string          `json:"type"`
		Name       string          `json:"name"`
		Parameters json.RawMessage `json:"parameters"`
	} `json:"tools"`
	ToolChoice json.RawMessage `json:"tool_choice"`
	Stream     bool            `json:"stream"`
}

func (s *Server) responses(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	var req responsesRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]any{"message": err.Error(), "type": "invalid_request_error"}})
		return
	}
	var last string
	afterTool := false
	if json.Unmarshal(req.Input, &last) != nil {
		var items []struct {
			Type    string          `json:"type"`
			Content json.RawMessage `json:"content"`
			Output  json.RawMessage `json:"output"`
		}
		json.Unmarshal(req.Input, &items)
		if n := len(items); n > 0 {
			it := items[n-1]
			if it.Type == "function_call_output" {
				afterTool, last = true, text(it.Output)
			} else {
				last = inputText(it.Content)
			}
		}
	}
	var tools []tool
	for _, t := range req.Tools {
		if t.Type == "function" {
			tools = append(tools, tool{name: t.Name, schema: t.Parameters})
		}
	}
	forced, none := "", string(req.ToolChoice) == `"none"`
	var choice struct {
		Name string `json:"name"`
	}
	if json.Unmarshal(req.ToolChoice, &choice) == nil {
		forced = choice.Name
	}
	t := plan(req.Model, len(body), last, afterTool, tools, forced, none)
	message := func(text, status string) map[string]any {
		content := []any{}
		if status == "completed" {
			content = append(content, map[string]any{"type": "output_text", "text": text, "annotations": []any{}})
		}
		return map[string]any{"type": "message", "id": "msg_mock_0", "status": status, "role": "assistant", "content": content}
	}
	call := func(args, status string) map[string]any {
		return map[string]any{"type": "function_call", "id": "fc_mock_1", "call_id": "call_mock_0", "name": t.tool, "arguments": args, "status": status}
	}
	output := []any{message(t.text, "completed")}
	if t.toolCall {
		output = append(output, call(t.args, "completed"))
	}
	response := func(status string, output []any, usage any) map[string]any {
		return map[string]any{"id": "resp_mock", "object": "response", "created_at": s.created(), "status": status, "model": t.model,
			"output": output, "usage": usage, "error": nil, "incomplete_details": nil}
	}
	usage := map[string]any{"input_tokens": t.input, "input_tokens_details": map[string]any{"cached_tokens": 0},
		"output_tokens": t.output, "output_tokens_details": map[string]any{"reasoning_tokens": 0}, "total_tokens": t.input + t.output}
	if !req.Stream {
		writeJSON(w, http.StatusOK, response("completed", output, usage))
		return
	}
	st := newStream(w, r, s.Delay)
	seq := 0
	ev := func(typ string, v map[string]any) bool {
		v["type"], v["sequence_number"] = typ, seq
		seq++
		return st.send(typ, v)
	}
	if !ev("response.created", map[string]any{"response": response("in_progress", []any{}, nil)}) ||
		!ev("response.in_progress", map[string]any{"response": response("in_progress", []any{}, nil)}) ||
		!ev("response.output_item.added", map[string]any{"output_index": 0, "item": message("", "in_progress")}) ||
		!ev("response.content_part.added", map[string]any{"item_id": "msg_mock_0", "output_index": 0, "content_index": 0,
			"part": map[string]any{"type": "output_text", "text": "", "annotations": []any{}}}) {
		return
	}
	for _, wd := range words(t.text) {
		if !ev("response.output_text.delta", map[string]any{"item_id": "msg_mock_0", "output_index": 0, "content_index": 0, "delta": wd}) {
			return
		}
	}
	if !ev("response.output_text.done", map[string]any{"item_id": "msg_mock_0", "output_index": 0, "content_index": 0, "text": t.text}) ||
		!ev("response.content_part.done", map[string]any{"item_id": "msg_mock_0", "output_index": 0, "content_index": 0,
			"part": map[string]any{"type": "output_text", "text": t.text, "annotations": []any{}}}) ||
		!ev("response.output_item.done", map[string]any{"output_index": 0, "item": message(t.text, "completed")}) {
		return
	}
	if t.toolCall {
		if !ev("response.output_item.added", map[string]any{"output_index": 1, "item": call("", "in_progress")}) {
			return
		}
		half := len(t.args) / 2
		for _, part := range []string{t.args[:half], t.args[half:]} {
			if !ev("response.function_call_arguments.delta", map[string]any{"item_id": "fc_mock_1", "output_index": 1, "delta": part}) {
				return
			}
		}
		if !ev("response.function_call_arguments.done", map[string]any{"item_id": "fc_mock_1", "output_index": 1, "arguments": t.args}) ||
			!ev("response.output_item.done", map[string]any{"output_index": 1, "item": call(t.args, "completed")}) {
			return
		}
	}
	ev("response.completed", map[string]any{"response": response("completed", output, usage)})
}

// inputText returns the text of a Responses message's content: a string
// or input_text parts.
func inputText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var parts []struct {
		Text string `json:"text"`
	}
	json.Unmarshal(raw, &parts)
	for _, p := range parts {
		s += p.Text
	}
	return s
}

func (s *Server) embeddings(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	var req struct {
		Model          string          `json:"model"`
		Input          json.RawMessage `json:"input"`
		EncodingFormat string          `json:"encoding_format"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]any{"message": err.Error(), "type": "invalid_request_error"}})
		return
	}
	var inputs []string
	var one string
	if json.Unmarshal(req.Input, &one) == nil {
		inputs = []string{one}
	} else {
		json.Unmarshal(req.Input, &inputs)
	}
	var data []any
	n := 0
	for i, in := range inputs {
		n += len(in)
		var emb any = vector(in)
		if req.EncodingFormat == "base64" {
			var raw []byte
			for _, v := range vector(in) {
				raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(float32(v)))
			}
			emb = base64.StdEncoding.EncodeToString(raw)
		}
		data = append(data, map[string]any{"object": "embedding", "index": i, "embedding": emb})
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data, "model": req.Model,
		"usage": map[string]any{"prompt_tokens": tokens(n), "total_tokens": tokens(n)}})
}
