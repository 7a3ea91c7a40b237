package xds

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/porticoproxy/portico/filter"
	"github.com/porticoproxy/portico/filter/accesslog"
)

// AccessLogs owns the access logs that translated connection managers
// write (HCM access_log: Envoy's stdout, stderr and file access loggers,
// through filter/accesslog). Each translation opens its own loggers; a
// logger whose listener configuration is no longer referenced is closed
// when the garbage collector notices, and Close flushes and closes the
// ones still open, at shutdown. Lines written to one file by several
// loggers (an old and a new version of a listener) never interleave
// within a line.
//
// Set Stdout and Stderr before the first translation and do not change
// them afterwards; the methods are safe for concurrent use.
type AccessLogs struct {
	// Stdout and Stderr receive envoy.access_loggers.stdout and .stderr;
	// nil means os.Stdout and os.Stderr.
	Stdout, Stderr io.Writer

	mu     sync.Mutex
	open   map[*logSink]struct{}
	closed bool
}

// Close flushes and closes every open access log. Translations after
// Close fail to open access logs.
func (a *AccessLogs) Close() error {
	a.mu.Lock()
	a.closed = true
	sinks := make([]*logSink, 0, len(a.open))
	for s := range a.open {
		sinks = append(sinks, s)
	}
	a.mu.Unlock()
	var errs []error
	for _, s := range sinks {
		errs = append(errs, s.close())
	}
	return errors.Join(errs...)
}

func (a *AccessLogs) add(s *logSink) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return errors.New("access logs: closed")
	}
	if a.open == nil {
		a.open = make(map[*logSink]struct{})
	}
	a.open[s] = struct{}{}
	s.owner = a
	return nil
}

func (a *AccessLogs) remove(s *logSink) {
	a.mu.Lock()
	delete(a.open, s)
	a.mu.Unlock()
}

// logSink is an open access log: the logger, its writer goroutine and,
// for a file logger, the file. close is idempotent.
type logSink struct {
	l     *accesslog.Logger
	w     *lineWriter
	f     *os.File // nil for stdout and stderr
	owner *AccessLogs
	once  sync.Once
	err   error
}

func (s *logSink) close() error {
	s.once.Do(func() {
		s.err = s.l.Close()
		if err := s.w.flush(); s.err == nil {
			s.err = err
		}
		if s.f != nil {
			if err := s.f.Close(); s.err == nil {
				s.err = err
			}
		}
		if s.owner != nil {
			s.owner.remove(s)
		}
	})
	return s.err
}

// lineWriter passes only whole lines to w, so that each write(2) to a file
// opened with O_APPEND holds whole lines: the logger's buffered writer may
// split a line between two writes. Only the logger's goroutine writes.
type lineWriter struct {
	w    io.Writer
	tail []byte
}

func (lw *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	i := bytes.LastIndexByte(p, '\n')
	if i < 0 {
		lw.tail = append(lw.tail, p...)
		return n, nil
	}
	if len(lw.tail) > 0 {
		lw.tail = append(lw.tail, p[:i+1]...)
		_, err := lw.w.Write(lw.tail)
		lw.tail = append(lw.tail[:0], p[i+1:]...)
		return n, err
	}
	_, err := lw.w.Write(p[:i+1])
	lw.tail = append(lw.tail, p[i+1:]...)
	return n, err
}

func (lw *lineWriter) flush() error {
	if len(lw.tail) == 0 {
		return nil
	}
	_, err := lw.w.Write(lw.tail)
	lw.tail = nil
	return err
}

// accessLogFilter is one HCM access_log entry in the chain: Envoy's access
// log filter, then the logger. It is safe for concurrent use.
type accessLogFilter struct {
	name string
	sink *logSink
	pred logPredicate // nil: log every exchange
}

var _ filter.DoneFilter = (*accessLogFilter)(nil)

func (f *accessLogFilter) Name() string { return f.name }

func (f *accessLogFilter) OnDone(ctx context.Context, x *filter.Exchange) {
	if f.pred == nil || f.pred(x, x.Status) {
		f.sink.l.OnDone(ctx, x)
	}
}

// accessLog translates one HCM access_log entry.
func (x *ltx) accessLog(al *accesslogv3.AccessLog, path string) (filter.Filter, error) {
	a := al.GetTypedConfig()
	if a == nil {
		return nil, fmt.Errorf("%s.typed_config: required (access log %q)", path, al.GetName())
	}
	tpath := path + ".typed_config"
	m, err := x.unpack(a, tpath)
	if err != nil {
		return nil, err
	}
	var pred logPredicate
	if f := al.GetFilter(); f != nil {
		if pred, err = compileLogFilter(f, path+".filter"); err != nil {
			return nil, err
		}
	}
	logs := x.t.FactoryContext.AccessLogs
	var (
		cfg  accesslog.Config
		out  io.Writer
		file *os.File
	)
	switch c := m.(type) {
	case *streamv3.StdoutAccessLog:
		out = os.Stdout
		if logs != nil && logs.Stdout != nil {
			out = logs.Stdout
		}
		err = logFormat(&cfg, c.GetLogFormat(), tpath+".log_format")
	case *streamv3.StderrAccessLog:
		out = os.Stderr
		if logs != nil && logs.Stderr != nil {
			out = logs.Stderr
		}
		err = logFormat(&cfg, c.GetLogFormat(), tpath+".log_format")
	case *filev3.FileAccessLog:
		switch f := c.GetAccessLogFormat().(type) {
		case *filev3.FileAccessLog_Format:
			cfg.Format = f.Format
		case *filev3.FileAccessLog_JsonFormat:
			cfg.JSON, err = jsonLogFormat(f.JsonFormat, tpath+".json_format")
		case *filev3.FileAccessLog_LogFormat:
			err = logFormat(&cfg, f.LogFormat, tpath+".log_format")
		}
		if err == nil {
			file, err = os.OpenFile(c.GetPath(), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
			if err != nil {
				err = fmt.Errorf("%s.path: %w", tpath, err)
			}
			out = file
		}
	default:
		return nil, fmt.Errorf("%s: access logger %q (%s): %w", tpath, al.GetName(), a.GetTypeUrl(), ErrUnsupported)
	}
	if err != nil {
		return nil, err
	}
	lw := &lineWriter{w: out}
	cfg.Output = lw
	l, err := accesslog.New(cfg)
	if err != nil {
		if file != nil {
			file.Close()
		}
		return nil, fmt.Errorf("%s: %w", tpath, err)
	}
	sink := &logSink{l: l, w: lw, f: file}
	if logs != nil {
		if err := logs.add(sink); err != nil {
			sink.close()
			return nil, fmt.Errorf("%s: %w", tpath, err)
		}
	}
	name := al.GetName()
	if name == "" {
		name = "envoy.access_loggers"
	}
	f := &accessLogFilter{name: name, sink: sink, pred: pred}
	// Close the logger once no chain holds the filter any more.
	runtime.AddCleanup(f, func(s *logSink) { s.close() }, sink)
	return f, nil
}

// logFormat reads a SubstitutionFormatString into cfg; nil keeps Envoy's
// default format.
func logFormat(cfg *accesslog.Config, sf *corev3.SubstitutionFormatString, path string) error {
	if sf == nil {
		return nil
	}
	switch f := sf.GetFormat().(type) {
	case *corev3.SubstitutionFormatString_TextFormat:
		cfg.Format = f.TextFormat
	case *corev3.SubstitutionFormatString_TextFormatSource:
		b, err := dataSourceBytes(f.TextFormatSource, path+".text_format_source")
		if err != nil {
			return err
		}
		cfg.Format = string(b)
	case *corev3.SubstitutionFormatString_JsonFormat:
		m, err := jsonLogFormat(f.JsonFormat, path+".json_format")
		if err != nil {
			return err
		}
		cfg.JSON = m
	default:
		return fmt.Errorf("%s: no format", path)
	}
	return nil
}

// jsonLogFormat accepts a flat JSON format whose values are format
// strings, which is what filter/accesslog implements.
func jsonLogFormat(s *structpb.Struct, path string) (map[string]string, error) {
	out := make(map[string]string, len(s.GetFields()))
	for k, v := range s.GetFields() {
		sv, ok := v.GetKind().(*structpb.Value_StringValue)
		if !ok {
			return nil, fmt.Errorf("%s.%s: only string values (format strings) are supported: %w", path, k, ErrUnsupported)
		}
		out[k] = sv.StringValue
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: empty", path)
	}
	return out, nil
}
