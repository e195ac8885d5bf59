package up

import (
	"bytes"
	"errors"
	"fmt"
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

// TestConfigError: a marked error is ErrConfig, keeps its text and its chain; nil stays nil.
func TestConfigError(t *testing.T) {
	base := errors.New("--x must be y")
	err := fmt.Errorf("node n1: %w", ConfigError(base))
	if !errors.Is(err, ErrConfig) || !errors.Is(err, base) || err.Error() != "node n1: --x must be y" {
		t.Errorf("%q: Is(ErrConfig) %v, Is(base) %v", err, errors.Is(err, ErrConfig), errors.Is(err, base))
	}
	if errors.Is(base, ErrConfig) || errors.Is(ErrNoState, ErrConfig) {
		t.Error("an unmarked error is ErrConfig")
	}
	if ConfigError(nil) != nil {
		t.Error("ConfigError(nil) is not nil")
	}
}

func TestProgress(t *testing.T) {
	for _, tc := range []struct {
		name    string
		tty     bool
		want    []string
		notWant string // the table keeps each node's furthest step
	}{
		{name: "plain lines", want: []string{`^ *[0-9.]+s  cluster    network: kiln-demo$`, `^ *[0-9.]+s  node1      etcd: healthy$`,
			`^ *[0-9.]+s  node2      FAILED at ignition: boom$`, `^--- last lines of node2 ---$`, `^journal line$`}},
		{name: "table", tty: true, notWant: `node1 +etcd`, want: []string{`\x1b\[2Knode1 +registered: machine 1`, `\x1b\[2Knode2 +waiting`, `\x1b\[[0-9]+A`,
			`\x1b\[2Knode2 +FAILED at ignition: boom`, `^journal line$`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			p := NewProgress(&b, []string{"node1", "node2"}, tc.tty)
			p.Step("", StepNetwork, "kiln-demo")
			p.Step("node1", StepRegistered, "machine 1")
			p.Step("node1", StepEtcd, "healthy")
			p.Failed("node2", StepIgnition, errors.New("boom"), "journal line\n")
			out := b.String()
			for _, w := range tc.want {
				if !regexp.MustCompile("(?m)" + w).MatchString(out) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if tc.notWant != "" && regexp.MustCompile(tc.notWant).MatchString(out) {
				t.Errorf("output has %q:\n%s", tc.notWant, out)
			}
			if !tc.tty && strings.Contains(out, "\x1b") {
				t.Errorf("escape codes off a terminal:\n%q", out)
			}
		})
	}
}
