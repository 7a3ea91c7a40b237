package jsonobj_test

import (
	"fmt"

	"github.com/porticoproxy/portico/llm/internal/jsonobj"
)

// Replace the model of a request and keep every other byte.
func Example() {
	body := []byte(`{"model": "fast", "messages": [], "new_field": {"kept": 1.50}}`)
	obj, err := jsonobj.Parse(body)
	if err != nil {
		fmt.Println(err)
		return
	}
	model, _, _ := obj.String("model")
	fmt.Println(model)
	fmt.Println(string(obj.Set("model", jsonobj.AppendString(nil, "gpt-4o-mini"))))
	// Output:
	// fast
	// {"model": "gpt-4o-mini", "messages": [], "new_field": {"kept": 1.50}}
}
