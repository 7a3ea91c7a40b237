package llm

import (
	"strconv"
	"strings"
	"time"

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
		owners = append(owners, m.Provider)
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
