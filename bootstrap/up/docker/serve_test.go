package docker

import (
	"errors"
	"strings"
	"testing"

	"github.com/kiln-cluster/kiln/bootstrap/up"
	"github.com/kiln-cluster/kiln/images/nodeimage"
)

func TestServeList(t *testing.T) {
	const sum = "abc"
	file := func(path, src, hash string) string {
		v := `{}`
		if hash != "" {
			v = `{"hash":"` + hash + `"}`
		}
		return `{"storage":{"files":[{"path":"` + path + `","contents":{"source":"` + src + `","verification":` + v + `}}]}}`
	}
	for _, tc := range []struct {
		name, ign, want string
		err             error
	}{
		{name: "inline only", ign: file("/etc/x", "data:,x", ""), want: ""},
		{name: "kiln-node by hash", ign: file("/opt/bin/kiln-node", "http://10.0.0.1:8080/kiln-node", "sha512-abc"),
			want: "http://10.0.0.1:8080/kiln-node " + nodeimage.KilnNodePath + "\n"},
		{name: "kiln-node without hash", ign: file("/opt/bin/kiln-node", "http://10.0.0.1/k", ""), want: "http://10.0.0.1/k " + nodeimage.KilnNodePath + "\n"},
		{name: "other hash", ign: file("/opt/bin/kiln-node", "http://10.0.0.1/k", "sha512-other"), err: ErrRemoteSource},
		{name: "other file", ign: file("/opt/bin/tool", "http://example.com/tool", ""), err: ErrRemoteSource},
		{name: "https", ign: file("/opt/bin/kiln-node", "https://10.0.0.1/k", "sha512-abc"), err: ErrRemoteSource},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := serveList([]byte(tc.ign), sum)
			if !errors.Is(err, tc.err) || got != tc.want {
				t.Fatalf("serveList = %q, %v; want %q, %v", got, err, tc.want, tc.err)
			}
			if err != nil && !strings.Contains(err.Error(), "/opt/bin/") {
				t.Errorf("error does not name the file: %v", err)
			}
			if err != nil && !errors.Is(err, up.ErrConfig) {
				t.Errorf("a remote source is not the user's error (up.ErrConfig): %v", err)
			}
		})
	}
}
