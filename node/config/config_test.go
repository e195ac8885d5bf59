package config

import (
	"reflect"
	"strings"
	"testing"
)

func TestConfigRoundTrip(t *testing.T) {
	c := &Config{
		Hostname: "n1", Metadata: map[string]string{"disk": "ssd"},
		Etcd:   Etcd{Endpoints: []string{"https://10.0.0.11:2379"}, CA: "/ca", Cert: "/c", Key: "/k"},
		Reboot: Reboot{Strategy: "etcd-lock", MaxConcurrent: 2, Window: &Window{Start: "Sun 04:00", Length: "2h"}},
	}
	raw, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(raw, "node.json")
	if err != nil {
		t.Fatalf("%v\n%s", err, raw)
	}
	if !reflect.DeepEqual(got, c) {
		t.Fatalf("round trip: %+v, want %+v", got, c)
	}
}

func TestParseErrorsSayWhere(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"syntax", "{\n  \"hostname\": \"n1\",\n  \"etcd\": {\"ca\" \"/ca\"}\n}\n", "node.json:3:17: "},
		{"type", "{\n  \"reboot\": {\"maxConcurrent\": \"two\"}\n}\n", "node.json:2:36: "},
		{"unknown field", `{"hostnmae": "n1"}`, `node.json: json: unknown field "hostnmae"`},
		{"two values", `{"hostname": "n1"} {}`, "node.json: more than one JSON value"},
		{"YAML", "hostname: n1\n", "node.json:1:1: "},
		{"empty", "", "node.json: EOF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.in), "node.json")
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to start with %q", err, tc.want)
			}
		})
	}
}

func TestManifestIgnoresUnknownFields(t *testing.T) {
	m, err := ParseManifest([]byte(`{"units": [{"name": "a.service", "instances": 2, "later": true}], "also": 1}`))
	if err != nil || len(m.Units) != 1 || m.Units[0] != (ManifestUnit{Name: "a.service", Instances: 2}) {
		t.Fatalf("%+v %v", m, err)
	}
	if _, err := ParseManifest([]byte("{\n\"units\": [}")); err == nil || !strings.HasPrefix(err.Error(), "2:11: ") {
		t.Fatalf("syntax error: %v", err)
	}
}
