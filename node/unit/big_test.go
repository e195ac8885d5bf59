package unit

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// Pathological inputs are read whole and right: a line continued many times, many short lines,
// many empty sections, a huge unknown key and many bad lines, each problem at its own line.
// (BenchmarkParseLarge measures that they stay linear.)
func TestParseLargeInputs(t *testing.T) {
	const n = 20000
	for _, tc := range []struct {
		name  string
		text  string
		check func(t *testing.T, u *Unit, errs Errors)
	}{
		{"long continuation", "[Service]\nExecStart=/bin/a" + strings.Repeat(" \\\nx", 10*n) + "\n", func(t *testing.T, u *Unit, errs Errors) {
			// systemd turns each backslash-newline into a space and joins the next line.
			if len(errs) > 0 || len(u.Options) != 1 {
				t.Fatalf("errors %v, %d options", errs, len(u.Options))
			}
			if v := u.Options[0].Value; len(v) != len("/bin/a")+3*10*n || !strings.HasPrefix(v, "/bin/a  x  x") || !strings.HasSuffix(v, "  x") {
				t.Errorf("value of %d bytes: %q...%q", len(v), v[:20], v[len(v)-20:])
			}
		}},
		{"many lines", "[Service]\n" + strings.Repeat("Environment=A=1\n", n), func(t *testing.T, u *Unit, errs Errors) {
			if len(errs) > 0 || len(u.Options) != n {
				t.Fatalf("errors %v, %d options, want %d", errs, len(u.Options), n)
			}
			if last := u.Options[n-1]; last.Line != n+1 || last.Section != "Service" || last.Name != "Environment" || last.Value != "A=1" {
				t.Errorf("last option %+v", last)
			}
		}},
		{"many sections", strings.Repeat("[S]\n", 5*n) + "[Service]\nExecStart=/bin/true\n", func(t *testing.T, u *Unit, errs Errors) {
			if len(errs) > 0 || len(u.Options) != 1 || u.Options[0].Line != 5*n+2 {
				t.Fatalf("errors %v, options %+v", errs, u.Options)
			}
		}},
		{"huge unknown key", "[X-Fleet]\n" + strings.Repeat("K", 25*n) + "=1\n", func(t *testing.T, u *Unit, errs Errors) {
			if len(errs) != 1 || errs[0].Line != 2 || !errors.Is(errs[0], ErrUnknownKey) {
				t.Fatalf("errors %d, first %v", len(errs), first(errs))
			}
		}},
		{"many bad lines", "[X-Fleet]\n" + strings.Repeat("MachineMetdata=a\n", n), func(t *testing.T, u *Unit, errs Errors) {
			if len(errs) != n || errs[n-1].Line != n+1 || !strings.Contains(errs[0].Error(), "did you mean MachineMetadata?") {
				t.Fatalf("%d errors, want %d; first %v", len(errs), n, first(errs))
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := Parse("a.service", []byte(tc.text))
			var errs Errors
			if err != nil {
				if !errors.As(err, &errs) {
					t.Fatalf("error %T: %v", err, err)
				}
				u = &Unit{}
			}
			tc.check(t, u, errs)
		})
	}
}

func first(errs Errors) error {
	if len(errs) == 0 {
		return nil
	}
	return errs[0]
}

// BenchmarkParseLarge reads a unit of n lines: ns/op divided by n must stay flat as n grows.
func BenchmarkParseLarge(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		text := []byte("[Service]\n" + strings.Repeat("Environment=A=1\n", n))
		b.Run(fmt.Sprintf("%d-lines", n), func(b *testing.B) {
			for b.Loop() {
				if _, err := Parse("a.service", text); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
