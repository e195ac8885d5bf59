package pxe

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzAssetPath sends arbitrary paths under /assets/ and checks that nothing outside the assets
// folder is ever served: every 200 is the content of a file inside it, and the secret beside it
// (reachable through "..", encodings or symbolic links) never appears.
func FuzzAssetPath(f *testing.F) {
	for _, seed := range []string{
		"flatcar/stable/flatcar_production_pxe.vmlinuz", "../secret", "..%2fsecret", "%2e%2e/secret",
		"flatcar/../../secret", "link/secret", "inside", "flatcar%2fstable", "./inside", "//secret",
		"flatcar/stable/../../../secret", "%252e%252e/secret", "in\\..\\..\\secret", "loop/x",
	} {
		f.Add(seed)
	}
	fx := newFixture(f, specText("flatcar", "stable", testNodes))
	const secret = "secret-outside-the-assets"
	writeFile(f, filepath.Join(fx.dir, "secret"), secret)
	writeFile(f, filepath.Join(fx.assets, "flatcar/stable/flatcar_production_pxe.vmlinuz"), "kernel")
	writeFile(f, filepath.Join(fx.assets, "flatcar/stable/flatcar_production_pxe_image.cpio.gz"), "initrd")
	for link, target := range map[string]string{"link": fx.dir, "inside": "flatcar/stable/flatcar_production_pxe.vmlinuz", "loop": "loop"} {
		if err := os.Symlink(target, filepath.Join(fx.assets, link)); err != nil {
			f.Fatal(err)
		}
	}
	log, _ := newLogger()
	s, err := New(fx.config(log), nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })

	f.Fuzz(func(t *testing.T, p string) {
		if strings.ContainsAny(p, "\x00\r\n #?") {
			return // not a path a request line can carry as such
		}
		r, err := http.NewRequest("GET", "http://pxe.test/assets/"+p, nil)
		if err != nil {
			return
		}
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		body := w.Body.String()
		if strings.Contains(body, secret) {
			t.Fatalf("GET /assets/%s served the file outside the assets folder", p)
		}
		if w.Code == http.StatusOK && body != "kernel" && body != "initrd" {
			t.Fatalf("GET /assets/%s: 200 with %q", p, body)
		}
	})
}
