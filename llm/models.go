package llm

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/porticoproxy/portico/filter"
	"github.com/porticoproxy/portico/llm/internal/jsonobj"
)

// modelLists encodes the /v1/models answers, in OpenAI's and Anthropic's
// shapes, from the exact model names of the table (patterns cannot be
// listed).
func modelLists(models []Model, created time.Time) (openAI, anthropic []byte) {
	var names, owners []string
	for _, m := range models {
		if strings.HasSuffix(m.Name, "*") {
			continue
		}
		names = append(names, m.Name)
		owner := m.Provider
		if owner == "" && len(m.Deployments) > 0 {
			owner = m.Deployments[0].Provider // a weighted split: its first deployment
		}
		owners = append(owners, owner)
	}
	openAI = append(openAI, `{"object":"list","data":[`...)
	for i, n := range names {
		if i > 0 {
			openAI = append(openAI, ',')
		}
		openAI = append(openAI, `{"id":`...)
		openAI = jsonobj.AppendString(openAI, n)
		openAI = append(openAI, `,"object":"model","created":`...)
		openAI = strconv.AppendInt(openAI, created.Unix(), 10)
		openAI = append(openAI, `,"owned_by":`...)
		openAI = jsonobj.AppendString(openAI, owners[i])
		openAI = append(openAI, '}')
	}
	openAI = append(openAI, "]}"...)

	at := created.UTC().Format(time.RFC3339)
	anthropic = append(anthropic, `{"data":[`...)
	for i, n := range names {
		if i > 0 {
			anthropic = append(anthropic, ',')
		}
		anthropic = append(anthropic, `{"type":"model","id":`...)
		anthropic = jsonobj.AppendString(anthropic, n)
		anthropic = append(anthropic, `,"display_name":`...)
		anthropic = jsonobj.AppendString(anthropic, n)
		anthropic = append(anthropic, `,"created_at":`...)
		anthropic = jsonobj.AppendString(anthropic, at)
		anthropic = append(anthropic, '}')
	}
	anthropic = append(anthropic, `],"has_more":false,"first_id":`...)
	if len(names) > 0 {
		anthropic = jsonobj.AppendString(anthropic, names[0])
		anthropic = append(anthropic, `,"last_id":`...)
		anthropic = jsonobj.AppendString(anthropic, names[len(names)-1])
	} else {
		anthropic = append(anthropic, `null,"last_id":null`...)
	}
	anthropic = append(anthropic, '}')
	return openAI, anthropic
}

// models answers GET /v1/models and GET /v1/models/{model}, in
// Anthropic's shape when the request has an anthropic-version header and
// in OpenAI's otherwise. A single model is found when the table routes
// its name (patterns included); it is 404 otherwise.
func (g *Gateway) models(x *filter.Exchange) error {
	anthropic := x.In.Header.Get("Anthropic-Version") != ""
	api := Models
	if anthropic {
		api = Messages // for the error schema
	}
	id, one := strings.CutPrefix(x.In.URL.Path, "/v1/models/")
	if !one {
		body := g.modelsOpenAI
		if anthropic {
			body = g.modelsAnth
		}
		return &filter.ReplyError{Status: http.StatusOK, Header: http.Header{"Content-Type": {"application/json"}}, Body: body, Details: "llm_models"}
	}
	if u, err := url.PathUnescape(id); err == nil {
		id = u
	}
	t, ok := g.route(id)
	if !ok || id == "" {
		return reply(api, &apiError{status: http.StatusNotFound, typ: "not_found_error", message: fmt.Sprintf("model %q is not served by this gateway", id)})
	}
	var b []byte
	if anthropic {
		b = append(b, `{"type":"model","id":`...)
		b = jsonobj.AppendString(b, id)
		b = append(b, `,"display_name":`...)
		b = jsonobj.AppendString(b, id)
		b = append(b, `,"created_at":`...)
		b = jsonobj.AppendString(b, g.now().UTC().Format(time.RFC3339))
		b = append(b, '}')
	} else {
		b = append(b, `{"id":`...)
		b = jsonobj.AppendString(b, id)
		b = append(b, `,"object":"model","created":`...)
		b = strconv.AppendInt(b, g.now().Unix(), 10)
		b = append(b, `,"owned_by":`...)
		b = jsonobj.AppendString(b, t.p.name)
		b = append(b, '}')
	}
	return &filter.ReplyError{Status: http.StatusOK, Header: http.Header{"Content-Type": {"application/json"}}, Body: b, Details: "llm_model"}
}
