package reconcile

import (
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/kiln-cluster/kiln/node/executor"
	"github.com/kiln-cluster/kiln/node/unit"
)

func h(s string) unit.Hash {
	var x unit.Hash
	copy(x[:], s)
	return x
}

func running(name string) executor.Status {
	return executor.Status{Name: name, LoadState: "loaded", ActiveState: "active", SubState: "running"}
}

func failed(name string) executor.Status {
	return executor.Status{Name: name, LoadState: "loaded", ActiveState: "failed", SubState: "failed"}
}

func TestPlan(t *testing.T) {
	tests := []struct {
		name string
		want map[string]Want
		cur  Current
		hold map[string]bool
		acts string
	}{
		{
			name: "nothing to do",
			acts: "",
		},
		{
			name: "new launched unit: write, reload, start",
			want: map[string]Want{"a.service": {h("A"), true}},
			acts: "write a.service; reload; start a.service",
		},
		{
			name: "loaded only: write and reload, no start",
			want: map[string]Want{"a.service": {h("A"), false}},
			acts: "write a.service; reload",
		},
		{
			name: "instances share their template's file",
			want: map[string]Want{"app@1.service": {h("T"), true}, "app@2.service": {h("T"), true}},
			acts: "write app@.service; reload; start app@1.service; start app@2.service",
		},
		{
			name: "up to date and started: nothing",
			want: map[string]Want{"a.service": {h("A"), true}},
			cur: Current{Files: map[string]unit.Hash{"a.service": h("A")}, Started: map[string]unit.Hash{"a.service": h("A")},
				Status: map[string]executor.Status{"a.service": running("a.service")}},
			acts: "",
		},
		{
			name: "started unit that failed is not restarted (its Restart= decides)",
			want: map[string]Want{"a.service": {h("A"), true}},
			cur: Current{Files: map[string]unit.Hash{"a.service": h("A")}, Started: map[string]unit.Hash{"a.service": h("A")},
				Status: map[string]executor.Status{"a.service": failed("a.service")}},
			acts: "",
		},
		{
			name: "unassigned: stop, remove, reload",
			cur: Current{Files: map[string]unit.Hash{"a.service": h("A")}, Started: map[string]unit.Hash{"a.service": h("A")},
				Status: map[string]executor.Status{"a.service": running("a.service")}},
			acts: "stop a.service; remove a.service; reload",
		},
		{
			name: "launched to loaded: stop, keep the file",
			want: map[string]Want{"a.service": {h("A"), false}},
			cur: Current{Files: map[string]unit.Hash{"a.service": h("A")}, Started: map[string]unit.Hash{"a.service": h("A")},
				Status: map[string]executor.Status{"a.service": running("a.service")}},
			acts: "stop a.service",
		},
		{
			name: "new file text: stop under the old one, write, reload, start",
			want: map[string]Want{"a.service": {h("B"), true}},
			cur: Current{Files: map[string]unit.Hash{"a.service": h("A")}, Started: map[string]unit.Hash{"a.service": h("A")},
				Status: map[string]executor.Status{"a.service": running("a.service")}},
			acts: "stop a.service; write a.service; reload; start a.service",
		},
		{
			name: "one instance of two unassigned: the template stays",
			want: map[string]Want{"app@1.service": {h("T"), true}},
			cur: Current{Files: map[string]unit.Hash{"app@.service": h("T")},
				Started: map[string]unit.Hash{"app@1.service": h("T"), "app@2.service": h("T")},
				Status:  map[string]executor.Status{"app@1.service": running("app@1.service"), "app@2.service": running("app@2.service")}},
			acts: "stop app@2.service",
		},
		{
			name: "running after a restart of kiln-node, same file: adopted, not restarted",
			want: map[string]Want{"a.service": {h("A"), true}},
			cur: Current{Files: map[string]unit.Hash{"a.service": h("A")},
				Status: map[string]executor.Status{"a.service": running("a.service")}},
			acts: "adopt a.service",
		},
		{
			name: "running from an old file: stopped and started again",
			want: map[string]Want{"a.service": {h("B"), true}},
			cur: Current{Files: map[string]unit.Hash{"a.service": h("A")},
				Status: map[string]executor.Status{"a.service": running("a.service")}},
			acts: "stop a.service; write a.service; reload; start a.service",
		},
		{
			name: "running but only loaded wanted: stopped",
			want: map[string]Want{"a.service": {h("A"), false}},
			cur: Current{Files: map[string]unit.Hash{"a.service": h("A")},
				Status: map[string]executor.Status{"a.service": running("a.service")}},
			acts: "stop a.service",
		},
		{
			name: "held unit (file unavailable) is left alone, its file kept",
			want: map[string]Want{"a.service": {h("B"), true}, "b.service": {h("C"), true}},
			cur: Current{Files: map[string]unit.Hash{"a.service": h("A")}, Started: map[string]unit.Hash{"a.service": h("A")},
				Status: map[string]executor.Status{"a.service": running("a.service")}},
			hold: map[string]bool{"a.service": true},
			acts: "write b.service; reload; start b.service",
		},
		{
			name: "sorted by kind, then name",
			want: map[string]Want{"c.service": {h("C"), true}, "b.service": {h("B"), true}},
			cur: Current{Files: map[string]unit.Hash{"z.service": h("Z"), "y.service": h("Y")},
				Started: map[string]unit.Hash{"z.service": h("Z"), "y.service": h("Y")}},
			acts: "stop y.service; stop z.service; remove y.service; remove z.service; write b.service; write c.service; reload; start b.service; start c.service",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, a := range Plan(tt.want, tt.cur, tt.hold) {
				got = append(got, a.String())
			}
			if s := strings.Join(got, "; "); s != tt.acts {
				t.Errorf("plan:\n got %s\nwant %s", s, tt.acts)
			}
		})
	}
}

// After applying a plan, planning again gives nothing.
func TestPlanIdempotent(t *testing.T) {
	want := map[string]Want{"app@1.service": {h("T"), true}, "b.service": {h("B"), false}, "c.service": {h("C"), true}}
	cur := Current{Files: map[string]unit.Hash{"old.service": h("O"), "c.service": h("X")},
		Started: map[string]unit.Hash{"old.service": h("O"), "c.service": h("X")}, Status: map[string]executor.Status{}}
	for _, a := range Plan(want, cur, nil) {
		switch a.Kind {
		case Stop:
			delete(cur.Started, a.Name)
		case Remove:
			delete(cur.Files, a.Name)
		case Write:
			cur.Files[a.Name] = a.Hash
		case Start, Adopt:
			cur.Started[a.Name] = a.Hash
			cur.Status[a.Name] = running(a.Name)
		}
	}
	if again := Plan(want, cur, nil); len(again) != 0 {
		t.Fatalf("second plan not empty: %v", again)
	}
	wantFiles := map[string]unit.Hash{"app@.service": h("T"), "b.service": h("B"), "c.service": h("C")}
	if !reflect.DeepEqual(cur.Files, wantFiles) {
		t.Errorf("files %v", cur.Files)
	}
}

// BenchmarkPlan plans a machine of 1,000 units (500 instances of one template, 500 plain
// units) of which 10 changed.
func BenchmarkPlan(b *testing.B) {
	want := map[string]Want{}
	cur := Current{Files: map[string]unit.Hash{}, Started: map[string]unit.Hash{}, Status: map[string]executor.Status{}}
	for i := range 500 {
		inst := "app@" + itoa(i) + ".service"
		plain := "svc-" + itoa(i) + ".service"
		want[inst] = Want{h("T"), true}
		want[plain] = Want{h("P" + itoa(i)), true}
		cur.Started[inst], cur.Started[plain] = h("T"), h("P"+itoa(i))
		cur.Status[inst], cur.Status[plain] = running(inst), running(plain)
		cur.Files[plain] = h("P" + itoa(i))
	}
	cur.Files["app@.service"] = h("T")
	for i := range 10 {
		want["svc-"+itoa(i)+".service"] = Want{h("new" + itoa(i)), true}
	}
	b.ResetTimer()
	for b.Loop() {
		if acts := Plan(want, cur, nil); len(acts) != 31 {
			b.Fatalf("%d actions", len(acts))
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
