package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// Version is the version of this SDK, reported by every plugin built with it.
const Version = "0.1.0"

// ProtocolVersion is the newest plugin protocol version this SDK speaks. See README.md
// ("Protocol") for the compatibility rule.
const ProtocolVersion = 1

// ProtocolVersions lists every protocol version this SDK serves and accepts, oldest first. A
// plugin serves all of them and go-plugin picks the newest one the host also speaks.
var ProtocolVersions = []int{1}

// Handshake is the go-plugin handshake of s3t plugins. The magic cookie only stops a plugin
// binary run by hand from waiting for a host forever; it is not security (the host verifies
// binaries by SHA-256 before every start).
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "S3T_PLUGIN_MAGIC_COOKIE",
	MagicCookieValue: "f3b9c1e2-s3t-plugin-5d7a",
}

// MaxMessageSize bounds one gRPC message between host and plugin in either direction (plans of
// large backbones carry every parameter's off value).
const MaxMessageSize = 256 << 20

// Kind is what a plugin provides; it is also the name a host dispenses it under.
type Kind string

// The plugin kinds.
const (
	KindPEFT     Kind = "peft"
	KindSelector Kind = "selector"
)

// InfoName is the name every plugin serves its InfoService under.
const InfoName = "info"

// Info describes a plugin binary.
type Info struct {
	// Name is the plugin's namespaced id ("peft.lora", "selector.cyclic").
	Name string `json:"name"`
	// Version is the plugin's own version.
	Version string `json:"version"`
	// Kind is what it provides.
	Kind Kind `json:"kind"`
	// Description is one line for people.
	Description string `json:"description,omitempty"`
	// SDKVersion is the version of the SDK the plugin was built with.
	SDKVersion string `json:"sdk_version,omitempty"`
}

// InfoRequest is the input of InfoService.Info. It has no fields yet.
type InfoRequest struct{}

// InfoService is served by every plugin so that a host can catalog a binary before it
// dispenses the plugin's kind.
type InfoService interface {
	Info(ctx context.Context, req *InfoRequest) (*Info, error)
}

// Plugin is what a plugin binary serves: its identity and exactly one implementation.
type Plugin struct {
	// Name is the namespaced id: "peft.<name>" for a PEFT type, "selector.<name>" for a
	// selector; lower-case letters, digits, '_' and '-', further dots allowed
	// ("peft.acme.ia3").
	Name string
	// Version is the plugin's version, e.g. "1.2.0".
	Version string
	// Description is one line for people.
	Description string
	// PEFT is the implementation of a PEFT plugin.
	PEFT PEFT
	// Selector is the implementation of a selector plugin.
	Selector Selector
}

// ErrInvalidPlugin means a Plugin cannot be served: no name, a name outside its kind's
// namespace, no version, or not exactly one implementation.
var ErrInvalidPlugin = errors.New("invalid plugin")

var namePattern = regexp.MustCompile(`^(peft|selector)\.[a-z0-9][a-z0-9_-]*(\.[a-z0-9][a-z0-9_-]*)*$`)

// Kind returns what p provides ("" when it has no implementation).
func (p *Plugin) Kind() Kind {
	switch {
	case p.PEFT != nil:
		return KindPEFT
	case p.Selector != nil:
		return KindSelector
	}
	return ""
}

// Validate checks p can be served (errors wrap ErrInvalidPlugin).
func (p *Plugin) Validate() error {
	if (p.PEFT == nil) == (p.Selector == nil) {
		return fmt.Errorf("%w: %q: set exactly one of PEFT and Selector", ErrInvalidPlugin, p.Name)
	}
	if err := ValidName(p.Name, p.Kind()); err != nil {
		return err
	}
	if p.Version == "" {
		return fmt.Errorf("%w: %q has no version", ErrInvalidPlugin, p.Name)
	}
	return nil
}

// ValidName checks that name is a plugin name of the kind: "peft.<name>" or "selector.<name>",
// lower-case letters, digits, '_' and '-', further dots allowed (errors wrap ErrInvalidPlugin).
// A host checks the name a plugin reports before it names a file after it.
func ValidName(name string, kind Kind) error {
	if kind != KindPEFT && kind != KindSelector {
		return fmt.Errorf("%w: %q: kind %q, want %q or %q", ErrInvalidPlugin, name, kind, KindPEFT, KindSelector)
	}
	if !namePattern.MatchString(name) {
		return fmt.Errorf("%w: name %q must look like %q", ErrInvalidPlugin, name, string(kind)+".name")
	}
	if !strings.HasPrefix(name, string(kind)+".") {
		return fmt.Errorf("%w: a %s plugin's name must start with %q, got %q", ErrInvalidPlugin, kind, string(kind)+".", name)
	}
	return nil
}

// Info returns p's Info.
func (p *Plugin) Info() *Info {
	return &Info{Name: p.Name, Version: p.Version, Kind: p.Kind(), Description: p.Description, SDKVersion: Version}
}

// Serve serves p to the s3t host that started this process, over gRPC through hashicorp/go-plugin,
// and returns when the host is done with it. It is the one call in a plugin's main:
//
//	func main() { sdk.Serve(&sdk.Plugin{Name: "peft.ia3", Version: "1.0.0", PEFT: ia3.New()}) }
//
// The handshake and protocol versions are fixed inside. Serve points slog's default logger at
// stderr in the JSON form the host reads, so the plugin's slog records reach the host's log
// under the plugin's name. An invalid Plugin, or a binary started by hand rather than by a host,
// prints why and exits with status 1.
func Serve(p *Plugin) {
	if err := p.Validate(); err != nil {
		fmt.Fprintf(os.Stderr, "s3t plugin: %v\n", err)
		os.Exit(1)
	}
	slog.SetDefault(slog.New(NewLogHandler(os.Stderr, slog.LevelDebug)))
	go exitWithParent(os.Getppid(), time.Second)
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  Handshake,
		VersionedPlugins: serverPlugins(p),
		GRPCServer:       newGRPCServer,
		Logger: hclog.New(&hclog.LoggerOptions{
			Name: p.Name, Output: os.Stderr, JSONFormat: true, Level: hclog.Info,
		}),
	})
}

// exitWithParent ends the plugin process once the host that started it is gone: a host killed
// outright (SIGKILL, a crash) never tells its plugins to stop, and they lived on, adopted by
// init, one more each time the host was restarted. It checks every interval whether the
// process's parent is still ppid.
func exitWithParent(ppid int, every time.Duration) {
	if ppid <= 1 {
		return // started by init, or the platform does not say
	}
	for range time.Tick(every) {
		if os.Getppid() != ppid {
			os.Exit(0)
		}
	}
}

func newGRPCServer(opts []grpc.ServerOption) *grpc.Server {
	opts = append(opts, grpc.MaxRecvMsgSize(MaxMessageSize), grpc.MaxSendMsgSize(MaxMessageSize))
	return plugin.DefaultGRPCServer(opts)
}

// HostPlugins returns the plugin sets a host passes to go-plugin's ClientConfig.VersionedPlugins:
// for every protocol version, the InfoService under InfoName and each kind under its Kind.
// Dispensing gives an InfoService, a PEFT or a Selector whose calls cross the process boundary.
func HostPlugins() map[int]plugin.PluginSet {
	return serverPlugins(nil)
}

// GRPCDialOptions returns the dial options a host passes to go-plugin's
// ClientConfig.GRPCDialOptions (message size limits).
func GRPCDialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageSize), grpc.MaxCallSendMsgSize(MaxMessageSize))}
}

// serverPlugins returns the plugin sets serving p (nil on the host side).
func serverPlugins(p *Plugin) map[int]plugin.PluginSet {
	sets := map[int]plugin.PluginSet{}
	for _, v := range ProtocolVersions {
		set := plugin.PluginSet{}
		switch {
		case p == nil:
			set[InfoName] = &infoPlugin{}
			set[string(KindPEFT)] = &peftPlugin{}
			set[string(KindSelector)] = &selectorPlugin{}
		default:
			set[InfoName] = &infoPlugin{info: p.Info()}
			if p.PEFT != nil {
				set[string(KindPEFT)] = &peftPlugin{impl: p.PEFT}
			} else {
				set[string(KindSelector)] = &selectorPlugin{impl: p.Selector}
			}
		}
		sets[v] = set
	}
	return sets
}

// hclogTime is the timestamp layout go-plugin parses in a plugin's JSON log lines.
const hclogTime = "2006-01-02T15:04:05.000000Z07:00"

// NewLogHandler returns a slog handler writing JSON lines in the form a go-plugin host reads
// from a plugin's stderr (@level, @message, @timestamp, then the attributes), so that each record
// reaches the host's log with its level and attributes. Serve installs one as the default.
func NewLogHandler(w io.Writer, level slog.Leveler) slog.Handler {
	return slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.LevelKey:
				lvl, _ := a.Value.Any().(slog.Level)
				name := "info"
				switch {
				case lvl < slog.LevelDebug:
					name = "trace"
				case lvl < slog.LevelInfo:
					name = "debug"
				case lvl < slog.LevelWarn:
					name = "info"
				case lvl < slog.LevelError:
					name = "warn"
				default:
					name = "error"
				}
				return slog.String("@level", name)
			case slog.MessageKey:
				return slog.String("@message", a.Value.String())
			case slog.TimeKey:
				return slog.String("@timestamp", a.Value.Time().Format(hclogTime))
			}
			return a
		},
	})
}
