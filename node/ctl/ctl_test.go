package ctl

import (
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kiln-cluster/kiln/node/ctl/clusterctx"
)

func TestResolveOrder(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", dir)
	current := &clusterctx.Context{Name: "cur", Endpoints: []string{"https://ctx:2379"}, CA: "/ctx/ca", Cert: "/ctx/cert", Key: "/ctx/key"}
	if _, err := clusterctx.WriteCurrentContext(current); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other.yaml")
	if err := clusterctx.SaveContext(other, &clusterctx.Context{Name: "other", Endpoints: []string{"https://other:2379"}, CA: "/o/ca", Cert: "/o/cert", Key: "/o/key"}); err != nil {
		t.Fatal(err)
	}
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	cases := []struct {
		name  string
		flags Target
		env   map[string]string
		want  clusterctx.Context
	}{
		{"current context", Target{}, nil, *current},
		{"flags win", Target{Endpoints: []string{"https://flag:2379"}, CA: "/f/ca"}, map[string]string{EnvEndpoints: "https://env:2379", EnvCA: "/e/ca", EnvKey: "/e/key"},
			clusterctx.Context{Name: "cur", Endpoints: []string{"https://flag:2379"}, CA: "/f/ca", Cert: "/ctx/cert", Key: "/e/key"}},
		{"environment complete: no context read", Target{ContextPath: "/does/not/exist"}, map[string]string{EnvEndpoints: "https://a:2379, https://b:2379", EnvCA: "/e/ca", EnvCert: "/e/cert", EnvKey: "/e/key"},
			clusterctx.Context{Endpoints: []string{"https://a:2379", "https://b:2379"}, CA: "/e/ca", Cert: "/e/cert", Key: "/e/key"}},
		{"KILN_CONTEXT", Target{}, map[string]string{EnvContext: other}, clusterctx.Context{Name: "other", Endpoints: []string{"https://other:2379"}, CA: "/o/ca", Cert: "/o/cert", Key: "/o/key"}},
		{"--context over KILN_CONTEXT", Target{ContextPath: other}, map[string]string{EnvContext: "/nope"}, clusterctx.Context{Name: "other", Endpoints: []string{"https://other:2379"}, CA: "/o/ca", Cert: "/o/cert", Key: "/o/key"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Resolve(tc.flags, env(tc.env))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, tc.want) {
				t.Fatalf("got %+v, want %+v", *got, tc.want)
			}
		})
	}
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	if _, err := Resolve(Target{}, env(nil)); err != clusterctx.ErrNoContext {
		t.Fatalf("no context: %v", err)
	}
	flags := Target{Endpoints: []string{"https://a:2379"}, CA: "/f/ca", Cert: "/f/cert"}
	if _, err := Resolve(flags, env(nil)); !errors.Is(err, clusterctx.ErrIncomplete) || !strings.Contains(err.Error(), "--etcd-key not given") {
		t.Fatalf("no context, --etcd-key missing: %v", err)
	}
}
