package plugins

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/s3t-dev/s3t/sdk"
)

// Environment variables the host reads. They are read here and nowhere else in this package.
const (
	// EnvData names the variable with s3t's data directory.
	EnvData = "S3T_DATA"
	// EnvPluginDir names the variable with the plugin directory.
	EnvPluginDir = "S3T_PLUGIN_DIR"
)

// DefaultDataDir is the data directory when S3T_DATA is unset, relative to the working
// directory.
const DefaultDataDir = "s3t-data"

// EnvVar documents one environment variable, for a command's --help.
type EnvVar struct {
	// Name is the variable's name.
	Name string
	// Description says what it sets and its default.
	Description string
}

// Env lists the environment variables this package reads.
var Env = []EnvVar{
	{EnvData, "s3t's data directory (default ./" + DefaultDataDir + ")"},
	{EnvPluginDir, "the plugin directory: installed plugin binaries and their catalog (default $S3T_DATA/plugins)"},
}

// QualifiedName returns the plugin name a user's short name means for a kind: a name outside
// the kind's namespace gets it ("lora" is "peft.lora", "cyclic" "selector.cyclic", "acme.ia3"
// "peft.acme.ia3"); a name in it is used as it is ("peft.acme.ia3"). (A name with a dot used
// to be taken as it was, so "acme.ia3" found no plugin.) A name in another kind's namespace
// ("selector.cyclic" for a PEFT) is used as it is too, so that the host says it is of another
// kind rather than that no plugin has the name.
func QualifiedName(kind sdk.Kind, name string) string {
	for _, k := range []sdk.Kind{sdk.KindPEFT, sdk.KindSelector} {
		if strings.HasPrefix(name, string(k)+".") {
			return name
		}
	}
	return string(kind) + "." + name
}

// DataDir returns $S3T_DATA, or DefaultDataDir when it is unset.
func DataDir() string {
	if d := os.Getenv(EnvData); d != "" {
		return d
	}
	return DefaultDataDir
}

// PluginDir returns $S3T_PLUGIN_DIR, or dataDir/plugins when it is unset.
func PluginDir(dataDir string) string {
	if d := os.Getenv(EnvPluginDir); d != "" {
		return d
	}
	return filepath.Join(dataDir, "plugins")
}
