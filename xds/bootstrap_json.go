package xds

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"sigs.k8s.io/yaml"
)

// unmarshalConfig reads an Envoy configuration document, YAML or JSON,
// into m, the way Envoy's loader does: YAML is converted to JSON, then
// read with the proto3 JSON mapping, rejecting unknown fields. Before
// that, the document is walked against m's descriptors to give errors
// Envoy field paths instead of byte offsets, and to accept what Envoy's
// (protobuf C++) JSON parser accepts and Go's does not:
//
//   - a single value where a list is expected reads as a list of one
//     (Envoy's own examples rely on it), with a warning;
//   - an HTTP filter whose typed_config names a type not linked into
//     Portico is dropped, with a warning, when it is is_optional.
//
// warn receives the warnings; paths are relative to the document.
func unmarshalConfig(data []byte, m proto.Message, warn func(Warning)) error {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return fmt.Errorf("yaml: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return fmt.Errorf("json: %w", err)
	}
	if doc == nil {
		doc = map[string]any{}
	}
	n := &normalizer{warn: warn}
	orig := doc
	doc, unresolved, err := n.message(doc, m.ProtoReflect().Descriptor(), "")
	if err != nil {
		return err
	}
	if unresolved {
		return errUnresolved(orig, "")
	}
	js, err = json.Marshal(doc)
	if err != nil {
		return err
	}
	if err := (protojson.UnmarshalOptions{}).Unmarshal(js, m); err != nil {
		return err
	}
	return nil
}

type normalizer struct {
	warn func(Warning)
}

// errDrop asks the caller to drop an optional list element.
var errDrop = errors.New("drop")

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

// wellKnownJSON reports messages with a special JSON form, which the walk
// leaves to protojson.
func wellKnownJSON(md protoreflect.MessageDescriptor) bool {
	return md.FullName().Parent() == "google.protobuf" && md.FullName() != "google.protobuf.Any"
}

// message normalizes v, the JSON of a message of type md. It returns the
// new value and whether an optional Any inside could not be resolved
// (the caller drops the element when the message is_optional).
func (n *normalizer) message(v any, md protoreflect.MessageDescriptor, path string) (any, bool, error) {
	if wellKnownJSON(md) {
		return v, false, nil
	}
	obj, ok := v.(map[string]any)
	if !ok {
		if v == nil {
			return v, false, nil
		}
		return nil, false, fmt.Errorf("%s: want an object for %s, got %s", orRoot(path), md.FullName(), jsonKind(v))
	}
	if md.FullName() == "google.protobuf.Any" {
		return n.any(obj, path)
	}
	unresolved := false
	for key, val := range obj {
		fd := md.Fields().ByJSONName(key)
		if fd == nil {
			fd = md.Fields().ByTextName(key)
		}
		p := join(path, key)
		if fd == nil {
			return nil, false, fmt.Errorf("%s: unknown field (%s has no field %q)", p, md.FullName(), key)
		}
		if val == nil {
			continue
		}
		switch {
		case fd.IsMap():
			m, ok := val.(map[string]any)
			if !ok {
				return nil, false, fmt.Errorf("%s: want an object, got %s", p, jsonKind(val))
			}
			if vd := fd.MapValue().Message(); vd != nil {
				for k, e := range m {
					ne, un, err := n.message(e, vd, p+"."+k)
					if err != nil {
						return nil, false, err
					}
					if un {
						return nil, false, errUnresolved(e, p+"."+k)
					}
					m[k] = ne
				}
			}
		case fd.IsList():
			l, ok := val.([]any)
			if !ok {
				l = []any{val}
				n.warn(Warning{Path: p, Message: "a single value where a list is expected; read as a list of one, as Envoy does"})
			}
			if fd.Message() != nil {
				kept := l[:0]
				for i, e := range l {
					ne, un, err := n.message(e, fd.Message(), fmt.Sprintf("%s[%d]", p, i))
					if err != nil {
						return nil, false, err
					}
					if un && isOptional(e) {
						n.warn(Warning{Path: fmt.Sprintf("%s[%d]", p, i), Message: "optional filter of a type Portico does not know; skipped"})
						continue
					}
					if un {
						return nil, false, errUnresolved(e, fmt.Sprintf("%s[%d]", p, i))
					}
					kept = append(kept, ne)
				}
				l = kept
			}
			obj[key] = l
		case fd.Message() != nil:
			nv, un, err := n.message(val, fd.Message(), p)
			if err != nil {
				return nil, false, err
			}
			unresolved = unresolved || un
			obj[key] = nv
		}
	}
	return obj, unresolved, nil
}

// any normalizes the JSON of an Any. An unknown type is reported to the
// caller (unresolved) rather than as an error, so that an optional filter
// can be dropped.
func (n *normalizer) any(obj map[string]any, path string) (any, bool, error) {
	url, _ := obj["@type"].(string)
	if url == "" {
		if len(obj) == 0 {
			return obj, false, nil
		}
		return nil, false, fmt.Errorf("%s: @type: required", orRoot(path))
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByURL(url)
	if err != nil {
		return obj, true, nil
	}
	md := mt.Descriptor()
	if wellKnownJSON(md) {
		return obj, false, nil
	}
	inner := make(map[string]any, len(obj)-1)
	for k, v := range obj {
		if k != "@type" {
			inner[k] = v
		}
	}
	nv, un, err := n.message(inner, md, path)
	if err != nil {
		return nil, false, err
	}
	out := nv.(map[string]any)
	out["@type"] = url
	return out, un, nil
}

func isOptional(v any) bool {
	obj, _ := v.(map[string]any)
	opt, _ := obj["is_optional"].(bool)
	if !opt {
		opt, _ = obj["isOptional"].(bool)
	}
	return opt
}

// errUnresolved names the unknown type URL inside v.
func errUnresolved(v any, path string) error {
	var url, at string
	var find func(v any, p string) bool
	find = func(v any, p string) bool {
		switch v := v.(type) {
		case map[string]any:
			if u, ok := v["@type"].(string); ok {
				if _, err := protoregistry.GlobalTypes.FindMessageByURL(u); err != nil {
					url, at = u, p
					return true
				}
			}
			for k, e := range v {
				if find(e, join(p, k)) {
					return true
				}
			}
		case []any:
			for i, e := range v {
				if find(e, fmt.Sprintf("%s[%d]", p, i)) {
					return true
				}
			}
		}
		return false
	}
	find(v, path)
	return fmt.Errorf("%s: unknown type %q (not linked into Portico)", at, url)
}

func jsonKind(v any) string {
	switch v.(type) {
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	}
	return strings.TrimPrefix(fmt.Sprintf("%T", v), "*")
}
