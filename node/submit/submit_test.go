package submit_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-cluster/kiln/internal/etcdtest"
	"github.com/kiln-cluster/kiln/node/keys"
	"github.com/kiln-cluster/kiln/node/submit"
	"github.com/kiln-cluster/kiln/node/unit"
)

const tmpl = "[Service]\nExecStart=/bin/app %i\n\n[X-Fleet]\nConflicts=app@*.service\n"

func write(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestReadDir(t *testing.T) {
	cases := []struct {
		name  string
		files map[string]string
		want  []string // name=state
		err   error
	}{
		{"no manifest", map[string]string{"app@.service": tmpl}, nil, nil},
		{"template with instances", map[string]string{"app@.service": tmpl, "units.json": `{"units": [{"name": "app@.service", "instances": 2}]}`},
			[]string{"app@.service=inactive", "app@1.service=launched", "app@2.service=launched"}, nil},
		{"plain unit loaded", map[string]string{"web.service": "[Service]\nExecStart=/bin/web\n", "units.json": `{"units": [{"name": "web.service", "state": "loaded"}]}`},
			[]string{"web.service=loaded"}, nil},
		{"instances of a plain unit", map[string]string{"web.service": "[Service]\nExecStart=/bin/web\n", "units.json": `{"units": [{"name": "web.service", "instances": 2}]}`},
			nil, submit.ErrManifest},
		{"bad state", map[string]string{"web.service": "[Service]\nExecStart=/bin/web\n", "units.json": `{"units": [{"name": "web.service", "state": "running"}]}`},
			nil, unit.ErrState},
		{"bad unit file", map[string]string{"web.service": "[X-Fleet]\nMachineMetdata=a=b\n", "units.json": `{"units": [{"name": "web.service"}]}`},
			nil, unit.ErrUnknownKey},
		{"a path, not a name", map[string]string{"units.json": `{"units": [{"name": "../web.service"}]}`}, nil, submit.ErrManifest},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, dir, tc.files)
			plan, digest, err := submit.ReadDir(dir)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range plan {
				got = append(got, p.Unit.Name+"="+string(p.State))
			}
			if strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			if len(plan) > 0 && digest == "" {
				t.Fatal("no digest")
			}
		})
	}
}

// TestIntegrationSubmit: submit, states, templates and destroy against a real etcd.
func TestIntegrationSubmit(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: real etcd")
	}
	c := etcdtest.Start(t)
	cli := c.Client(t)
	ctx := context.Background()

	res, err := submit.Submit(ctx, cli, []submit.File{{Name: "app@.service", Text: []byte(tmpl)}})
	if err != nil || !res[0].Changed {
		t.Fatalf("submit: %+v %v", res, err)
	}
	// the same file again: a no-op; other contents: refused
	if res, err := submit.Submit(ctx, cli, []submit.File{{Name: "app@.service", Text: []byte("# comment\n" + tmpl)}}); err != nil || res[0].Changed {
		t.Fatalf("same canonical text again: %+v %v", res, err)
	}
	if _, err := submit.Submit(ctx, cli, []submit.File{{Name: "app@.service", Text: []byte(tmpl + "Global=false\n")}}); !errors.Is(err, submit.ErrChanged) {
		t.Fatalf("other contents: %v", err)
	}
	// a bad file is reported with its line and nothing is written
	if _, err := submit.Submit(ctx, cli, []submit.File{{Name: "ok.service", Text: []byte("[Service]\nExecStart=/bin/ok\n")},
		{Name: "bad.service", Text: []byte("[X-Fleet]\nConflicts\n")}}); err == nil || !strings.Contains(err.Error(), "bad.service: 2:") {
		t.Fatalf("bad file: %v", err)
	}
	if rec, _, _ := submit.Get(ctx, cli, "ok.service"); rec != nil {
		t.Fatal("a valid file was written beside an invalid one")
	}
	// instances of the template, by name
	if _, err := submit.SetState(ctx, cli, []submit.File{{Name: "app@1.service"}, {Name: "app@2.service"}}, unit.StateLaunched); err != nil {
		t.Fatal(err)
	}
	rec, _, err := submit.Get(ctx, cli, "app@2.service")
	if err != nil || rec == nil || rec.DesiredState != unit.StateLaunched || rec.Hash != hashOf(t) {
		t.Fatalf("instance record %+v %v", rec, err)
	}
	// the template itself cannot run; an unknown unit is a user error
	if _, err := submit.SetState(ctx, cli, []submit.File{{Name: "app@.service"}}, unit.StateLaunched); !errors.Is(err, submit.ErrTemplateState) {
		t.Fatalf("start a template: %v", err)
	}
	if _, err := submit.SetState(ctx, cli, []submit.File{{Name: "nope.service"}}, unit.StateLaunched); !errors.Is(err, submit.ErrNotFound) || !submit.IsUserError(err) {
		t.Fatalf("start an unknown unit: %v", err)
	}
	// stop, then Ensure (first start) leaves the operator's choice alone
	if _, err := submit.SetState(ctx, cli, []submit.File{{Name: "app@1.service"}}, unit.StateLoaded); err != nil {
		t.Fatal(err)
	}
	u, _ := unit.Parse("app@1.service", []byte(tmpl))
	if r, err := submit.Ensure(ctx, cli, u, unit.StateLaunched); err != nil || r.Changed || r.State != unit.StateLoaded {
		t.Fatalf("ensure: %+v %v", r, err)
	}
	list, err := submit.List(ctx, cli)
	if err != nil || len(list) != 3 {
		t.Fatalf("list: %+v %v", list, err)
	}
	text, err := submit.FileText(ctx, cli, hashOf(t))
	if err != nil || !strings.Contains(string(text), "Conflicts=app@*.service") {
		t.Fatalf("file text %q %v", text, err)
	}
	// destroy
	if _, err := submit.Destroy(ctx, cli, []string{"app@1.service", "nope.service"}); !errors.Is(err, submit.ErrNotFound) {
		t.Fatalf("destroy an unknown unit: %v", err)
	}
	if rec, _, _ := submit.Get(ctx, cli, "app@1.service"); rec != nil {
		t.Fatal("app@1 still there")
	}
	if resp, err := cli.Get(ctx, keys.UnitFile(hashOf(t).String())); err != nil || len(resp.Kvs) != 1 {
		t.Fatal("the template's file went with an instance")
	}
}

func hashOf(t *testing.T) unit.Hash {
	u, err := unit.Parse("app@.service", []byte(tmpl))
	if err != nil {
		t.Fatal(err)
	}
	return u.Hash()
}

// TestReadDirExampleUnits reads the bundled example units with a manifest in the generator's
// shape (bootstrap/render writes state for every unit).
func TestReadDirExampleUnits(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"my-app@.service", "node-exporter.service"} {
		raw, err := os.ReadFile(filepath.Join("..", "..", "configs", "examples", "units", name))
		if err != nil {
			t.Fatal(err)
		}
		write(t, dir, map[string]string{name: string(raw)})
	}
	write(t, dir, map[string]string{"units.json": `{"units": [{"name": "my-app@.service", "instances": 2, "state": "launched"}, {"name": "node-exporter.service", "state": "launched"}]}`})
	plan, _, err := submit.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range plan {
		got = append(got, p.Unit.Name+"="+string(p.State))
	}
	want := "my-app@.service=inactive my-app@1.service=launched my-app@2.service=launched node-exporter.service=launched"
	if strings.Join(got, " ") != want {
		t.Fatalf("got %v, want %s", got, want)
	}
	if !plan[1].Unit.Fleet.ConflictsWith("my-app@2.service") {
		t.Fatal("the example's instances do not conflict")
	}
}

// A unit file too large for etcd is refused before anything is sent (no etcd at all here).
func TestParseRefusesTooLarge(t *testing.T) {
	text := []byte("[Service]\nExecStart=/bin/true\n# " + strings.Repeat("x", 3<<20) + "\n")
	_, err := submit.Parse(submit.File{Name: "big.service", Text: text})
	if !errors.Is(err, unit.ErrTooLarge) || !submit.IsUserError(err) {
		t.Fatalf("3 MiB unit: %v", err)
	}
}
