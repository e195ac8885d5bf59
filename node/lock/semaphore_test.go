package lock

import (
	"errors"
	"slices"
	"testing"
	"time"
)

func TestSemaphoreJSONIsLocksmiths(t *testing.T) {
	s := NewSemaphore(1)
	if got, want := string(s.Marshal()), `{"semaphore":1,"max":1,"holders":[]}`; got != want {
		t.Fatalf("empty: got %s, want %s", got, want)
	}
	if _, err := s.Lock("m1"); err != nil {
		t.Fatal(err)
	}
	if got, want := string(s.Marshal()), `{"semaphore":0,"max":1,"holders":["m1"]}`; got != want {
		t.Fatalf("held: got %s, want %s", got, want)
	}
	// A value written by locksmith (holders null) reads back.
	p, err := ParseSemaphore([]byte(`{"semaphore":2,"max":2,"holders":null}`))
	if err != nil || p.Max != 2 || p.Holders == nil {
		t.Fatalf("parse: %+v %v", p, err)
	}
	if _, err := ParseSemaphore([]byte(`{"semaphore":`)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("corrupt value: got %v, want ErrCorrupt", err)
	}
}

func TestSemaphore(t *testing.T) {
	type step struct {
		op      string // lock | unlock | max
		id      string
		max     int
		changed bool
		err     error
	}
	cases := []struct {
		name    string
		max     int
		steps   []step
		holders []string
	}{
		{"lock and unlock", 1, []step{{op: "lock", id: "a", changed: true}, {op: "unlock", id: "a", changed: true}}, []string{}},
		{"relock is a no-op", 1, []step{{op: "lock", id: "a", changed: true}, {op: "lock", id: "a"}}, []string{"a"}},
		{"reunlock is a no-op", 1, []step{{op: "lock", id: "a", changed: true}, {op: "unlock", id: "a", changed: true}, {op: "unlock", id: "a"}}, []string{}},
		{"busy at max", 2, []step{{op: "lock", id: "a", changed: true}, {op: "lock", id: "b", changed: true}, {op: "lock", id: "c", err: ErrBusy}}, []string{"a", "b"}},
		{"slot freed", 1, []step{{op: "lock", id: "a", changed: true}, {op: "lock", id: "b", err: ErrBusy}, {op: "unlock", id: "a", changed: true}, {op: "lock", id: "b", changed: true}}, []string{"b"}},
		{"unlock by a stranger", 1, []step{{op: "lock", id: "a", changed: true}, {op: "unlock", id: "b"}}, []string{"a"}},
		{"holders sorted, as locksmith's unlock binary-searches them", 3, []step{{op: "lock", id: "c", changed: true}, {op: "lock", id: "b", changed: true}, {op: "lock", id: "a", changed: true}, {op: "unlock", id: "b", changed: true}}, []string{"a", "c"}},
		{"empty id", 1, []step{{op: "lock", id: "", err: ErrInvalidID}}, []string{}},
		{"lower max keeps holders", 2, []step{{op: "lock", id: "a", changed: true}, {op: "lock", id: "b", changed: true}, {op: "max", max: 1, changed: true}, {op: "unlock", id: "a", changed: true}, {op: "lock", id: "c", err: ErrBusy}}, []string{"b"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := NewSemaphore(tc.max)
			for i, st := range tc.steps {
				var changed bool
				var err error
				switch st.op {
				case "lock":
					changed, err = s.Lock(st.id)
				case "unlock":
					changed = s.Unlock(st.id)
				case "max":
					changed = s.SetMax(st.max)
				}
				if changed != st.changed || !errors.Is(err, st.err) {
					t.Fatalf("step %d %s %q: changed=%v err=%v, want %v %v", i, st.op, st.id, changed, err, st.changed, st.err)
				}
				if s.Semaphore != s.Max-len(s.Holders) {
					t.Fatalf("step %d: semaphore %d, max %d, %d holders", i, s.Semaphore, s.Max, len(s.Holders))
				}
			}
			if !slices.Equal(s.Holders, tc.holders) {
				t.Fatalf("holders %v, want %v", s.Holders, tc.holders)
			}
		})
	}
}

func mustWindow(t *testing.T, start, length string) *Window {
	t.Helper()
	w, err := ParseWindow(start, length)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestPolicyWithClock(t *testing.T) {
	// 2026-11-22 is a Sunday.
	sun0400 := time.Date(2026, 11, 22, 4, 0, 0, 0, time.UTC)
	now := sun0400
	p := Policy{
		Groups: map[string]Group{
			"default": {Max: 1, Window: mustWindow(t, "Sun 04:00", "2h")},
			"workers": {Max: 2},
		},
		Now: func() time.Time { return now },
	}
	s := NewSemaphore(1)
	type step struct {
		name    string
		at      time.Duration // from Sunday 04:00
		group   string
		id      string
		changed bool
		err     error
	}
	steps := []step{
		{"before the window", -time.Minute, "default", "a", false, ErrOutsideWindow},
		{"window opens", 0, "default", "a", true, nil},
		{"holder again, inside", time.Hour, "default", "a", false, nil},
		{"holder again, after the window", 3 * time.Hour, "default", "a", false, nil},
		{"other holder, busy", time.Hour, "default", "b", false, ErrBusy},
		{"end of the window", 2 * time.Hour, "default", "b", false, ErrOutsideWindow},
		{"a week later", 7 * 24 * time.Hour, "default", "b", false, ErrBusy},
		{"unknown group", 0, "nope", "a", false, ErrUnknownGroup},
		{"invalid group", 0, "no/pe", "a", false, ErrInvalidGroup},
		{"empty id", 0, "default", "", false, ErrInvalidID},
		{"empty group is default", time.Hour, "", "a", false, nil},
	}
	for _, st := range steps {
		now = sun0400.Add(st.at)
		changed, err := p.Acquire(s, st.group, st.id)
		if changed != st.changed || !errors.Is(err, st.err) {
			t.Errorf("%s: changed=%v err=%v, want %v %v", st.name, changed, err, st.changed, st.err)
		}
	}

	// Groups have their own maximum, which replaces the semaphore's.
	w := NewSemaphore(1)
	for _, id := range []string{"x", "y"} {
		if _, err := p.Acquire(w, "workers", id); err != nil {
			t.Fatalf("workers %s: %v", id, err)
		}
	}
	if _, err := p.Acquire(w, "workers", "z"); !errors.Is(err, ErrBusy) {
		t.Fatalf("third worker: %v, want ErrBusy", err)
	}
	if w.Max != 2 {
		t.Fatalf("max %d, want the group's 2", w.Max)
	}
	// No Groups map: every group is known, Max from the semaphore.
	open := Policy{}
	if _, err := open.Acquire(NewSemaphore(1), "anything", "a"); err != nil {
		t.Fatal(err)
	}
}

func TestWindow(t *testing.T) {
	at := func(day, hh, mm int) time.Time { return time.Date(2026, 11, day, hh, mm, 0, 0, time.UTC) } // 22 = Sunday
	cases := []struct {
		name, start, length string
		t                   time.Time
		open                bool
		next                time.Time
	}{
		{"inside", "Sun 04:00", "2h", at(22, 5, 0), true, at(22, 5, 0)},
		{"start is inside", "Sun 04:00", "2h", at(22, 4, 0), true, at(22, 4, 0)},
		{"end is outside", "Sun 04:00", "2h", at(22, 6, 0), false, at(29, 4, 0)},
		{"other day", "Sun 04:00", "2h", at(23, 5, 0), false, at(29, 4, 0)},
		{"several days", "Mon,Wed 03:30", "1h", at(25, 4, 0), true, at(25, 4, 0)},
		{"several days, between", "mon,wednesday 03:30", "1h", at(24, 4, 0), false, at(25, 3, 30)},
		{"every day", "23:00", "2h", at(24, 0, 30), true, at(24, 0, 30)},
		{"across midnight and the week", "Sat 23:00", "3h", at(22, 1, 0), true, at(22, 1, 0)},
		{"every day, before", "23:00", "2h", at(24, 22, 0), false, at(24, 23, 0)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := mustWindow(t, tc.start, tc.length)
			if got := w.Contains(tc.t); got != tc.open {
				t.Errorf("Contains(%s) = %v, want %v", tc.t, got, tc.open)
			}
			if got := w.Next(tc.t); !got.Equal(tc.next) {
				t.Errorf("Next(%s) = %s, want %s", tc.t, got, tc.next)
			}
		})
	}
	for _, bad := range [][2]string{{"Sun", "1h"}, {"Funday 04:00", "1h"}, {"Sun 25:00", "1h"}, {"Sun 04:00", "forever"}, {"Sun 04:00", "200h"}, {"Su 04:00", "1h"}, {"a b c", "1h"}} {
		if _, err := ParseWindow(bad[0], bad[1]); !errors.Is(err, ErrInvalidWindow) {
			t.Errorf("ParseWindow(%q, %q): %v, want ErrInvalidWindow", bad[0], bad[1], err)
		}
	}
}
