package iso

import (
	"bytes"
	"compress/gzip"
	"errors"
	"testing"

	"github.com/cavaliergopher/cpio"
)

// newc returns an uncompressed cpio archive of files (path, content pairs).
func newc(t testing.TB, files ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := cpio.NewWriter(&buf)
	for i := 0; i < len(files); i += 2 {
		w.WriteHeader(&cpio.Header{Name: files[i], Mode: cpio.TypeReg | 0o644, Size: int64(len(files[i+1]))})
		w.Write([]byte(files[i+1]))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gz(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

// TestParseInitrd reads the layouts the kernel accepts, with the last copy of a path winning.
func TestParseInitrd(t *testing.T) {
	var x Initrd
	x.Set("config.ign", []byte("from xz"))
	x.Set("etc/coreos-firstboot-network/a.nmconnection", []byte("net"))
	xzArchive, err := x.Archive()
	if err != nil {
		t.Fatal(err)
	}
	pad := func(b []byte, n int) []byte { return append(b, make([]byte, n)...) }
	tests := []struct {
		name string
		area []byte
		want map[string]string
		err  error
	}{
		{name: "zeros", area: make([]byte, 1024), want: map[string]string{}},
		{name: "xz padded", area: pad(xzArchive, 4096), want: map[string]string{"config.ign": "from xz", "etc/coreos-firstboot-network/a.nmconnection": "net"}},
		{name: "plain then gzip then xz", area: pad(append(append(pad(newc(t, "a", "1", "config.ign", "plain"), 4), gz(t, newc(t, "b", "2"))...), pad(xzArchive, 0)...), 100),
			want: map[string]string{"a": "1", "b": "2", "config.ign": "from xz", "etc/coreos-firstboot-network/a.nmconnection": "net"}},
		{name: "two cpios in one gzip", area: gz(t, append(newc(t, "config.ign", "first"), newc(t, "config.ign", "second")...)), want: map[string]string{"config.ign": "second"}},
		{name: "garbage", area: []byte("hello"), err: ErrBadInitrd},
		{name: "zstd", area: []byte{0x28, 0xb5, 0x2f, 0xfd, 0, 0}, err: ErrBadInitrd},
		{name: "truncated xz", area: xzArchive[:len(xzArchive)/2], err: ErrBadInitrd},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ird, err := ParseInitrd(tt.area)
			if !errors.Is(err, tt.err) || (err == nil) != (tt.err == nil) {
				t.Fatalf("error %v, want %v", err, tt.err)
			}
			if err != nil {
				return
			}
			got := map[string]string{}
			for _, n := range ird.Names() {
				b, _ := ird.Get(n)
				got[n] = string(b)
			}
			if len(got) != len(tt.want) {
				t.Errorf("files %v, want %v", got, tt.want)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
		})
	}
}

// TestArchiveRepeatable: the same files give the same bytes.
func TestArchiveRepeatable(t *testing.T) {
	var a, b Initrd
	a.Set("config.ign", []byte("{}"))
	a.Set("etc/x/y", []byte("1"))
	b.Set("etc/x/y", []byte("1"))
	b.Set("config.ign", []byte("{}"))
	x, _ := a.Archive()
	y, _ := b.Archive()
	if !bytes.Equal(x, y) || len(x) == 0 {
		t.Error("archives differ")
	}
}

func FuzzParseInitrd(f *testing.F) {
	var x Initrd
	x.Set("config.ign", []byte("{}"))
	a, _ := x.Archive()
	f.Add(a)
	f.Add(newc(f, "a", "b"))
	f.Add(gz(f, newc(f, "a", "b")))
	f.Fuzz(func(t *testing.T, b []byte) {
		ParseInitrd(b) // must not panic
	})
}
