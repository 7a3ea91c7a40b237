package llm

import (
	"encoding/json"
	"strings"
)

// estimateTokens estimates the prompt tokens of a request body, at about
// four bytes of text per token. It counts the strings of the body except
// those that are not text a model reads as tokens: base64 payloads (image
// and document data, data: URLs) and thinking signatures. It is a fallback
// for usage a provider never reported and for count_tokens on providers
// without a counting API.
func estimateTokens(body []byte) int64 {
	var v any
	if json.Unmarshal(body, &v) != nil {
		return int64(len(body)+3) / 4
	}
	n := countText(v, "")
	return (n + 3) / 4
}

func countText(v any, key string) int64 {
	switch v := v.(type) {
	case string:
		switch key {
		case "data", "signature", "model", "type", "role", "media_type", "id", "tool_use_id", "tool_call_id":
			return 0
		}
		if strings.HasPrefix(v, "data:") {
			return 0
		}
		return int64(len(v))
	case []any:
		var n int64
		for _, e := range v {
			n += countText(e, key)
		}
		return n
	case map[string]any:
		var n int64
		for k, e := range v {
			n += countText(e, k)
			// Keys of tool schemas and arguments are text too.
			if key == "properties" {
				n += int64(len(k))
			}
		}
		return n
	}
	return 0
}
