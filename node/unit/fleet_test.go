package unit

import (
	"errors"
	"reflect"
	"testing"
)

func fleetOf(t *testing.T, name, xfleet string) Fleet {
	t.Helper()
	return mustParse(t, name, "[Service]\nExecStart=/bin/true\n\n[X-Fleet]\n"+xfleet).Fleet
}

func TestFleetOptions(t *testing.T) {
	tests := []struct {
		name   string
		unit   string
		xfleet string
		want   Fleet
	}{
		{"none", "a.service", "", Fleet{}},
		{"MachineID", "a.service", "MachineID=0123456789abcdef0123456789abcdef\n",
			Fleet{MachineID: "0123456789abcdef0123456789abcdef"}},
		{"MachineID repeated with the same value", "a.service", "MachineID=m1\nMachineID=m1\n", Fleet{MachineID: "m1"}},
		{"MachineID reset", "a.service", "MachineID=m1\nMachineID=\n", Fleet{}},
		{"MachineOf", "a.service", "MachineOf=b.service\nMachineOf=c.socket\n",
			Fleet{MachineOf: []string{"b.service", "c.socket"}}},
		{"MachineOf duplicates dropped", "a.service", "MachineOf=b.service\nMachineOf=b.service\n",
			Fleet{MachineOf: []string{"b.service"}}},
		{"MachineMetadata one pair", "a.service", "MachineMetadata=region=east\n",
			Fleet{Metadata: Metadata{{Key: "region", Value: "east"}}}},
		{"MachineMetadata unquoted value with a blank (fleet reads one pair)", "a.service", "MachineMetadata=room=lab 3\n",
			Fleet{Metadata: Metadata{{Key: "room", Value: "lab 3"}}}},
		{"MachineMetadata quoted pairs on one line", "a.service", `MachineMetadata="region=us-east-1" "diskType=SSD"` + "\n",
			Fleet{Metadata: Metadata{{Key: "diskType", Value: "SSD"}, {Key: "region", Value: "us-east-1"}}}},
		{"MachineMetadata quoted value with a blank", "a.service", `MachineMetadata="room=lab 3" 'rack=r 1'` + "\n",
			Fleet{Metadata: Metadata{{Key: "rack", Value: "r 1"}, {Key: "room", Value: "lab 3"}}}},
		{"MachineMetadata same key twice, sorted and deduplicated", "a.service",
			"MachineMetadata=region=west\nMachineMetadata=region=east\nMachineMetadata=region=west\n",
			Fleet{Metadata: Metadata{{Key: "region", Value: "east"}, {Key: "region", Value: "west"}}}},
		{"MachineMetadata negation", "a.service", "MachineMetadata=!region=east\n",
			Fleet{Metadata: Metadata{{Key: "region", Op: OpNotEqual, Value: "east"}}}},
		{"MachineMetadata key!=value", "a.service", "MachineMetadata=region!=east\n",
			Fleet{Metadata: Metadata{{Key: "region", Op: OpNotEqual, Value: "east"}}}},
		{"MachineMetadata comparisons", "a.service", `MachineMetadata="memory>=16" "memory<64" "cores>2" "load<=0.5"` + "\n",
			Fleet{Metadata: Metadata{{Key: "cores", Op: OpGreater, Value: "2"}, {Key: "load", Op: OpLessEqual, Value: "0.5"},
				{Key: "memory", Op: OpLess, Value: "64"}, {Key: "memory", Op: OpGreaterEqual, Value: "16"}}}},
		{"MachineMetadata reset", "a.service", "MachineMetadata=region=east\nMachineMetadata=\nMachineMetadata=disk=ssd\n",
			Fleet{Metadata: Metadata{{Key: "disk", Value: "ssd"}}}},
		{"Conflicts repeatable and whitespace-separated", "a.service", "Conflicts=b*.service c.service\nConflicts=d?.service\n",
			Fleet{Conflicts: []string{"b*.service", "c.service", "d?.service"}}},
		{"Conflicts reset", "a.service", "Conflicts=b.service\nConflicts=\n", Fleet{}},
		{"Conflicts escaped star stays escaped", "a.service", `Conflicts=b\*.service` + "\n", Fleet{Conflicts: []string{`b\*.service`}}},
		{"Global true", "a.service", "Global=true\n", Fleet{Global: true}},
		{"Global yes with MachineMetadata and Conflicts", "a.service", "Global=yes\nMachineMetadata=role=edge\nConflicts=b.service\n",
			Fleet{Global: true, Metadata: Metadata{{Key: "role", Value: "edge"}}, Conflicts: []string{"b.service"}}},
		{"Global last one wins", "a.service", "Global=true\nGlobal=off\n", Fleet{}},
		{"Global reset", "a.service", "Global=true\nGlobal=\n", Fleet{}},
		{"Replaces", "a.service", "Replaces=old.service\n", Fleet{Replaces: []string{"old.service"}}},
		{"deprecated spellings", "a.service", "X-ConditionMachineOf=b.service\nX-ConditionMachineMetadata=r=1\n",
			Fleet{MachineOf: []string{"b.service"}, Metadata: Metadata{{Key: "r", Value: "1"}}}},
		{"deprecated X-Conflicts", "a.service", "X-Conflicts=b.service\n", Fleet{Conflicts: []string{"b.service"}}},
		{"deprecated MachineBootID", "a.service", "X-ConditionMachineBootID=m9\n", Fleet{MachineID: "m9"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := fleetOf(t, tt.unit, tt.xfleet)
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Fleet\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestFleetWarnings(t *testing.T) {
	u := mustParse(t, "a.service", "[X-Fleet]\nX-Conflicts=b.service\n")
	if len(u.Warnings) != 1 || u.Warnings[0].Line != 2 {
		t.Fatalf("Warnings = %v, want one deprecation at line 2", u.Warnings)
	}
}

func TestFleetErrors(t *testing.T) {
	tests := []struct {
		name      string
		unit      string
		xfleet    string // starts at line 2
		sentinel  error
		line, col int
		detail    string
	}{
		{"unknown key suggests MachineMetadata", "a.service", "MachineMetdata=region=east\n", ErrUnknownKey, 2, 1, "did you mean MachineMetadata?"},
		{"unknown key suggests MachineOf", "a.service", "MachineOff=b.service\n", ErrUnknownKey, 2, 1, "did you mean MachineOf?"},
		{"unknown key wrong case", "a.service", "conflicts=b.service\n", ErrUnknownKey, 2, 1, "did you mean Conflicts?"},
		{"unknown key suggests Global", "a.service", "Globl=true\n", ErrUnknownKey, 2, 1, "did you mean Global?"},
		{"unknown key far from all", "a.service", "Priority=5\n", ErrUnknownKey, 2, 1, "valid keys: MachineID, MachineOf"},
		{"Global not boolean", "a.service", "Global=maybe\n", ErrBool, 2, 8, "expected true or false"},
		{"Global with MachineID", "a.service", "Global=true\nMachineID=m1\n", ErrCombination, 3, 1, "MachineID cannot be used with Global=true"},
		{"Global with MachineOf", "a.service", "MachineOf=b.service\nGlobal=true\n", ErrCombination, 2, 1, "MachineOf cannot be used with Global=true"},
		{"Global with Replaces", "a.service", "Global=1\nReplaces=b.service\n", ErrCombination, 3, 1, "Replaces cannot be used with Global=true"},
		{"Replaces with Conflicts", "a.service", "Conflicts=c.service\nReplaces=b.service\n", ErrCombination, 3, 1, "Replaces cannot be used with Conflicts"},
		{"MachineID with MachineOf", "a.service", "MachineID=m1\nMachineOf=b.service\n", ErrCombination, 3, 1, "MachineOf cannot be used with MachineID"},
		{"MachineID with Conflicts", "a.service", "MachineID=m1\nConflicts=b.service\n", ErrCombination, 3, 1, "Conflicts cannot be used with MachineID"},
		{"MachineOf matches own Conflicts", "a.service", "MachineOf=b.service\nConflicts=b*\n", ErrUnresolvable, 2, 1, "matches the unit's own Conflicts"},
		{"MachineOf matches own Replaces", "a.service", "MachineOf=b.service\nReplaces=b.service\n", ErrUnresolvable, 2, 1, "Replaces"},
		{"MachineOf invalid name", "a.service", "MachineOf=b\n", ErrName, 2, 11, "no type suffix"},
		{"MachineOf itself", "a.service", "MachineOf=%n\n", ErrSelfReference, 2, 11, "names the unit itself"},
		{"MachineID two values", "a.service", "MachineID=m1\nMachineID=m2\n", ErrMachineID, 3, 11, `"m1" and "m2"`},
		{"MachineID two words", "a.service", "MachineID=m1 m2\n", ErrMachineID, 2, 14, "one machine ID"},
		{"metadata without =", "a.service", "MachineMetadata=region\n", ErrMetadata, 2, 17, "not key=value"},
		{"metadata empty value", "a.service", "MachineMetadata=region=\n", ErrMetadata, 2, 17, "empty value"},
		{"metadata empty key", "a.service", "MachineMetadata==east\n", ErrMetadata, 2, 17, "empty key"},
		{"metadata several unquoted pairs", "a.service", "MachineMetadata=region=east disk=ssd\n", ErrMetadata, 2, 17, "quote each pair"},
		{"metadata second quoted pair bad", "a.service", `MachineMetadata="region=east" "disk"` + "\n", ErrMetadata, 2, 31, `"disk" is not key=value`},
		{"metadata comparison with a word", "a.service", "MachineMetadata=memory>=lots\n", ErrMetadata, 2, 17, "is not one"},
		{"metadata ! with a comparison", "a.service", "MachineMetadata=!memory>=1\n", ErrMetadata, 2, 17, "'!' goes with key=value only"},
		{"metadata lone !", "a.service", "MachineMetadata=region!east\n", ErrMetadata, 2, 17, "not key=value"},
		{"metadata empty value after !=", "a.service", "MachineMetadata=region!=\n", ErrMetadata, 2, 17, "empty value"},
		{"metadata unterminated quote", "a.service", `MachineMetadata="region=east` + "\n", ErrQuote, 2, 17, ""},
		{"bad glob", "a.service", "Conflicts=ok.service [bad\n", ErrGlob, 2, 22, "syntax error in pattern"},
		{"bad glob in Replaces", "a.service", "Replaces=x[\n", ErrGlob, 2, 10, ""},
		{"position inside a continued value", "a.service", "Conflicts=a.service \\\n    [bad\n", ErrGlob, 3, 5, ""},
		{"template checked with a sample instance", "app@.service", "MachineOf=%i.socket\nMachineOf=x\n", ErrName, 3, 11, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.unit, []byte("[X-Fleet]\n"+tt.xfleet))
			wantErr(t, err, tt.sentinel, tt.line, tt.col, tt.detail)
		})
	}
}

func TestSpecifiers(t *testing.T) {
	tests := []struct {
		unit string
		want Fleet
	}{
		{"web@7.service", Fleet{
			MachineID: "m-7-%%x-%q",
			MachineOf: []string{"web-sidekick@7.service"},
			Metadata:  Metadata{{Key: "shard", Value: "7"}},
			Conflicts: []string{"web@*.web@7.service", "web@7"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.unit, func(t *testing.T) {
			// MachineID and MachineOf together are refused, so check them in two units.
			u1 := mustParse(t, tt.unit, "[X-Fleet]\nMachineOf=%p-sidekick@%i.service\nConflicts=%p@*.%n %N\nMachineMetadata=shard=%i\n")
			u2 := mustParse(t, tt.unit, "[X-Fleet]\nMachineID=m-%i-%%x-%q\n")
			got := u1.Fleet
			got.MachineID = u2.Fleet.MachineID
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Fleet\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
	// A plain unit expands too (fleet's own example: MachineOf=%p.socket).
	if got := fleetOf(t, "foo.service", "MachineOf=%p.socket\n").MachineOf; !reflect.DeepEqual(got, []string{"foo.socket"}) {
		t.Errorf("plain unit: MachineOf = %q, want foo.socket", got)
	}
	// Without a name nothing is expanded.
	if got := mustParse(t, "", "[X-Fleet]\nConflicts=%p@*.service\n").Fleet.Conflicts; !reflect.DeepEqual(got, []string{"%p@*.service"}) {
		t.Errorf("no name: Conflicts = %q", got)
	}
}

func TestTemplateAndInstances(t *testing.T) {
	const text = "[Unit]\nDescription=My app %i\n\n[Service]\nExecStart=/usr/bin/app --id %i\n\n[X-Fleet]\nConflicts=my-app@*.service\nMachineMetadata=shard=%i\n"
	tmpl := mustParse(t, "my-app@.service", text)
	if n := tmpl.ParseName(); !n.IsTemplate() || n.IsInstance() {
		t.Fatalf("my-app@.service: IsTemplate %v IsInstance %v", n.IsTemplate(), n.IsInstance())
	}
	// The template holds fleet's view: an empty instance.
	if got := tmpl.Fleet.Metadata; len(got) != 0 {
		// "shard=" has an empty value: dropped in the template, checked with a sample instance.
		t.Errorf("template metadata = %v, want none (empty instance)", got)
	}
	one, err := tmpl.Instantiate("1")
	if err != nil {
		t.Fatal(err)
	}
	if one.Name != "my-app@1.service" {
		t.Errorf("instance name %q", one.Name)
	}
	if want := (Metadata{{Key: "shard", Value: "1"}}); !reflect.DeepEqual(one.Fleet.Metadata, want) {
		t.Errorf("instance metadata %v, want %v", one.Fleet.Metadata, want)
	}
	if one.Hash() != tmpl.Hash() {
		t.Error("an instance's hash differs from its template's")
	}
	direct := mustParse(t, "my-app@1.service", text)
	if !reflect.DeepEqual(direct.Fleet, one.Fleet) {
		t.Errorf("Parse of the instance %+v differs from Instantiate %+v", direct.Fleet, one.Fleet)
	}
	if _, err := direct.Instantiate("2"); !errors.Is(err, ErrNotTemplate) {
		t.Errorf("Instantiate on an instance: %v, want ErrNotTemplate", err)
	}
	if _, err := tmpl.Instantiate("bad/name"); !errors.Is(err, ErrInstanceName) {
		t.Errorf("Instantiate(bad/name): %v, want ErrInstanceName", err)
	}
}

func TestMetadataMatch(t *testing.T) {
	parse := func(s string) Metadata {
		t.Helper()
		return fleetOf(t, "a.service", s).Metadata
	}
	east := map[string]string{"region": "east", "disk": "ssd"}
	west := map[string]string{"region": "west", "disk": "hdd"}
	none := map[string]string{}
	tests := []struct {
		name    string
		xfleet  string
		machine map[string]string
		want    bool
	}{
		{"no rules match anything", "", none, true},
		{"one pair matches", "MachineMetadata=region=east\n", east, true},
		{"one pair mismatches", "MachineMetadata=region=east\n", west, false},
		{"missing key", "MachineMetadata=region=east\n", none, false},
		{"same key ORed", "MachineMetadata=region=east\nMachineMetadata=region=west\n", west, true},
		{"different keys ANDed, both hold", `MachineMetadata="region=east" "disk=ssd"` + "\n", east, true},
		{"different keys ANDed, one fails", `MachineMetadata="region=east" "disk=hdd"` + "\n", east, false},
		{"fleet doc example: diskType AND (region east OR west)", `MachineMetadata="region=east" "disk=ssd"` + "\nMachineMetadata=region=west\n", map[string]string{"region": "west", "disk": "ssd"}, true},
		{"fleet doc example fails on disk", `MachineMetadata="region=east" "disk=ssd"` + "\nMachineMetadata=region=west\n", west, false},
		{"negation excludes", "MachineMetadata=!region=east\n", east, false},
		{"negation admits another value", "MachineMetadata=!region=east\n", west, true},
		{"negation admits a missing key", "MachineMetadata=!region=east\n", none, true},
		{"negation with a positive rule of another key", "MachineMetadata=!region=east\nMachineMetadata=disk=hdd\n", west, true},
		{"two negations", "MachineMetadata=!region=east\nMachineMetadata=!region=west\n", west, false},
		{"values are case-sensitive", "MachineMetadata=region=East\n", east, false},
		{"key!=value excludes", "MachineMetadata=region!=east\n", east, false},
		{"key!=value admits a missing key", "MachineMetadata=region!=east\n", none, true},
		{"numeric at least", "MachineMetadata=memory>=16\n", map[string]string{"memory": "16"}, true},
		{"numeric below", "MachineMetadata=memory>=16\n", map[string]string{"memory": "8"}, false},
		{"numeric compares numbers, not text", "MachineMetadata=memory>9\n", map[string]string{"memory": "10"}, true},
		{"numeric range", `MachineMetadata="memory>=16" "memory<64"` + "\n", map[string]string{"memory": "32"}, true},
		{"numeric range above", `MachineMetadata="memory>=16" "memory<64"` + "\n", map[string]string{"memory": "64"}, false},
		{"numeric needs the key", "MachineMetadata=memory<64\n", none, false},
		{"numeric needs a number", "MachineMetadata=memory<64\n", map[string]string{"memory": "lots"}, false},
		{"numeric with equality of the same key", "MachineMetadata=memory=32\nMachineMetadata=memory=48\nMachineMetadata=memory>40\n", map[string]string{"memory": "32"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := parse(tt.xfleet).Match(tt.machine); got != tt.want {
				t.Fatalf("Match(%v) = %v, want %v", tt.machine, got, tt.want)
			}
		})
	}
	if got, want := parse(`MachineMetadata="region=west" "disk=ssd" "!region=east"`+"\n").String(), "disk=ssd region=west region!=east"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestConflictsGlobs(t *testing.T) {
	f := fleetOf(t, "my-app@1.service", "Conflicts=my-app@*.service db?.service [xy]-cache.service\n")
	tests := []struct {
		name string
		want bool
	}{
		{"my-app@2.service", true},
		{"my-app@1.service", true}, // the glob matches; the scheduler skips the unit itself
		{"my-app@.service", true},
		{"my-app.service", false},
		{"other@1.service", false},
		{"db1.service", true},
		{"db12.service", false},
		{"x-cache.service", true},
		{"z-cache.service", false},
	}
	for _, tt := range tests {
		if got := f.ConflictsWith(tt.name); got != tt.want {
			t.Errorf("ConflictsWith(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
	r := fleetOf(t, "new.service", "Replaces=old-*.service\n")
	if !r.ReplacesUnit("old-1.service") || r.ReplacesUnit("new.service") {
		t.Error("ReplacesUnit does not follow the glob")
	}
}

func TestParseBool(t *testing.T) {
	for _, s := range []string{"1", "yes", "Y", "true", "T", "on", "TRUE"} {
		if b, err := ParseBool(s); err != nil || !b {
			t.Errorf("ParseBool(%q) = %v, %v", s, b, err)
		}
	}
	for _, s := range []string{"0", "no", "n", "false", "F", "off"} {
		if b, err := ParseBool(s); err != nil || b {
			t.Errorf("ParseBool(%q) = %v, %v", s, b, err)
		}
	}
	for _, s := range []string{"", "2", "maybe", "enabled"} {
		if _, err := ParseBool(s); !errors.Is(err, ErrBool) {
			t.Errorf("ParseBool(%q) err = %v", s, err)
		}
	}
}
