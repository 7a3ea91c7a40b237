package xds

import (
	"fmt"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// supported lists, per message type, the fields the translator implements.
// A set field not listed here is unsupported. A message type that is not a
// key is a leaf whose content the translator reads whole: the well-known
// types (Duration, wrappers, Any) only; TestSupportedComplete enforces it.
var supported = map[protoreflect.FullName][]protoreflect.Name{
	"envoy.config.route.v3.RouteConfiguration": {
		"name", "virtual_hosts",
		"request_headers_to_add", "request_headers_to_remove",
		"response_headers_to_add", "response_headers_to_remove",
		"most_specific_header_mutations_wins",
	},
	"envoy.config.route.v3.VirtualHost": {
		"name", "domains", "routes",
		"request_headers_to_add", "request_headers_to_remove",
		"response_headers_to_add", "response_headers_to_remove",
		"retry_policy",
	},
	"envoy.config.route.v3.Route": {
		"name", "match", "route", "redirect", "direct_response",
		"typed_per_filter_config",
		"request_headers_to_add", "request_headers_to_remove",
		"response_headers_to_add", "response_headers_to_remove",
		"per_request_buffer_limit_bytes",
	},
	"envoy.config.route.v3.RouteMatch": {
		"prefix", "path", "safe_regex", "path_separated_prefix",
		"case_sensitive", "headers", "query_parameters", "grpc",
	},
	"envoy.config.route.v3.RouteMatch.GrpcRouteMatchOptions": {},
	"envoy.config.route.v3.HeaderMatcher": {
		"name", "string_match", "range_match", "present_match", "invert_match",
		"exact_match", "safe_regex_match", "prefix_match", "suffix_match", "contains_match",
	},
	"envoy.config.route.v3.QueryParameterMatcher": {"name", "string_match", "present_match"},
	"envoy.type.matcher.v3.StringMatcher": {
		"exact", "prefix", "suffix", "safe_regex", "contains", "ignore_case",
	},
	"envoy.type.matcher.v3.RegexMatcher": {"regex", "google_re2"},
	// google_re2 is a deprecated engine selector; only its empty form is
	// accepted.
	"envoy.type.matcher.v3.RegexMatcher.GoogleRE2":        {},
	"envoy.type.matcher.v3.RegexMatchAndSubstitute":       {"pattern", "substitution"},
	"envoy.type.v3.Int64Range":                            {"start", "end"},
	"envoy.type.v3.FractionalPercent":                     {"numerator", "denominator"},
	"envoy.config.core.v3.RuntimeFractionalPercent":       {"default_value"},
	"envoy.config.core.v3.HeaderValueOption":              {"header", "append", "append_action"},
	"envoy.config.core.v3.HeaderValue":                    {"key", "value"},
	"envoy.config.core.v3.DataSource":                     {"inline_string", "inline_bytes"},
	"envoy.config.route.v3.DirectResponseAction":          {"status", "body"},
	"envoy.config.route.v3.WeightedCluster":               {"clusters"},
	"envoy.config.route.v3.WeightedCluster.ClusterWeight": {"name", "weight"},
	"envoy.config.route.v3.RouteAction": {
		"cluster", "cluster_header", "weighted_clusters",
		"prefix_rewrite", "regex_rewrite",
		"host_rewrite_literal", "auto_host_rewrite", "host_rewrite_header",
		"timeout", "idle_timeout", "retry_policy", "hash_policy",
		"request_mirror_policies",
	},
	"envoy.config.route.v3.RouteAction.HashPolicy": {
		"header", "cookie", "connection_properties", "query_parameter", "terminal",
	},
	"envoy.config.route.v3.RouteAction.HashPolicy.Header":               {"header_name"},
	"envoy.config.route.v3.RouteAction.HashPolicy.Cookie":               {"name", "ttl", "path"},
	"envoy.config.route.v3.RouteAction.HashPolicy.ConnectionProperties": {"source_ip"},
	"envoy.config.route.v3.RouteAction.HashPolicy.QueryParameter":       {"name"},
	"envoy.config.route.v3.RouteAction.RequestMirrorPolicy":             {"cluster", "runtime_fraction"},
	"envoy.config.route.v3.RetryPolicy": {
		"retry_on", "num_retries", "per_try_timeout", "per_try_idle_timeout",
		"retriable_status_codes", "retriable_headers", "retry_back_off",
	},
	"envoy.config.route.v3.RetryPolicy.RetryBackOff": {"base_interval", "max_interval"},
	"envoy.config.route.v3.RedirectAction": {
		"scheme_redirect", "https_redirect", "host_redirect", "port_redirect",
		"path_redirect", "prefix_rewrite", "response_code", "strip_query",
	},
}

// supportedSet is supported indexed for lookups.
var supportedSet = indexAllowList(supported)

// indexAllowList indexes an allow-list for lookups.
func indexAllowList(list map[protoreflect.FullName][]protoreflect.Name) map[protoreflect.FullName]map[protoreflect.Name]bool {
	s := make(map[protoreflect.FullName]map[protoreflect.Name]bool, len(list))
	for msg, fields := range list {
		s[msg] = make(map[protoreflect.Name]bool, len(fields))
		for _, f := range fields {
			s[msg][f] = true
		}
	}
	return s
}

// checkSupported walks m and calls report for every set field that is not
// in the allow-list and for unknown fields (from a newer proto), with the
// field's path. Fields are visited in declaration order, so reports are
// deterministic. Map values (typed_per_filter_config's Any) are opaque and
// not descended into.
func checkSupported(m protoreflect.Message, path string, report func(path, msg string)) {
	walkAllowList(supportedSet, m, path, report, nil)
}

// walkAllowList is the walk behind checkSupported over the allow-list
// set. A message type set does not list is a leaf read whole, unless
// unlisted is not nil: then it is handed to unlisted.
func walkAllowList(set map[protoreflect.FullName]map[protoreflect.Name]bool, m protoreflect.Message, path string,
	report func(path, msg string), unlisted func(m protoreflect.Message, path string)) {
	allowed, ok := set[m.Descriptor().FullName()]
	if !ok {
		if unlisted != nil {
			unlisted(m, path)
		}
		return
	}
	if len(m.GetUnknown()) > 0 {
		report(orRoot(path), "unknown fields")
	}
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if !m.Has(fd) {
			continue
		}
		p := string(fd.Name())
		if path != "" {
			p = path + "." + p
		}
		if !allowed[fd.Name()] {
			report(p, ErrUnsupported.Error())
			continue
		}
		switch v := m.Get(fd); {
		case fd.IsMap():
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for j := range l.Len() {
				walkAllowList(set, l.Get(j).Message(), fmt.Sprintf("%s[%d]", p, j), report, unlisted)
			}
		case fd.Message() != nil:
			walkAllowList(set, v.Message(), p, report, unlisted)
		}
	}
}

func orRoot(path string) string {
	if path == "" {
		return "(root)"
	}
	return path
}
