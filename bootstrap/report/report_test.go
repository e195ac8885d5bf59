package report

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPrintCapsProblems(t *testing.T) {
	var r Report
	for i := range MaxPrinted + 25 {
		r.Errorf("spec.yaml", i+1, 1, "", "problem %d", i)
	}
	r.Warnf("spec.yaml", 1, 1, "", "a warning")
	var out bytes.Buffer
	r.Print(&out, false)
	s := out.String()
	if n := strings.Count(s, "error: problem "); n != MaxPrinted {
		t.Errorf("%d problems printed, want %d", n, MaxPrinted)
	}
	for _, want := range []string{"... and 26 more problems\n", "75 error(s), 1 warning(s)\n"} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
}

func TestPrintQuotesOnlyQuotableFiles(t *testing.T) {
	dir := t.TempDir()
	spec := filepath.Join(dir, "spec.yaml")
	other := filepath.Join(dir, "unit.service")
	os.WriteFile(spec, []byte("line one\nline two\n"), 0o644)
	os.WriteFile(other, []byte("secret one\nsecret two\n"), 0o644)
	var r, sub Report
	sub.Quote(spec)
	sub.Errorf(spec, 2, 3, "", "in the spec")
	r.Merge(sub)
	r.Errorf(other, 1, 1, "", "in the unit")
	var out bytes.Buffer
	r.Print(&out, false)
	s := out.String()
	if !strings.Contains(s, "2 | line two\n  |   ^\n") {
		t.Errorf("the spec's line is not quoted:\n%s", s)
	}
	if strings.Contains(s, "secret") || !strings.Contains(s, other+":1:1") {
		t.Errorf("the unit file is quoted or not named:\n%s", s)
	}
}

func TestPrintCutsLongMessages(t *testing.T) {
	var r Report
	r.Errorf("spec.yaml", 0, 0, "", "value %q is wrong", strings.Repeat("x", 50000))
	var out bytes.Buffer
	r.Print(&out, false)
	if out.Len() > 2*maxMessage {
		t.Errorf("printed %d bytes for one problem", out.Len())
	}
}
