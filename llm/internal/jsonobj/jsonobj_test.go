package jsonobj

import (
	"encoding/json"
	"errors"
	"testing"
	"unicode/utf8"
)

func TestParse(t *testing.T) {
	src := []byte(` { "model" : "gpt-4o", "mod\u0065l2":1, "nested":{"model":"x","a":[1,{"b":"}"}]}, "s":"a\"b\\", "n":-1.5e3 , "t":true,"z":null} `)
	o, err := Parse(src)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, m := range o.Members() {
		keys = append(keys, m.Key)
	}
	want := []string{"model", "model2", "nested", "s", "n", "t", "z"}
	if len(keys) != len(want) {
		t.Fatalf("keys = %q, want %q", keys, want)
	}
	for i := range want {
		if keys[i] != want[i] {
			t.Fatalf("keys = %q, want %q", keys, want)
		}
	}
	for key, raw := range map[string]string{"model": `"gpt-4o"`, "nested": `{"model":"x","a":[1,{"b":"}"}]}`, "s": `"a\"b\\"`, "n": `-1.5e3`, "t": "true", "z": "null"} {
		got, ok := o.Get(key)
		if !ok || string(got) != raw {
			t.Errorf("Get(%q) = %q, %v; want %q", key, got, ok, raw)
		}
	}
	if s, ok, err := o.String("model"); s != "gpt-4o" || !ok || err != nil {
		t.Errorf("String(model) = %q %v %v", s, ok, err)
	}
	if _, _, err := o.String("n"); err == nil {
		t.Error("String of a number: no error")
	}
	if b, err := o.Bool("t"); !b || err != nil {
		t.Errorf("Bool(t) = %v %v", b, err)
	}
	if b, err := o.Bool("absent"); b || err != nil {
		t.Errorf("Bool(absent) = %v %v", b, err)
	}
	if _, err := o.Bool("s"); err == nil {
		t.Error("Bool of a string: no error")
	}
}

func TestParseErrors(t *testing.T) {
	for _, in := range []string{``, `[]`, `"x"`, `{`, `{"a":1,}`, `{"a":1}{}`, `nul`} {
		if _, err := Parse([]byte(in)); err == nil {
			t.Errorf("Parse(%q): no error", in)
		}
	}
	if _, err := Parse([]byte(`[1]`)); !errors.Is(err, ErrNotObject) {
		t.Errorf("Parse([1]) = %v, want ErrNotObject", err)
	}
	// The same key twice, however it is spelled, is rejected: parsers
	// disagree on which one wins.
	for _, in := range []string{`{"model":"a","model":"b"}`, `{"model":"a","mod\u0065l":"b"}`} {
		if _, err := Parse([]byte(in)); !errors.Is(err, ErrDuplicateKey) {
			t.Errorf("Parse(%s) = %v, want ErrDuplicateKey", in, err)
		}
	}
	if o, err := Parse([]byte(` {} `)); err != nil || len(o.Members()) != 0 {
		t.Errorf("Parse({}) = %v, %v", o.Members(), err)
	}
}

func TestSet(t *testing.T) {
	for _, tc := range []struct{ in, key, raw, want string }{
		{`{"model":"a", "x":[1, 2]}`, "model", `"b"`, `{"model":"b", "x":[1, 2]}`},
		{`{"x":1,"model" : "a" }`, "model", `"bb"`, `{"x":1,"model" : "bb" }`},
		{`{"x":1}`, "stream_options", `{"include_usage":true}`, `{"x":1,"stream_options":{"include_usage":true}}`},
		{` { } `, "k", `1`, ` { "k":1} `},
		{"{\"x\":1\n}\n", "k", `true`, "{\"x\":1\n,\"k\":true}\n"},
	} {
		o, err := Parse([]byte(tc.in))
		if err != nil {
			t.Fatal(err)
		}
		got := string(o.Set(tc.key, []byte(tc.raw)))
		if got != tc.want {
			t.Errorf("Set(%s, %s, %s) = %s, want %s", tc.in, tc.key, tc.raw, got, tc.want)
		}
		if !json.Valid([]byte(got)) {
			t.Errorf("Set result %q is not JSON", got)
		}
	}
}

func TestAppendString(t *testing.T) {
	for _, s := range []string{"", "plain", `q"b\s`, "<a> & b", "\n\r\t\x00\x1f", "é “q” 😀", "\u2028\u2029", "bad \xff utf8"} {
		b := AppendString(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("AppendString(%q) = %s: %v", s, b, err)
		}
		want := s
		if !utf8.ValidString(s) {
			want = "bad \uFFFD utf8"
		}
		if got != want {
			t.Errorf("AppendString(%q) decodes to %q", s, got)
		}
	}
	if got := string(AppendString(nil, "<&>")); got != `"<&>"` {
		t.Errorf("AppendString escapes HTML: %s", got)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"model":"gpt","stream":true,"x":{"y":[1,"}"]}}`))
	f.Add([]byte(`{"a\u0041":1}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, in []byte) {
		o, err := Parse(in)
		if err != nil {
			return
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(in, &m); err != nil {
			t.Fatalf("Parse accepted what encoding/json rejects: %v", err)
		}
		if len(m) != len(o.Members()) {
			t.Fatalf("%d members, encoding/json sees %d", len(o.Members()), len(m))
		}
		for _, mem := range o.Members() {
			got, _ := o.Get(mem.Key)
			if !json.Valid(got) {
				t.Fatalf("member %q: value %q is not JSON", mem.Key, got)
			}
		}
		out := o.Set("model", []byte(`"x"`))
		o2, err := Parse(out)
		if err != nil {
			t.Fatalf("Set made invalid JSON: %v", err)
		}
		if s, _, _ := o2.String("model"); s != "x" {
			t.Fatalf("model after Set = %q", s)
		}
	})
}

func TestTypedAccess(t *testing.T) {
	o, err := Parse([]byte(`{"a":12,"b":-3,"c":1e3,"d":1.5,"e":"x","f":null,"g":{"h":7},"i":[{"j":1},2],"k":[],"l":5}`))
	if err != nil {
		t.Fatal(err)
	}
	ints := []struct {
		key     string
		n       int64
		ok, err bool
	}{
		{"a", 12, true, false}, {"b", -3, true, false}, {"c", 1000, true, false},
		{"d", 0, true, true}, {"e", 0, true, true}, {"f", 0, false, false}, {"zz", 0, false, false},
	}
	for _, tt := range ints {
		n, ok, err := o.Int(tt.key)
		if n != tt.n || ok != tt.ok || (err != nil) != tt.err {
			t.Errorf("Int(%q) = %d, %v, %v; want %d, %v, error %v", tt.key, n, ok, err, tt.n, tt.ok, tt.err)
		}
	}
	g, ok, err := o.Object("g")
	if !ok || err != nil {
		t.Fatalf("Object(g) = %v, %v", ok, err)
	}
	if n, _, _ := g.Int("h"); n != 7 {
		t.Errorf("g.h = %d, want 7", n)
	}
	if _, ok, err := o.Object("a"); !ok || err == nil {
		t.Errorf("Object(a) = %v, %v; want present and an error", ok, err)
	}
	if _, ok, err := o.Object("f"); ok || err != nil {
		t.Errorf("Object(f) = %v, %v; want absent (null)", ok, err)
	}
	first, ok, err := o.First("i")
	if !ok || err != nil || string(first) != `{"j":1}` {
		t.Errorf("First(i) = %s, %v, %v", first, ok, err)
	}
	if _, ok, err := o.First("k"); ok || err != nil {
		t.Errorf("First(k) of [] = %v, %v; want absent", ok, err)
	}
	if _, _, err := o.First("l"); err == nil {
		t.Errorf("First(l) of a number: no error")
	}
	if _, err := ParseValid([]byte(`[1]`)); err == nil {
		t.Errorf("ParseValid of an array: no error")
	}
}

// Indexing a chat completion allocates only the index: the common member
// names are not copied.
func TestParseAllocations(t *testing.T) {
	src := []byte(`{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":1}}`)
	n := testing.AllocsPerRun(100, func() {
		o, _ := Parse(src)
		u, _, _ := o.Object("usage")
		u.Int("prompt_tokens")
	})
	// Under -race sync.Pool (encoding/json's scanners) drops items at
	// random, so the count is only checked in normal builds.
	if n > 2 && !raceEnabled {
		t.Errorf("Parse + Object + Int: %v allocations, want at most 2 (the two indexes)", n)
	}
}

func TestDelete(t *testing.T) {
	for _, tt := range []struct{ src, key, want string }{
		{`{"a":1,"b":2,"c":3}`, "a", `{"b":2,"c":3}`},
		{`{"a":1,"b":2,"c":3}`, "b", `{"a":1,"c":3}`},
		{`{"a":1,"b":2,"c":3}`, "c", `{"a":1,"b":2}`},
		{`{ "a" : [1,{"x":"}"}] , "b":2 }`, "a", `{ "b":2 }`},
		{`{"a":1 , "b" : "x" }`, "b", `{"a":1 }`},
		{`{"only":true}`, "only", `{}`},
		{`{"a":1}`, "zz", `{"a":1}`},
	} {
		o, err := Parse([]byte(tt.src))
		if err != nil {
			t.Fatal(err)
		}
		got := o.Delete(tt.key)
		if string(got) != tt.want {
			t.Errorf("Delete(%q) of %s = %s, want %s", tt.key, tt.src, got, tt.want)
		}
		if !json.Valid(got) {
			t.Errorf("Delete(%q) of %s: invalid JSON %s", tt.key, tt.src, got)
		}
	}
}
