package unit

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestValidateName(t *testing.T) {
	tests := []struct {
		name   string
		detail string // "" for a valid name
	}{
		{"foo.service", ""},
		{"my-app@.service", ""},
		{"my-app@1.service", ""},
		{"my-app@a@b.service", ""}, // an instance may hold '@'
		{"a:b_c.d-e\\x2d.socket", ""},
		{"x.timer", ""},
		{"x.path", ""},
		{"x@.target", ""},
		{"data.mount", ""},
		{"", "empty name"},
		{"foo", "no type suffix"},
		{"foo.", "ends in '.'"},
		{"foo.exe", `unknown unit type "exe"`},
		{"data@.mount", "a template or instance cannot be of type \"mount\""},
		{"data@1.swap", "cannot be of type"},
		{"@.service", "empty name"},
		{".service", "empty name"},
		{"foo bar.service", "invalid character ' '"},
		{"foo/bar.service", "invalid character '/'"},
		{"foo@a/b.service", "in the instance"},
		{strings.Repeat("a", 248) + ".service", "longer than 255"},
		{strings.Repeat("a", 247) + ".service", ""},
	}
	for _, tt := range tests {
		err := ValidateName(tt.name)
		if tt.detail == "" {
			if err != nil {
				t.Errorf("ValidateName(%q) = %v", shorten(tt.name), err)
			}
			continue
		}
		if !errors.Is(err, ErrName) || !strings.Contains(err.Error(), tt.detail) {
			t.Errorf("ValidateName(%q) = %v, want ErrName with %q", shorten(tt.name), err, tt.detail)
		}
	}
}

func TestParseName(t *testing.T) {
	tests := []struct {
		in                          string
		prefix, instance, typ, base string
		template, instanceOf        bool
		tmpl                        string
	}{
		{"foo.service", "foo", "", "service", "foo", false, false, ""},
		{"my-app@.service", "my-app", "", "service", "my-app@", true, false, "my-app@.service"},
		{"my-app@1.service", "my-app", "1", "service", "my-app@1", false, true, "my-app@.service"},
		{"a.b@c.d.socket", "a.b", "c.d", "socket", "a.b@c.d", false, true, "a.b@.socket"},
	}
	for _, tt := range tests {
		n, err := ParseName(tt.in)
		if err != nil {
			t.Fatalf("ParseName(%q): %v", tt.in, err)
		}
		if n.Prefix != tt.prefix || n.Instance != tt.instance || n.Type != tt.typ || n.Base() != tt.base ||
			n.IsTemplate() != tt.template || n.IsInstance() != tt.instanceOf || n.Template() != tt.tmpl {
			t.Errorf("ParseName(%q) = %+v (base %q, template %q)", tt.in, n, n.Base(), n.Template())
		}
	}
	if got, err := InstanceName("my-app@.service", "2"); err != nil || got != "my-app@2.service" {
		t.Errorf("InstanceName = %q, %v", got, err)
	}
	if _, err := InstanceName("foo.service", "2"); !errors.Is(err, ErrNotTemplate) {
		t.Errorf("InstanceName(foo.service) = %v", err)
	}
	if _, err := InstanceName("my-app@.service", ""); !errors.Is(err, ErrInstanceName) {
		t.Errorf("InstanceName(empty) = %v", err)
	}
}

func TestParseChecksTheName(t *testing.T) {
	_, err := Parse("bad name.service", []byte("[Unit]\n"))
	if !errors.Is(err, ErrName) {
		t.Fatalf("Parse with a bad name: %v", err)
	}
}

func TestState(t *testing.T) {
	for _, s := range []string{"inactive", "loaded", "launched"} {
		st, err := ParseState(s)
		if err != nil || string(st) != s || !st.Valid() {
			t.Errorf("ParseState(%q) = %q, %v", s, st, err)
		}
	}
	for _, s := range []string{"", "Launched", "running", "active"} {
		if _, err := ParseState(s); !errors.Is(err, ErrState) {
			t.Errorf("ParseState(%q) err = %v", s, err)
		}
	}
	if StateInactive.Scheduled() || !StateLoaded.Scheduled() || !StateLaunched.Scheduled() {
		t.Error("Scheduled: only loaded and launched need a machine")
	}
	var v struct{ S State }
	if err := json.Unmarshal([]byte(`{"S":"loaded"}`), &v); err != nil || v.S != StateLoaded {
		t.Errorf("json: %v %q", err, v.S)
	}
	if err := json.Unmarshal([]byte(`{"S":"bogus"}`), &v); !errors.Is(err, ErrState) {
		t.Errorf("json bogus: %v", err)
	}
	if _, err := json.Marshal(struct{ S State }{"bogus"}); err == nil {
		t.Error("json.Marshal of an invalid state succeeded")
	}
}

func TestSerialize(t *testing.T) {
	const text = `# my app
[Unit]
Description=My app \
   spanning lines
After=network.target

[Service]
ExecStartPre=-/bin/a
ExecStartPre=
ExecStart=/bin/app "quoted arg"
; comment

[Unit]
Wants=other.service

[X-Fleet]
Conflicts = my-app@*.service

[Service]
Odd=ends in a backslash\ 
`
	u := mustParse(t, "", text)
	const want = `[Unit]
Description=My app     spanning lines
After=network.target
Wants=other.service

[Service]
ExecStartPre=-/bin/a
ExecStartPre=
ExecStart=/bin/app "quoted arg"
Odd=ends in a backslash\ 

[X-Fleet]
Conflicts=my-app@*.service
`
	if got := u.String(); got != want {
		t.Fatalf("Serialize\n got:\n%s\nwant:\n%s", got, want)
	}
	again := mustParse(t, "", u.String())
	if !reflect.DeepEqual(optsOf(again), optsOf(canonicalOrder(u))) {
		t.Fatalf("re-parse differs:\n got %q\nwant %q", optsOf(again), optsOf(u))
	}
	if again.Hash() != u.Hash() {
		t.Error("hash changed by a round trip")
	}
}

// canonicalOrder gives the unit with its options grouped by section, as Serialize writes them.
func canonicalOrder(u *Unit) *Unit {
	var opts []Option
	for _, s := range u.Sections() {
		for _, o := range u.Options {
			if o.Section == s {
				opts = append(opts, o)
			}
		}
	}
	return &Unit{Options: opts}
}

func TestHash(t *testing.T) {
	a := mustParse(t, "", "[Unit]\nDescription=a\n\n[Service]\nExecStart=/bin/a\n")
	b := mustParse(t, "", "# same meaning\n[Unit]\n  Description = a\n[Service]\r\nExecStart=/bin/a \\\n")
	c := mustParse(t, "", "[Unit]\nDescription=b\n\n[Service]\nExecStart=/bin/a\n")
	if a.Hash() != b.Hash() {
		t.Errorf("same meaning, different hashes:\n%s\n%s", a, b)
	}
	if a.Hash() == c.Hash() {
		t.Error("different units share a hash")
	}
	h := a.Hash()
	if len(h.String()) != 64 || h.Short() != h.String()[:7] || h.IsZero() {
		t.Errorf("hash forms: %s %s", h, h.Short())
	}
	back, err := ParseHash(h.String())
	if err != nil || back != h {
		t.Errorf("ParseHash: %v %v", back, err)
	}
	if _, err := ParseHash("abc"); err == nil {
		t.Error("ParseHash(abc) succeeded")
	}
	js, _ := json.Marshal(h)
	var h2 Hash
	if err := json.Unmarshal(js, &h2); err != nil || h2 != h {
		t.Errorf("json round trip: %v", err)
	}
	// A known value, so that the canonical form cannot drift unnoticed: sha256 of the text
	// "[Unit]\nDescription=a\n\n[Service]\nExecStart=/bin/a\n".
	if got := a.Hash().String(); got != knownHash {
		t.Errorf("hash %s, want %s", got, knownHash)
	}
}

const knownHash = "2c4d5fb01040424fae89f90ce1a8836860f460df17bf29810ffa52dbadbf3fb7"

func TestTalkExample(t *testing.T) {
	const text = "[Unit]\nDescription=My app %i\n\n[Service]\nExecStart=/usr/bin/docker run --rm --name my-app-%i nginx\n\n[X-Fleet]\nConflicts=my-app@*.service\n"
	tmpl := mustParse(t, "my-app@.service", text)
	one, _ := tmpl.Instantiate("1")
	two, _ := tmpl.Instantiate("2")
	if !one.Fleet.ConflictsWith(two.Name) || !two.Fleet.ConflictsWith(one.Name) {
		t.Fatal("my-app@1 and my-app@2 do not conflict")
	}
}

func TestNormalize(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"no suffix", "foo", "foo.service"},
		{"instance without suffix", "my-app@1", "my-app@1.service"},
		{"service", "foo.service", "foo.service"},
		{"socket", "foo.socket", "foo.socket"},
		{"template", "my-app@.timer", "my-app@.timer"},
		{"dot that is no type", "foo.bar", "foo.bar.service"},
		{"empty", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Normalize(tc.in); got != tc.want {
				t.Fatalf("Normalize(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// A unit file larger than etcd could keep is refused with a clear error, not sent to etcd.
func TestCheckSize(t *testing.T) {
	raw := []byte("[Service]\nExecStart=/bin/true\n" + "# " + strings.Repeat("x", 3<<20) + "\n")
	err := CheckSize(raw)
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "at most 512 KiB") {
		t.Fatalf("3 MiB unit: %v", err)
	}
	if err := CheckSize(raw[:MaxSize]); err != nil {
		t.Fatalf("a unit at the limit: %v", err)
	}
}
