package exitcode

import (
	"errors"
	"fmt"
	"testing"
)

func TestOf(t *testing.T) {
	errKnown := errors.New("known to be the user's")
	for _, tc := range []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, OK},
		{"marked", UserErr(errors.New("bad flag")), User},
		{"marked and wrapped", fmt.Errorf("kiln up: %w", UserErr(errors.New("bad flag"))), User},
		{"one of the user's", fmt.Errorf("render: %w", errKnown), User},
		{"anything else", errors.New("disk full"), Internal},
		{"marked nil", UserErr(nil), OK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Of(tc.err, errKnown); got != tc.want {
				t.Errorf("Of(%v) = %d, want %d", tc.err, got, tc.want)
			}
		})
	}
	if err := UserErr(errors.New("bad flag")); err.Error() != "bad flag" {
		t.Errorf("UserErr changed the text: %q", err)
	}
}
