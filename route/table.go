package route

import (
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
)

// Table is a compiled route configuration. It is immutable once New
// returns and safe for concurrent use by any number of goroutines; a
// configuration update builds a new Table.
//
// Matching follows Envoy: the virtual host is chosen by the request's host
// (exact domain, then the longest suffix wildcard, then the longest prefix
// wildcard, then "*"), and within it the first rule in declaration order
// whose match holds wins. Routes are indexed by the literal path prefix
// each one requires (a radix tree whose nodes carry, pre-merged in
// declaration order, every route that can match paths through them), so a
// request only examines the few routes that can possibly match it and
// match cost stays nearly flat as the table grows.
type Table struct {
	cfg    *Config
	index  hostIndex
	routes []*Route
}

// virtualHost is a compiled VirtualHost.
type virtualHost struct {
	name string
	root node
}

// New validates cfg and compiles it into a Table. The Table keeps its own
// copy of cfg. Errors name the offending field as Config.Validate does.
func New(cfg Config) (*Table, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("route configuration %q: %w", cfg.Name, err)
	}
	c := cfg.clone()
	t := &Table{cfg: c}
	host, _ := os.Hostname()
	tableReq := compileMutations(c.RequestHeadersToAdd, c.RequestHeadersToRemove)
	tableResp := compileMutations(c.ResponseHeadersToAdd, c.ResponseHeadersToRemove)
	t.index.exact = make(map[string]*virtualHost)
	for i := range c.VirtualHosts {
		vc := &c.VirtualHosts[i]
		vh := &virtualHost{name: vc.Name}
		vhReq := compileMutations(vc.RequestHeadersToAdd, vc.RequestHeadersToRemove)
		vhResp := compileMutations(vc.ResponseHeadersToAdd, vc.ResponseHeadersToRemove)
		for j := range vc.Rules {
			rt := compileRoute(&vc.Rules[j], vc, len(t.routes), host)
			rt.reqLevels = levels(c.MostSpecificHeaderMutationsWins, &rt.reqOwn, &vhReq, &tableReq)
			rt.respLevels = levels(c.MostSpecificHeaderMutationsWins, &rt.respOwn, &vhResp, &tableResp)
			rt.needRewrite = rt.pathRewrite != rewriteNone || rt.hostRewrite != "" || rt.hostHeader != "" || len(rt.reqLevels) > 0
			t.routes = append(t.routes, rt)
			vh.root.insert(rt.indexKey(), rt)
		}
		vh.root.finish(nil)
		for _, d := range vc.Domains {
			t.index.add(lowerASCII(d), vh)
		}
	}
	t.index.sort()
	return t, nil
}

// levels returns the non-empty mutation levels in application order.
func levels(mostSpecificWins bool, route, vhost, table *mutations) []*mutations {
	order := [3]*mutations{route, vhost, table}
	if mostSpecificWins {
		order = [3]*mutations{table, vhost, route}
	}
	var out []*mutations
	for _, m := range order {
		if !m.empty() {
			out = append(out, m)
		}
	}
	return out
}

// Name returns the route configuration's name.
func (t *Table) Name() string { return t.cfg.Name }

// Config returns the configuration the table was compiled from. It is the
// table's own copy and must be treated as read-only.
func (t *Table) Config() *Config { return t.cfg }

// Routes returns every route of the table in declaration order (virtual
// host by virtual host); Routes()[i].Index() == i. Callers use the index to
// keep per-route data such as compiled filter chains in a slice. The
// returned slice is a fresh copy.
func (t *Table) Routes() []*Route { return append([]*Route(nil), t.routes...) }

// Match returns the route serving r, or nil when no virtual host or no
// route matches. It reads r.Host, r.URL.Path, r.URL.RawQuery, r.Header and
// r.Method, and does not allocate for prefix, path, path-separated-prefix
// and header matches on a lower-case host.
func (t *Table) Match(r *http.Request) *Route {
	vh := t.index.lookup(r.Host)
	if vh == nil {
		return nil
	}
	var path string
	if r.URL != nil {
		path = r.URL.Path
	}
	for _, rt := range vh.root.lookup(path) {
		if rt.matches(r, path) {
			return rt
		}
	}
	return nil
}

// hostIndex selects virtual hosts by host name.
type hostIndex struct {
	exact  map[string]*virtualHost
	suffix []wildGroup // "*.example.com", longest first
	prefix []wildGroup // "example.*", longest first
	def    *virtualHost
}

// wildGroup holds the wildcard domains of one literal length.
type wildGroup struct {
	n int
	m map[string]*virtualHost
}

func (x *hostIndex) add(d string, vh *virtualHost) {
	switch {
	case d == "*":
		x.def = vh
	case d[0] == '*':
		x.suffix = addWild(x.suffix, d[1:], vh)
	case d[len(d)-1] == '*':
		x.prefix = addWild(x.prefix, d[:len(d)-1], vh)
	default:
		x.exact[d] = vh
	}
}

func addWild(gs []wildGroup, lit string, vh *virtualHost) []wildGroup {
	for i := range gs {
		if gs[i].n == len(lit) {
			gs[i].m[lit] = vh
			return gs
		}
	}
	return append(gs, wildGroup{n: len(lit), m: map[string]*virtualHost{lit: vh}})
}

func (x *hostIndex) sort() {
	sort.Slice(x.suffix, func(i, j int) bool { return x.suffix[i].n > x.suffix[j].n })
	sort.Slice(x.prefix, func(i, j int) bool { return x.prefix[i].n > x.prefix[j].n })
}

func (x *hostIndex) lookup(host string) *virtualHost {
	h := lowerASCII(host)
	bare := stripPort(h)
	if vh := x.exact[h]; vh != nil {
		return vh
	}
	if bare != h {
		if vh := x.exact[bare]; vh != nil {
			return vh
		}
	}
	for i := range x.suffix {
		g := &x.suffix[i]
		// The wildcard must match at least one character.
		if len(h) > g.n {
			if vh := g.m[h[len(h)-g.n:]]; vh != nil {
				return vh
			}
		}
		if bare != h && len(bare) > g.n {
			if vh := g.m[bare[len(bare)-g.n:]]; vh != nil {
				return vh
			}
		}
	}
	for i := range x.prefix {
		g := &x.prefix[i]
		if len(h) > g.n {
			if vh := g.m[h[:g.n]]; vh != nil {
				return vh
			}
		}
		if bare != h && len(bare) > g.n {
			if vh := g.m[bare[:g.n]]; vh != nil {
				return vh
			}
		}
	}
	return x.def
}

// lowerASCII lower-cases the ASCII letters of s (other bytes are kept as
// they are), allocating only when s has an upper-case ASCII letter.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; 'A' <= c && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// stripPort removes a trailing ":port" from a host, IPv6 literals included.
func stripPort(h string) string {
	i := strings.LastIndexByte(h, ':')
	if i < 0 {
		return h
	}
	if h[0] == '[' {
		if j := strings.LastIndexByte(h, ']'); j > 0 && j < i {
			return h[:i]
		}
		return h
	}
	if strings.IndexByte(h, ':') != i { // bare IPv6 address, no port
		return h
	}
	return h[:i]
}

// node is a radix-tree node over literal path prefixes.
type node struct {
	label    string  // edge label from the parent
	firsts   []byte  // first byte of each child's label, sorted
	children []*node // parallel to firsts
	own      []*Route
	// cands are the routes whose literal is a prefix of this node's
	// string (this node's own and its ancestors'), in declaration order.
	cands []*Route
}

func (n *node) child(c byte) int {
	lo, hi := 0, len(n.firsts)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if n.firsts[m] < c {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(n.firsts) && n.firsts[lo] == c {
		return lo
	}
	return -1
}

func (n *node) insert(key string, r *Route) {
	for {
		if key == "" {
			n.own = append(n.own, r)
			return
		}
		i := n.child(key[0])
		if i < 0 {
			ch := &node{label: key, own: []*Route{r}}
			at := sort.Search(len(n.firsts), func(j int) bool { return n.firsts[j] > key[0] })
			n.firsts = append(n.firsts, 0)
			copy(n.firsts[at+1:], n.firsts[at:])
			n.firsts[at] = key[0]
			n.children = append(n.children, nil)
			copy(n.children[at+1:], n.children[at:])
			n.children[at] = ch
			return
		}
		ch := n.children[i]
		l := commonPrefix(key, ch.label)
		if l < len(ch.label) {
			mid := &node{label: ch.label[:l]}
			ch.label = ch.label[l:]
			mid.firsts = []byte{ch.label[0]}
			mid.children = []*node{ch}
			n.children[i] = mid
			ch = mid
		}
		key = key[l:]
		n = ch
	}
}

func commonPrefix(a, b string) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

// finish computes cands for n and its subtree.
func (n *node) finish(inherited []*Route) {
	n.cands = inherited
	if len(n.own) > 0 {
		n.cands = mergeRoutes(inherited, n.own)
	}
	for _, ch := range n.children {
		ch.finish(n.cands)
	}
}

func mergeRoutes(a, b []*Route) []*Route {
	out := make([]*Route, 0, len(a)+len(b))
	for len(a) > 0 && len(b) > 0 {
		if a[0].index < b[0].index {
			out, a = append(out, a[0]), a[1:]
		} else {
			out, b = append(out, b[0]), b[1:]
		}
	}
	out = append(out, a...)
	return append(out, b...)
}

// lookup returns the candidate routes for path: every route whose literal
// prefix is a prefix of path, in declaration order.
func (n *node) lookup(path string) []*Route {
	cands := n.cands
	for i := 0; i < len(path); {
		j := n.child(path[i])
		if j < 0 {
			break
		}
		ch := n.children[j]
		if !strings.HasPrefix(path[i:], ch.label) {
			break
		}
		i += len(ch.label)
		n = ch
		cands = n.cands
	}
	return cands
}
