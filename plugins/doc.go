// Package plugins is the host side of s3t's hashicorp/go-plugin plugins (discovery, checksums,
// launch, version negotiation, restart) and home of the built-in plugins, each written
// against package sdk alone. It is built by the plugin issue.
package plugins
