package lock

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Window is a weekly reboot window in locksmith's form: a start such as "Sun 04:00",
// "Mon,Wed 03:30" or "04:00" (every day), and a length.
type Window struct {
	// Days the window opens; empty: every day.
	Days []time.Weekday
	// Start is the time of day the window opens, as an offset from midnight.
	Start time.Duration
	// Length is how long it stays open (at most a week).
	Length time.Duration
}

var dayNames = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
}

// ParseWindow reads a window's start ("[Day[,Day...] ]HH:MM") and length (a Go duration).
func ParseWindow(start, length string) (*Window, error) {
	w := &Window{}
	fields := strings.Fields(start)
	switch len(fields) {
	case 1:
	case 2:
		for d := range strings.SplitSeq(fields[0], ",") {
			wd, ok := parseDay(d)
			if !ok {
				return nil, fmt.Errorf("%w: unknown day %q in %q", ErrInvalidWindow, d, start)
			}
			if !slices.Contains(w.Days, wd) {
				w.Days = append(w.Days, wd)
			}
		}
		fields = fields[1:]
	default:
		return nil, fmt.Errorf("%w: start %q: want \"[Day[,Day...]] HH:MM\"", ErrInvalidWindow, start)
	}
	hh, mm, ok := strings.Cut(fields[0], ":")
	h, errH := strconv.Atoi(hh)
	m, errM := strconv.Atoi(mm)
	if !ok || errH != nil || errM != nil || h < 0 || h > 23 || m < 0 || m > 59 {
		return nil, fmt.Errorf("%w: start %q: want \"[Day[,Day...]] HH:MM\"", ErrInvalidWindow, start)
	}
	w.Start = time.Duration(h)*time.Hour + time.Duration(m)*time.Minute
	l, err := time.ParseDuration(length)
	if err != nil || l <= 0 || l > 7*24*time.Hour {
		return nil, fmt.Errorf("%w: length %q: want a duration between 1s and 168h", ErrInvalidWindow, length)
	}
	w.Length = l
	return w, nil
}

// parseDay reads "Sun" or "sunday" (any case).
func parseDay(s string) (time.Weekday, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	if len(s) < 3 {
		return 0, false
	}
	wd, ok := dayNames[s[:3]]
	if !ok || (len(s) > 3 && s != strings.ToLower(wd.String())) {
		return 0, false
	}
	return wd, true
}

func (w *Window) opensOn(d time.Weekday) bool { return len(w.Days) == 0 || slices.Contains(w.Days, d) }

// opening returns the start of the window on t's calendar day (which may not be a day it opens).
func (w *Window) opening(t time.Time) time.Time {
	y, mo, d := t.Date()
	return time.Date(y, mo, d, 0, 0, 0, 0, t.Location()).Add(w.Start)
}

// Contains reports whether the window is open at t (in t's location).
func (w *Window) Contains(t time.Time) bool {
	for back := 0; back <= 7; back++ {
		o := w.opening(t.AddDate(0, 0, -back))
		if w.opensOn(o.Weekday()) && !t.Before(o) && t.Before(o.Add(w.Length)) {
			return true
		}
	}
	return false
}

// Next returns t when the window is open, else the next time it opens.
func (w *Window) Next(t time.Time) time.Time {
	if w.Contains(t) {
		return t
	}
	for fwd := 0; fwd <= 8; fwd++ {
		o := w.opening(t.AddDate(0, 0, fwd))
		if w.opensOn(o.Weekday()) && o.After(t) {
			return o
		}
	}
	return t
}

// String renders the window as it is written ("Mon,Wed 03:30 for 1h0m0s").
func (w *Window) String() string {
	var days []string
	for _, d := range w.Days {
		days = append(days, d.String()[:3])
	}
	s := fmt.Sprintf("%02d:%02d for %s", int(w.Start.Hours()), int(w.Start.Minutes())%60, w.Length)
	if len(days) > 0 {
		s = strings.Join(days, ",") + " " + s
	}
	return s
}
