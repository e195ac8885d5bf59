// Package configs holds what kiln writes onto nodes, as templates, and the example cluster specs.
// Everything is embedded in the kiln binary.
package configs

import (
	"embed"
	"text/template"
)

//go:embed templates/*
var templateFS embed.FS

// Examples holds the example cluster specs and the units and snippets they name.
//
//go:embed examples
var Examples embed.FS

// Templates are the node files kiln renders, by file name (etcd.service, node.network, ...).
var Templates = template.Must(template.New("").Option("missingkey=error").ParseFS(templateFS, "templates/*"))
