package unit

import (
	"errors"
	"reflect"
	"testing"
)

// FuzzParse checks that Parse never panics, that every problem has a line, and that a unit
// that parses survives Serialize and Parse with the same options, [X-Fleet] and hash.
func FuzzParse(f *testing.F) {
	seeds := []struct{ name, text string }{
		{"my-app@.service", "[Unit]\nDescription=My app %i\n\n[Service]\nExecStart=/usr/bin/app %i\n\n[X-Fleet]\nConflicts=my-app@*.service\n"},
		{"my-app@1.service", "[X-Fleet]\nMachineMetadata=\"region=east\" \"disk=ssd\"\nMachineMetadata=region=west\n"},
		{"g.service", "[X-Fleet]\nGlobal=true\nMachineMetadata=!role=db\nConflicts=a* b?\n"},
		{"a.service", "[X-Fleet]\nMachineOf=%p.socket\nReplaces=old.service\n"},
		{"", "[Service]\nExecStart=/bin/a \\\n# c\n  b \\\n\n"},
		{"", "\uFEFF[Unit]\r\nA=b\rC = d \\\\\n"},
		{"", "[X-Fleet]\nMachineMetdata=x\n[ bad ]\nnoequals\n=v\n"},
		{"", "[Unit]\nK=v\\ \n"},
		{"x.service", "[X-Fleet]\nConflicts=\"unterminated\n"},
		{"", "[Unit]\nA=\xff\x00\n"},
		{"", ""},
	}
	for _, s := range seeds {
		f.Add(s.name, []byte(s.text))
	}
	f.Fuzz(func(t *testing.T, name string, raw []byte) {
		u, err := Parse(name, raw)
		if err != nil {
			var list Errors
			if !errors.As(err, &list) || len(list) == 0 {
				t.Fatalf("error %T %v is not a non-empty Errors", err, err)
			}
			for _, e := range list {
				if e.Err == nil {
					t.Fatalf("problem without a sentinel: %+v", e)
				}
				if e.Line < 1 && !errors.Is(e, ErrName) {
					t.Fatalf("problem without a line: %v", e)
				}
			}
			return
		}
		text := u.Bytes()
		again, err := Parse(name, text)
		if err != nil {
			t.Fatalf("canonical text does not parse: %v\n%q\nfrom %q", err, text, raw)
		}
		if !reflect.DeepEqual(optsOf(again), optsOf(canonicalOrder(u))) {
			t.Fatalf("round trip changed the options:\n got %q\nwant %q", optsOf(again), optsOf(canonicalOrder(u)))
		}
		if !reflect.DeepEqual(again.Fleet, u.Fleet) {
			t.Fatalf("round trip changed [X-Fleet]: %+v vs %+v", again.Fleet, u.Fleet)
		}
		if again.Hash() != u.Hash() {
			t.Fatal("round trip changed the hash")
		}
	})
}
