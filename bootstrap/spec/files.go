package spec

import (
	"errors"
	"strings"

	"github.com/coreos/butane/config"
	"github.com/coreos/butane/config/common"
	vreport "github.com/coreos/vcontext/report"
	"gopkg.in/yaml.v3"

	"github.com/kiln-cluster/kiln/bootstrap/report"
	"github.com/kiln-cluster/kiln/node/unit"

	"github.com/kiln-cluster/kiln/images/catalog"
)

// Variant is the Butane variant and version kiln writes for an OS.
func Variant(os string) (variant, version string) {
	o := catalog.Of(os)
	return o.ButaneVariant, o.ButaneVersion
}

// CheckSnippet translates a user's Butane snippet alone, reporting Butane's and Ignition's
// problems at the snippet's own lines. The snippet must be of the cluster's variant.
func CheckSnippet(file string, raw []byte, os string) (report.Report, error) {
	var r report.Report
	var head struct {
		Variant string `yaml:"variant"`
		Version string `yaml:"version"`
	}
	if err := yaml.Unmarshal(raw, &head); err != nil {
		line, col, msg := yamlError(raw, err)
		r.Errorf(file, line, col, "", "%s", msg)
		return r, nil
	}
	want, _ := Variant(os)
	if head.Variant != want {
		r.Errorf(file, 1, 1, "variant", "snippet variant %q: a %s cluster takes Butane snippets of variant %q", head.Variant, os, want)
		return r, nil
	}
	_, vr, err := config.TranslateBytes(raw, common.TranslateBytesOptions{})
	FromButane(&r, file, vr)
	if err != nil && !r.HasErrors(false) {
		var ue common.ErrUnmarshal
		switch {
		case errors.As(err, &ue):
			line, msg := yamlErrorLine(errors.New(ue.Detail))
			r.Errorf(file, line, 0, "", "%s", msg)
		default:
			r.Errorf(file, 0, 0, "", "butane: %v", err)
		}
	}
	return r, nil
}

// FromButane adds the entries of a Butane or Ignition report to r, at file's lines.
func FromButane(r *report.Report, file string, vr vreport.Report) {
	for _, e := range vr.Entries {
		line, col := e.Marker.Start()
		p := report.Problem{File: file, Line: int(line), Col: int(col), Path: strings.TrimPrefix(e.Context.String(), "$."), Message: e.Message}
		switch e.Kind {
		case vreport.Error:
			p.Severity = report.Error
		case vreport.Warn:
			p.Severity = report.Warning
		default:
			continue
		}
		r.Add(p)
	}
}

// checkUnit reports the problems of a unit file, its name and its [X-Fleet] section among them,
// each at its line and column in the unit file. Only the first problem's message may quote
// the file's text (report.Print quotes no line of it either).
func checkUnit(file, name string, raw []byte) report.Report {
	var r report.Report
	if err := unit.ValidateName(name); err != nil {
		r.Errorf(file, 0, 0, "", "unit %s: %v", name, err)
		return r
	}
	_, err := unit.Parse(name, raw)
	var errs unit.Errors
	switch {
	case err == nil:
	case errors.As(err, &errs):
		for i, e := range errs {
			msg := e.Err.Error()
			// A detail may quote the unit's text. The file may be a link to anything (a
			// secret, /etc/shadow): at most one line of it is quoted, in the first problem;
			// the others give their kind and file:line:col.
			if e.Detail != "" && i == 0 {
				msg += ": " + e.Detail
			}
			r.Errorf(file, e.Line, e.Column, "", "unit %s: %s", name, msg)
		}
	default:
		r.Errorf(file, 0, 0, "", "unit %s: %v", name, err)
	}
	return r
}
