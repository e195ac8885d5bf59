package render

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"

	butil "github.com/coreos/butane/base/util"
)

// dataURL must agree with Butane's own encoder byte for byte, or spliced configs would differ
// from translated ones.
func TestDataURLMatchesButane(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 3000)
	for i := range random {
		random[i] = byte(rng.IntN(256))
	}
	for _, tc := range []struct {
		name     string
		contents []byte
	}{
		{"empty", nil},
		{"short text", []byte("node1\n")},
		{"text with specials", []byte("a b%c\"d\n#e?f&g=h/\\i")},
		{"repetitive", []byte(strings.Repeat("ETCD_NAME=x\n", 200))},
		{"binary", random},
		{"pem", bytes.Repeat([]byte("MIIBszCCAVmgAwIBAgIQK3vYq0qfZ6lQn0q8o0vAaDAKBggqhkjOPQQDAjAkMQ0w\n"), 12)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, wantComp, err := butil.MakeDataURL(tc.contents, nil, true)
			if err != nil {
				t.Fatal(err)
			}
			got, gotComp, err := dataURL(tc.contents)
			if err != nil {
				t.Fatal(err)
			}
			if got != want || gotComp != *wantComp {
				t.Errorf("dataURL = %q (%q), Butane gives %q (%q)", got, gotComp, want, *wantComp)
			}
		})
	}
}
