package llm

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/porticoproxy/portico/llm/internal/jsonobj"
)

// Prompt configures the prompt policies: operator system prompts injected
// into requests, and prompt templates clients fill in. They apply to the
// OpenAI Chat Completions and Anthropic Messages front doors, before
// routing and translation, so they work whatever the provider.
type Prompt struct {
	// Inject are system prompts added to every request they apply to, in
	// order, after any template.
	Inject []SystemPrompt `json:"inject,omitempty"`
	// Templates are prompt templates by name. A request selects one with a
	// top-level member the gateway removes before the request goes
	// upstream:
	//
	//	"prompt_template": {"name": "summarize", "variables": {"text": "…"}}
	//
	// The template's system prompt is prepended to the request's and its
	// messages are put before the request's own, each {{variable}}
	// replaced by its (string) value. An unknown template or a missing
	// variable is answered 400.
	Templates map[string]Template `json:"templates,omitempty"`
}

// SystemPrompt is a system prompt the gateway injects.
type SystemPrompt struct {
	// Text is the system prompt.
	Text string `json:"text"`
	// Mode places it relative to the client's system prompt: "prepend"
	// (the default) before it, "append" after it, "replace" instead of it.
	Mode string `json:"mode,omitempty"`
	// Models restricts it to requests for these model names or "prefix*"
	// patterns (as the client asked); empty means every model.
	Models []string `json:"models,omitempty"`
}

// Template is a prompt template (see Prompt.Templates).
type Template struct {
	// System is a system prompt, prepended to the request's.
	System string `json:"system,omitempty"`
	// Messages are put before the request's messages.
	Messages []TemplateMessage `json:"messages,omitempty"`
}

// TemplateMessage is one message of a Template.
type TemplateMessage struct {
	// Role is "user" or "assistant".
	Role string `json:"role"`
	// Content is the message's text.
	Content string `json:"content"`
}

func (p *Prompt) validate() error {
	for i, s := range p.Inject {
		switch s.Mode {
		case "", "prepend", "append", "replace":
		default:
			return fmt.Errorf("inject[%d].mode: %q: want prepend, append or replace", i, s.Mode)
		}
		if s.Text == "" {
			return fmt.Errorf("inject[%d].text: must not be empty", i)
		}
	}
	for name, t := range p.Templates {
		for j, m := range t.Messages {
			if m.Role != "user" && m.Role != "assistant" {
				return fmt.Errorf("templates[%q].messages[%d].role: %q: want user or assistant", name, j, m.Role)
			}
		}
	}
	return nil
}

func (p *Prompt) enabled() bool { return len(p.Inject) > 0 || len(p.Templates) > 0 }

// applyPrompt applies templates and system prompt injection to a request
// body of api. It returns the new body (body itself when unchanged).
func applyPrompt(p *Prompt, api API, model string, body []byte, obj jsonobj.Object) ([]byte, *apiError) {
	if api != ChatCompletions && api != Messages {
		return body, nil
	}
	out := body
	if raw, ok := obj.Get("prompt_template"); ok {
		var sel struct {
			Name      string            `json:"name"`
			Variables map[string]string `json:"variables"`
		}
		if err := json.Unmarshal(raw, &sel); err != nil {
			return nil, badRequest("prompt_template: %v", err)
		}
		t, ok := p.Templates[sel.Name]
		if !ok {
			return nil, badRequest("prompt_template: no template %q", sel.Name)
		}
		var aerr *apiError
		if out, aerr = applyTemplate(api, obj, t, sel.Variables); aerr != nil {
			return nil, aerr
		}
	}
	for _, s := range p.Inject {
		if len(s.Models) > 0 && !matchName(s.Models, model) {
			continue
		}
		o, err := jsonobj.Parse(out)
		if err != nil {
			return nil, badRequest("%v", err)
		}
		var aerr *apiError
		if out, aerr = injectSystem(api, o, s.Text, s.Mode); aerr != nil {
			return nil, aerr
		}
	}
	return out, nil
}

// render replaces each {{name}} (spaces allowed inside the braces) with
// its variable.
func render(text string, vars map[string]string) (string, error) {
	var b strings.Builder
	for {
		i := strings.Index(text, "{{")
		if i < 0 {
			b.WriteString(text)
			return b.String(), nil
		}
		j := strings.Index(text[i:], "}}")
		if j < 0 {
			b.WriteString(text)
			return b.String(), nil
		}
		name := strings.TrimSpace(text[i+2 : i+j])
		v, ok := vars[name]
		if !ok {
			return "", fmt.Errorf("variable %q is not set", name)
		}
		b.WriteString(text[:i])
		b.WriteString(v)
		text = text[i+j+2:]
	}
}

func applyTemplate(api API, obj jsonobj.Object, t Template, vars map[string]string) ([]byte, *apiError) {
	var msgs []json.RawMessage
	for _, m := range t.Messages {
		content, err := render(m.Content, vars)
		if err != nil {
			return nil, badRequest("prompt_template: %v", err)
		}
		b := append([]byte(`{"role":`), jsonobj.AppendString(nil, m.Role)...)
		b = append(b, `,"content":`...)
		b = jsonobj.AppendString(b, content)
		msgs = append(msgs, append(b, '}'))
	}
	// The body without the selector member.
	out := removeMember(obj, "prompt_template")
	o, err := jsonobj.Parse(out)
	if err != nil {
		return nil, badRequest("%v", err)
	}
	if len(msgs) > 0 {
		var existing []json.RawMessage
		if raw, ok := o.Get("messages"); ok && string(raw) != "null" {
			if err := json.Unmarshal(raw, &existing); err != nil {
				return nil, badRequest("messages: must be an array")
			}
		}
		// Template messages go after leading system messages (OpenAI), so
		// that the system prompt stays first.
		at := 0
		if api == ChatCompletions {
			at = leadingSystem(existing)
		}
		all := make([]json.RawMessage, 0, len(existing)+len(msgs))
		all = append(append(append(all, existing[:at]...), msgs...), existing[at:]...)
		mb, _ := json.Marshal(all)
		out = o.Set("messages", mb)
		if o, err = jsonobj.Parse(out); err != nil {
			return nil, badRequest("%v", err)
		}
	}
	if t.System != "" {
		sys, err := render(t.System, vars)
		if err != nil {
			return nil, badRequest("prompt_template: %v", err)
		}
		return injectSystem(api, o, sys, "prepend")
	}
	return out, nil
}

// removeMember returns the object's bytes without key.
func removeMember(obj jsonobj.Object, key string) []byte {
	b := []byte{'{'}
	first := true
	for _, m := range obj.Members() {
		if m.Key == key {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = jsonobj.AppendString(b, m.Key)
		b = append(b, ':')
		v, _ := obj.Get(m.Key)
		b = append(b, v...)
	}
	return append(b, '}')
}

// leadingSystem returns the number of system and developer messages at the
// start of an OpenAI message list.
func leadingSystem(msgs []json.RawMessage) int {
	for i, m := range msgs {
		var r struct {
			Role string `json:"role"`
		}
		json.Unmarshal(m, &r)
		if r.Role != "system" && r.Role != "developer" {
			return i
		}
	}
	return len(msgs)
}

var errSystemShape = errors.New("system: must be a string or an array of text blocks")

// injectSystem adds text to the request's system prompt.
func injectSystem(api API, obj jsonobj.Object, text, mode string) ([]byte, *apiError) {
	if mode == "" {
		mode = "prepend"
	}
	if api == Messages {
		raw, ok := obj.Get("system")
		if !ok || string(raw) == "null" || mode == "replace" {
			return obj.Set("system", jsonobj.AppendString(nil, text)), nil
		}
		var s string
		if json.Unmarshal(raw, &s) == nil {
			if mode == "append" {
				s = s + "\n\n" + text
			} else {
				s = text + "\n\n" + s
			}
			return obj.Set("system", jsonobj.AppendString(nil, s)), nil
		}
		var blocks []json.RawMessage
		if json.Unmarshal(raw, &blocks) != nil {
			return nil, badRequest("%v", errSystemShape)
		}
		block := append(append([]byte(`{"type":"text","text":`), jsonobj.AppendString(nil, text)...), '}')
		if mode == "append" {
			blocks = append(blocks, block)
		} else {
			blocks = append([]json.RawMessage{block}, blocks...)
		}
		b, _ := json.Marshal(blocks)
		return obj.Set("system", b), nil
	}
	// OpenAI Chat: system messages at the start of messages.
	var msgs []json.RawMessage
	if raw, ok := obj.Get("messages"); ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &msgs); err != nil {
			return nil, badRequest("messages: must be an array")
		}
	}
	msg := append(append([]byte(`{"role":"system","content":`), jsonobj.AppendString(nil, text)...), '}')
	var out []json.RawMessage
	switch mode {
	case "replace":
		out = append(out, msg)
		for _, m := range msgs {
			var r struct {
				Role string `json:"role"`
			}
			json.Unmarshal(m, &r)
			if r.Role != "system" && r.Role != "developer" {
				out = append(out, m)
			}
		}
	case "append":
		at := leadingSystem(msgs)
		out = append(append(append(out, msgs[:at]...), msg), msgs[at:]...)
	default:
		out = append(append(out, msg), msgs...)
	}
	b, _ := json.Marshal(out)
	return obj.Set("messages", b), nil
}
