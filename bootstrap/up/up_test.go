package up

import (
	"bytes"
	"errors"
	"regexp"
	"strings"
	"testing"
)

func TestState(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadState(dir); !errors.Is(err, ErrNoState) {
		t.Fatalf("LoadState of an empty folder: %v, want ErrNoState", err)
	}
	want := &State{Cluster: "demo", Driver: "docker", Machines: []string{MachineName("demo", "node1")}}
	if err := SaveState(dir, want); err != nil {
		t.Fatal(err)
	}
	got, err := LoadState(dir)
	if err != nil || got.Driver != "docker" || got.Cluster != "demo" || got.Machines[0] != "kiln-demo-node1" {
		t.Fatalf("LoadState = %+v, %v", got, err)
	}
}

func TestProgress(t *testing.T) {
	for _, tc := range []struct {
		name string
		tty  bool
		want []string
	}{
		{name: "plain lines", want: []string{`^ *[0-9.]+s  cluster    network: kiln-demo$`, `^ *[0-9.]+s  node1      etcd: healthy$`,
			`^ *[0-9.]+s  node2      FAILED at ignition: boom$`, `^--- last lines of node2 ---$`, `^journal line$`}},
		{name: "table", tty: true, want: []string{`\x1b\[2Knode1 +etcd: healthy`, `\x1b\[2Knode2 +waiting`, `\x1b\[[0-9]+A`,
			`\x1b\[2Knode2 +FAILED at ignition: boom`, `^journal line$`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			p := NewProgress(&b, []string{"node1", "node2"}, tc.tty)
			p.Step("", StepNetwork, "kiln-demo")
			p.Step("node1", StepEtcd, "healthy")
			p.Failed("node2", StepIgnition, errors.New("boom"), "journal line\n")
			out := b.String()
			for _, w := range tc.want {
				if !regexp.MustCompile("(?m)" + w).MatchString(out) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if !tc.tty && strings.Contains(out, "\x1b") {
				t.Errorf("escape codes off a terminal:\n%q", out)
			}
		})
	}
}
