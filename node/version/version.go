// Package version holds the version stamped into kiln's binaries at link time.
package version

// Version is set with -ldflags "-X github.com/kiln-cluster/kiln/node/version.Version=...".
var Version = "dev"
