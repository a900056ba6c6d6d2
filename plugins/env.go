package plugins

import (
	"os"
	"path/filepath"
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
