package xds

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"

	"github.com/porticoproxy/portico"
	"github.com/porticoproxy/portico/cluster"
	"github.com/porticoproxy/portico/listener"
	"github.com/porticoproxy/portico/route"
)

// fileSource is a path_config_source of dynamic_resources: a file holding
// a DiscoveryResponse of listeners (lds) or clusters (cds), in YAML or
// JSON. Envoy watches it with inotify; Portico polls it (poll_interval,
// default 1 s) and applies a changed file, once two polls in a row have
// read the same new content, as one update: every resource is translated
// first, and any error keeps the previous version of all of them serving.
// As with Envoy, replace the file with a rename rather than writing it in
// place. Its fields after loadInitial are owned by watch.
type fileSource struct {
	kind     string // "lds" or "cds"
	path     string // the config source's path in the bootstrap
	file     string
	interval time.Duration

	sum     [sha256.Size]byte
	applied map[string][]byte         // resource name -> deterministic encoding
	routes  map[string][]route.Config // listener name -> its inline routes
}

func newFileSource(cs *corev3.ConfigSource, path, kind string) (*fileSource, error) {
	f := &fileSource{kind: kind, path: path, interval: pollInterval}
	switch s := cs.GetConfigSourceSpecifier().(type) {
	case *corev3.ConfigSource_Path:
		f.file = s.Path
	case *corev3.ConfigSource_PathConfigSource:
		f.file = s.PathConfigSource.GetPath()
		if d := s.PathConfigSource.GetPollInterval(); d != nil {
			v, err := duration(d, path+".path_config_source.poll_interval")
			if err != nil {
				return nil, err
			}
			if v > 0 {
				f.interval = v
			}
		}
	}
	if f.file == "" {
		return nil, fmt.Errorf("%s: path: required", path)
	}
	return f, nil
}

// fileUpdate is a translated version of a file.
type fileUpdate struct {
	sum       [sha256.Size]byte
	version   string
	listeners []listener.Config
	routes    map[string][]route.Config
	clusters  []cluster.Config
	encoded   map[string][]byte
}

// read reads and translates the file.
func (f *fileSource) read(b *Bootstrap) (*fileUpdate, error) {
	data, err := os.ReadFile(f.file)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.path, err)
	}
	u := &fileUpdate{sum: sha256.Sum256(data), routes: map[string][]route.Config{}, encoded: map[string][]byte{}}
	var dr discoveryv3.DiscoveryResponse
	if err := unmarshalConfig(data, &dr, func(w Warning) {
		w.Path = f.file + ": " + w.Path
		b.warn(w)
	}); err != nil {
		return nil, fmt.Errorf("%s: %s: %w", f.path, f.file, err)
	}
	u.version = dr.GetVersionInfo()
	for i, a := range dr.GetResources() {
		path := fmt.Sprintf("%s: %s: resources[%d]", f.path, f.file, i)
		m, err := a.UnmarshalNew()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		enc, _ := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		switch r := m.(type) {
		case *listenerv3.Listener:
			if f.kind != "lds" {
				return nil, fmt.Errorf("%s: a Listener in a cds_config file", path)
			}
			lc, routes, err := b.listener(r, path)
			if err != nil {
				return nil, err
			}
			if _, dup := u.encoded[lc.Name]; dup {
				return nil, fmt.Errorf("%s: listener %q: duplicate name", path, lc.Name)
			}
			u.listeners = append(u.listeners, lc)
			u.routes[lc.Name] = routes
			u.encoded[lc.Name] = enc
		case *clusterv3.Cluster:
			if f.kind != "cds" {
				return nil, fmt.Errorf("%s: a Cluster in an lds_config file", path)
			}
			cc, err := b.cluster(r, path)
			if err != nil {
				return nil, err
			}
			if _, dup := u.encoded[cc.Name]; dup {
				return nil, fmt.Errorf("%s: cluster %q: duplicate name", path, cc.Name)
			}
			u.clusters = append(u.clusters, cc)
			u.encoded[cc.Name] = enc
		default:
			return nil, fmt.Errorf("%s: type %s: not a %s resource", path, a.GetTypeUrl(), f.kind)
		}
	}
	return u, nil
}

// loadInitial reads the file and adds its resources to the bootstrap's
// initial configuration.
func (f *fileSource) loadInitial(b *Bootstrap) error {
	u, err := f.read(b)
	if err != nil {
		return err
	}
	for _, lc := range u.listeners {
		b.Config.Listeners = append(b.Config.Listeners, lc)
		b.Config.Routes = append(b.Config.Routes, u.routes[lc.Name]...)
	}
	b.Config.Clusters = append(b.Config.Clusters, u.clusters...)
	f.sum, f.applied, f.routes = u.sum, u.encoded, u.routes
	return nil
}

// watch polls the file until ctx is done and applies its changes to gw.
func (f *fileSource) watch(ctx context.Context, b *Bootstrap, gw *portico.Gateway) {
	t := time.NewTicker(f.interval)
	defer t.Stop()
	var pending [sha256.Size]byte
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		data, err := os.ReadFile(f.file)
		if err != nil {
			b.log.Error("dynamic resources file unreadable; keeping the last version", "path", f.path, "file", f.file, "err", err)
			continue
		}
		sum := sha256.Sum256(data)
		if sum == f.sum {
			pending = [sha256.Size]byte{}
			continue
		}
		if sum != pending {
			// Apply a version once two polls in a row have seen it, so that
			// a file being written in place is not read half way. (Envoy
			// asks for files to be replaced by a rename; so does Portico,
			// and this only guards against writers that do not.)
			pending = sum
			continue
		}
		u, err := f.read(b)
		if err != nil {
			b.log.Error("dynamic resources file rejected; keeping the last version", "path", f.path, "file", f.file, "err", err)
			f.sum = sha256.Sum256(data) // do not retry until it changes again
			continue
		}
		if err := f.apply(gw, u); err != nil {
			b.log.Error("dynamic resources file: update failed", "path", f.path, "file", f.file, "version", u.version, "err", err)
		} else {
			b.log.Info("dynamic resources file applied", "path", f.path, "file", f.file, "version", u.version)
		}
	}
}

// apply applies the resources of u that changed, through the gateway's
// per-resource API: new and changed resources first (a listener's inline
// routes before it), then removals.
func (f *fileSource) apply(gw *portico.Gateway, u *fileUpdate) error {
	var errs []error
	for _, cc := range u.clusters {
		if bytes.Equal(f.applied[cc.Name], u.encoded[cc.Name]) {
			continue
		}
		errs = append(errs, gw.UpsertCluster(cc))
	}
	for _, lc := range u.listeners {
		if bytes.Equal(f.applied[lc.Name], u.encoded[lc.Name]) {
			continue
		}
		for _, rc := range u.routes[lc.Name] {
			errs = append(errs, gw.UpsertRoutes(rc))
		}
		errs = append(errs, gw.UpsertListener(lc))
		errs = append(errs, f.removeStaleRoutes(gw, lc.Name, u.routes[lc.Name]))
	}
	for name := range f.applied {
		if _, ok := u.encoded[name]; ok {
			continue
		}
		if f.kind == "cds" {
			errs = append(errs, gw.RemoveCluster(name))
			continue
		}
		errs = append(errs, gw.RemoveListener(name))
		errs = append(errs, f.removeStaleRoutes(gw, name, nil))
	}
	f.sum, f.applied = u.sum, u.encoded
	for name, rs := range u.routes {
		f.routes[name] = rs
	}
	for name := range f.routes {
		if _, ok := u.routes[name]; !ok {
			delete(f.routes, name)
		}
	}
	return errors.Join(errs...)
}

// removeStaleRoutes removes the inline routes listener name had and no
// longer has.
func (f *fileSource) removeStaleRoutes(gw *portico.Gateway, name string, now []route.Config) error {
	var errs []error
	for _, old := range f.routes[name] {
		keep := false
		for _, rc := range now {
			keep = keep || rc.Name == old.Name
		}
		if !keep {
			errs = append(errs, gw.RemoveRoutes(old.Name))
		}
	}
	return errors.Join(errs...)
}
