package iso

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

const (
	fix2020  = "embed-areas-2020-09.iso"
	fix2021  = "embed-areas-2021-09.iso"
	fixS390x = "embed-areas-2023-03.s390x.iso"
	fix2023  = "embed-areas-2023-07.x86_64.iso"

	kargs2021 = "mitigations=auto,nosmt coreos.liveiso=fedora-coreos-34.20210921.dev.0 ignition.firstboot ignition.platform.id=metal"
	kargs2023 = "mitigations=auto,nosmt coreos.liveiso=fedora-coreos-38.20230718.dev.0 ignition.firstboot ignition.platform.id=metal"
)

var allFixtures = []string{fix2020, fix2021, fixS390x, fix2023}

// smallConfig is a valid Ignition config with a file, so that show can be told from a default.
var smallConfig = []byte(`{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/hostname","mode":420,"contents":{"source":"data:,node1"}}]}}`)

// TestEmbedAreas checks where kiln finds the areas against known values: the first from
// coreos-installer's own unit test, the others from xorriso's report of the files' extents.
func TestEmbedAreas(t *testing.T) {
	tests := []struct {
		name           string
		fixture        string
		offset, length int64
		kargs          string
		kargOffsets    []int64
	}{
		{name: "2020 ignition.img, no kargs", fixture: fix2020, offset: 92160, length: 262144},
		{name: "2021 kargs.json and legacy header", fixture: fix2021, offset: 102400, length: 262144, kargs: kargs2021, kargOffsets: []int64{98126, 371658}},
		{name: "2023 s390x igninfo.json offset in cdboot.img", fixture: fixS390x, offset: 35*2048 + 132096, length: 262144},
		{name: "2023 igninfo.json", fixture: fix2023, offset: 139264, length: 262144, kargs: kargs2023, kargOffsets: []int64{137037, 408522}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			im, err := Open(fixture(t, tt.fixture))
			if err != nil {
				t.Fatal(err)
			}
			defer im.Close()
			if off, n := im.Area(); off != tt.offset || n != tt.length {
				t.Errorf("area %d+%d, want %d+%d", off, n, tt.offset, tt.length)
			}
			if _, err := im.Ignition(); !errors.Is(err, ErrNoConfig) {
				t.Errorf("pristine image: Ignition() error %v, want ErrNoConfig", err)
			}
			k, err := im.Kargs()
			if tt.kargs == "" {
				if !errors.Is(err, ErrNoKargs) {
					t.Errorf("kargs %q, %v; want ErrNoKargs", k, err)
				}
				return
			}
			d, _ := im.DefaultKargs()
			if err != nil || k != tt.kargs || d != tt.kargs {
				t.Errorf("kargs %q default %q (%v), want %q", k, d, err, tt.kargs)
			}
			var offs []int64
			for _, r := range im.kargs.regions {
				offs = append(offs, r.offset)
			}
			if fmt.Sprint(offs) != fmt.Sprint(tt.kargOffsets) || im.kargs.size != 1139 {
				t.Errorf("karg areas at %v size %d, want %v size 1139", offs, im.kargs.size, tt.kargOffsets)
			}
		})
	}
}

// TestLegacyKargsHeader reads the 2021 image with kargs.json made unreadable, so that only the
// system-area header is left, as coreos-installer's test does.
func TestLegacyKargsHeader(t *testing.T) {
	p := fixture(t, fix2021)
	b := readFile(t, p)
	i := bytes.Index(b, []byte("KARGS.JSO;1"))
	if i < 0 {
		t.Fatal("no KARGS.JSON entry in the fixture")
	}
	b[i] = 'Z'
	// The Rock Ridge name too, so that neither name resolves.
	if j := bytes.Index(b, []byte("kargs.json")); j >= 0 {
		b[j] = 'z'
	}
	os.WriteFile(p, b, 0o644)
	im, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	if k, err := im.Kargs(); err != nil || k != kargs2021 {
		t.Errorf("kargs %q (%v), want %q from the legacy header", k, err, kargs2021)
	}
}

// TestEmbedShowRemove embeds, shows and removes a config on every fixture, in place and to -o:
// remove gives back the original bytes.
func TestEmbedShowRemove(t *testing.T) {
	for _, name := range allFixtures {
		t.Run(name, func(t *testing.T) {
			p := fixture(t, name)
			orig := readFile(t, p)
			if err := Embed(p, smallConfig, Options{}); err != nil {
				t.Fatal(err)
			}
			embedded := readFile(t, p)
			if bytes.Equal(embedded, orig) || len(embedded) != len(orig) {
				t.Fatalf("embed changed nothing or the size (%d -> %d)", len(orig), len(embedded))
			}
			got, err := Show(p)
			if err != nil || !bytes.Equal(got, smallConfig) {
				t.Fatalf("show: %q (%v), want %q", got, err, smallConfig)
			}
			// Only the embed area changed.
			im, _ := Open(p)
			off, n := im.Area()
			im.Close()
			if !bytes.Equal(embedded[:off], orig[:off]) || !bytes.Equal(embedded[off+n:], orig[off+n:]) {
				t.Error("embed wrote outside the embed area")
			}
			// Remove to another file: the input stays, the output is the original.
			out := filepath.Join(t.TempDir(), "clean.iso")
			if err := Remove(p, Options{Output: out}); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(readFile(t, p), embedded) {
				t.Error("remove -o changed its input")
			}
			if !bytes.Equal(readFile(t, out), orig) {
				t.Error("remove -o did not give back the original image")
			}
			if st, _ := os.Stat(out); st.Mode().Perm() != 0o600 {
				t.Errorf("output mode %v, want 0600", st.Mode().Perm())
			}
			// Remove in place, keeping the file's mode.
			os.Chmod(p, 0o640)
			if err := Remove(p, Options{}); err != nil {
				t.Fatal(err)
			}
			if st, _ := os.Stat(p); st.Mode().Perm() != 0o640 {
				t.Errorf("in-place mode %v, want 0640 kept", st.Mode().Perm())
			}
			if !bytes.Equal(readFile(t, p), orig) {
				t.Error("remove did not give back the original image")
			}
			if _, err := Show(p); !errors.Is(err, ErrNoConfig) {
				t.Errorf("show after remove: %v, want ErrNoConfig", err)
			}
		})
	}
}

// TestEmbedToOutputAndStdout leaves the input alone and gives the same bytes either way.
func TestEmbedToOutputAndStdout(t *testing.T) {
	p := fixture(t, fix2023)
	orig := readFile(t, p)
	out := filepath.Join(t.TempDir(), "node1.iso")
	if err := Embed(p, smallConfig, Options{Output: out}); err != nil {
		t.Fatal(err)
	}
	var stdout bytes.Buffer
	if err := Embed(p, smallConfig, Options{Output: "-", Stdout: &stdout}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readFile(t, p), orig) {
		t.Error("embed -o changed its input")
	}
	if !bytes.Equal(stdout.Bytes(), readFile(t, out)) {
		t.Error("embed -o - and embed -o OUT differ")
	}
	if got, err := Show(out); err != nil || !bytes.Equal(got, smallConfig) {
		t.Errorf("show: %q (%v)", got, err)
	}
}

func TestEmbedRefusals(t *testing.T) {
	big := make([]byte, 400<<10) // incompressible: bigger than the 256 KiB area once compressed
	rand.Read(big)
	bigConfig := fmt.Appendf(nil, `{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/big","contents":{"source":"data:;base64,%s"}}]}}`, base64.StdEncoding.EncodeToString(big))
	other := []byte(`{"ignition":{"version":"3.4.0"}}`)

	tests := []struct {
		name    string
		prepare []byte // a config embedded first
		config  []byte
		force   bool
		want    error
		show    []byte // what show gives afterwards
	}{
		{name: "too large", config: bigConfig, want: ErrTooLarge},
		{name: "not json", config: []byte("{"), want: ErrInvalidConfig},
		{name: "not ignition", config: []byte(`{"hello":"world"}`), want: ErrInvalidConfig},
		{name: "empty", config: nil, want: ErrInvalidConfig},
		{name: "existing without force", prepare: smallConfig, config: other, want: ErrConfigExists, show: smallConfig},
		{name: "existing with force", prepare: smallConfig, config: other, force: true, show: other},
		{name: "too large keeps the existing", prepare: smallConfig, config: bigConfig, force: true, want: ErrTooLarge, show: smallConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := fixture(t, fix2021)
			if tt.prepare != nil {
				if err := Embed(p, tt.prepare, Options{}); err != nil {
					t.Fatal(err)
				}
			}
			before := readFile(t, p)
			out := filepath.Join(t.TempDir(), "out.iso")
			err := Embed(p, tt.config, Options{Force: tt.force, Output: out})
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
			if tt.want != nil {
				if _, serr := os.Stat(out); !os.IsNotExist(serr) {
					t.Error("a refused embed left an output file")
				}
				if !bytes.Equal(readFile(t, p), before) {
					t.Error("a refused embed changed the input")
				}
				if entries, _ := os.ReadDir(filepath.Dir(out)); len(entries) != 0 {
					t.Errorf("temporary files left: %v", entries)
				}
				out = p
			}
			got, err := Show(out)
			switch {
			case tt.show == nil && !errors.Is(err, ErrNoConfig):
				t.Errorf("show: %q (%v), want no config", got, err)
			case tt.show != nil && !bytes.Equal(got, tt.show):
				t.Errorf("show: %q (%v), want %q", got, err, tt.show)
			}
		})
	}
}

func TestNotLiveISO(t *testing.T) {
	dir := t.TempDir()
	zeros := filepath.Join(dir, "zeros.iso")
	os.WriteFile(zeros, make([]byte, 64<<10), 0o644)
	if _, err := Show(zeros); !errors.Is(err, ErrNotLiveISO) {
		t.Errorf("zero file: %v, want ErrNotLiveISO", err)
	}
	// A fixture whose ignition.img is renamed (both names) has no area.
	p := fixture(t, fix2021)
	b := readFile(t, p)
	for _, name := range []string{"IGNITION.IMG;1", "ignition.img"} {
		i := bytes.Index(b, []byte(name))
		if i < 0 {
			t.Fatalf("no %s in the fixture", name)
		}
		b[i+1] = 'Z'
	}
	os.WriteFile(p, b, 0o644)
	if err := Embed(p, smallConfig, Options{}); !errors.Is(err, ErrNotLiveISO) {
		t.Errorf("renamed area: %v, want ErrNotLiveISO", err)
	}
	if _, err := Show(filepath.Join(dir, "missing.iso")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

// TestEmbedKeepsOtherFiles keeps network settings that coreos-installer may have put in the area.
func TestEmbedKeepsOtherFiles(t *testing.T) {
	p := fixture(t, fix2023)
	im, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	const nm = "etc/coreos-firstboot-network/eth0.nmconnection"
	im.Initrd().Set(nm, []byte("[connection]\nid=eth0\n"))
	if err := im.SetIgnition(smallConfig, false); err != nil {
		t.Fatal(err)
	}
	if err := im.Save(""); err != nil {
		t.Fatal(err)
	}
	im.Close()
	if err := Remove(p, Options{}); err != nil {
		t.Fatal(err)
	}
	im, err = Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	if got, ok := im.Initrd().Get(nm); !ok || string(got) != "[connection]\nid=eth0\n" {
		t.Errorf("network settings lost: %q", got)
	}
	if _, err := im.Ignition(); !errors.Is(err, ErrNoConfig) {
		t.Errorf("config still there: %v", err)
	}
}

// TestKargsRoundTrip modifies, shows and resets the kernel arguments of the fixtures that have
// them; reset gives back the original bytes.
func TestKargsRoundTrip(t *testing.T) {
	for _, tt := range []struct{ fixture, def string }{{fix2021, kargs2021}, {fix2023, kargs2023}} {
		t.Run(tt.fixture, func(t *testing.T) {
			p := fixture(t, tt.fixture)
			orig := readFile(t, p)
			edit := KargsEdit{
				Append:  []string{"console=ttyS0,115200n8", "kiln.test=1"},
				Delete:  []string{"ignition.firstboot"},
				Replace: []string{"mitigations=auto,nosmt=off"},
			}
			got, err := ModifyKargs(p, edit, Options{})
			if err != nil {
				t.Fatal(err)
			}
			want := "mitigations=off " + tt.def[len("mitigations=auto,nosmt "):len(tt.def)-len(" ignition.firstboot ignition.platform.id=metal")] + " ignition.platform.id=metal console=ttyS0,115200n8 kiln.test=1"
			if got != want {
				t.Errorf("modify gave %q, want %q", got, want)
			}
			if shown, err := ShowKargs(p, false); err != nil || shown != want {
				t.Errorf("show %q (%v), want %q", shown, err, want)
			}
			if def, err := ShowKargs(p, true); err != nil || def != tt.def {
				t.Errorf("show --default %q (%v), want %q", def, err, tt.def)
			}
			// Every area holds the new arguments, in the boot loaders' files.
			b := readFile(t, p)
			if n := bytes.Count(b, []byte(want+"\n#")); n != 2 {
				t.Errorf("new arguments found in %d areas, want 2", n)
			}
			if _, err := ModifyKargs(p, KargsEdit{Reset: true}, Options{}); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(readFile(t, p), orig) {
				t.Error("reset did not give back the original image")
			}
			// Too long.
			long := KargsEdit{Append: []string{string(bytes.Repeat([]byte("x"), 1200))}}
			if _, err := ModifyKargs(p, long, Options{}); !errors.Is(err, ErrKargsTooLarge) {
				t.Errorf("too long: %v, want ErrKargsTooLarge", err)
			}
			if !bytes.Equal(readFile(t, p), orig) {
				t.Error("a refused change altered the image")
			}
		})
	}
	p := fixture(t, fix2020)
	if _, err := ShowKargs(p, false); !errors.Is(err, ErrNoKargs) {
		t.Errorf("2020 image: %v, want ErrNoKargs", err)
	}
}

// TestKargsMismatch refuses areas that disagree, as coreos-installer does.
func TestKargsMismatch(t *testing.T) {
	p := fixture(t, fix2023)
	b := readFile(t, p)
	b[137037] = 'M' // first letter of the first area
	os.WriteFile(p, b, 0o644)
	if _, err := ShowKargs(p, false); !errors.Is(err, ErrKargsMismatch) {
		t.Errorf("%v, want ErrKargsMismatch", err)
	}
}

func TestKargsEdit(t *testing.T) {
	tests := []struct {
		name, cur, def string
		edit           KargsEdit
		want           string
		err            error
	}{
		{name: "delete whole arguments only", cur: "foo bar foobar", edit: KargsEdit{Delete: []string{"foo"}}, want: "bar foobar"},
		{name: "delete a run", cur: "foo bar foobar", edit: KargsEdit{Delete: []string{"foo bar"}}, want: "foobar"},
		{name: "delete with spaces", cur: "foo=val bar baz=val", edit: KargsEdit{Delete: []string{"  foo=val "}}, want: "bar baz=val"},
		{name: "delete every occurrence", cur: "a b a c", edit: KargsEdit{Delete: []string{"a"}}, want: "b c"},
		{name: "append", cur: "a", edit: KargsEdit{Append: []string{"b c", "d"}}, want: "a b c d"},
		{name: "replace", cur: "console=tty0 console=ttyS0 x", edit: KargsEdit{Replace: []string{"console=ttyS0=ttyS1"}}, want: "console=tty0 console=ttyS1 x"},
		{name: "bad replace", cur: "a", edit: KargsEdit{Replace: []string{"console=ttyS0"}}, err: ErrBadReplace},
		{name: "reset then append", cur: "x y", def: "a b", edit: KargsEdit{Reset: true, Append: []string{"c"}}, want: "a b c"},
		{name: "order: delete before append", cur: "a", edit: KargsEdit{Append: []string{"a"}, Delete: []string{"a"}}, want: "a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.edit.Apply(tt.cur, tt.def)
			if !errors.Is(err, tt.err) || got != tt.want {
				t.Errorf("got %q, %v; want %q, %v", got, err, tt.want, tt.err)
			}
		})
	}
}
