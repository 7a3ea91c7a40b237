package accesslog

import (
	"strings"
	"testing"

	"github.com/porticoproxy/portico/filter"
)

func TestCustomOperators(t *testing.T) {
	ops := map[string]Operator{
		"TENANT": {Append: func(b []byte, x *filter.Exchange) []byte { return append(b, x.In.Header.Get("X-Tenant")...) }},
		"UNITS":  {Numeric: true, Append: func(b []byte, x *filter.Exchange) []byte { return append(b, "42"...) }},
		"NONE":   {Numeric: true, Append: func(b []byte, x *filter.Exchange) []byte { return append(b, '-') }},
	}
	x := fullExchange(t)
	x.In.Header.Set("X-Tenant", "acme")
	text, err := parseFormatWith("%TENANT% %UNITS:1% %RESPONSE_CODE%", ops)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(appendOps(nil, x, text)); got != "acme 4 503" {
		t.Errorf("text: %q", got)
	}
	fields, err := compileJSONWith(map[string]string{"t": "%TENANT%", "u": "%UNITS%", "n": "%NONE%"}, ops)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(appendJSONObject(nil, x, fields)); got != `{"n":null,"t":"acme","u":42}`+"\n" {
		t.Errorf("json: %q", got)
	}
	for _, bad := range []struct {
		format string
		ops    map[string]Operator
		want   string
	}{
		{"%TENANT(x)%", ops, "takes no argument"},
		{"%OTHER%", ops, "unknown operator"},
	} {
		if _, err := parseFormatWith(bad.format, bad.ops); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: %v", bad.format, err)
		}
	}
	// A custom operator cannot replace a built-in one.
	shadow := map[string]Operator{"RESPONSE_CODE": {Append: func(b []byte, x *filter.Exchange) []byte { return append(b, "x"...) }}}
	if o, _ := parseFormatWith("%RESPONSE_CODE%", shadow); string(appendOps(nil, x, o)) != "503" {
		t.Error("a custom operator replaced a built-in one")
	}
	for _, cfg := range []Config{
		{Output: &strings.Builder{}, Operators: map[string]Operator{"lower": ops["TENANT"]}},
		{Output: &strings.Builder{}, Operators: map[string]Operator{"NOAPPEND": {}}},
	} {
		if err := cfg.Validate(); err == nil {
			t.Errorf("Validate(%v) accepted it", cfg.Operators)
		}
	}
}
