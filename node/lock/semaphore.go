// Package lock is the cluster's reboot lock: a counting semaphore per group of machines, kept in
// etcd under locksmith's keys and JSON, changed only by compare-and-swap, and served to Zincati
// through the FleetLock protocol.
//
// Semaphore and Policy are pure: they hold the rules (slots, holders, groups, windows) and are
// tested without etcd. Manager applies them to etcd; FleetLock serves them over HTTP.
package lock

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"time"

	"github.com/kiln-cluster/kiln/node/keys"
)

// Semaphore is the value of a semaphore key, in locksmith's JSON:
// {"semaphore":1,"max":1,"holders":[]}. Semaphore is the number of free slots; Holders are
// kept sorted, as locksmith and airlock keep them.
type Semaphore struct {
	Semaphore int      `json:"semaphore"`
	Max       int      `json:"max"`
	Holders   []string `json:"holders"`
}

// NewSemaphore returns an empty semaphore of max slots.
func NewSemaphore(max int) *Semaphore {
	return &Semaphore{Semaphore: max, Max: max, Holders: []string{}}
}

// ParseSemaphore reads locksmith's JSON.
func ParseSemaphore(raw []byte) (*Semaphore, error) {
	var s Semaphore
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if s.Holders == nil {
		s.Holders = []string{}
	}
	return &s, nil
}

// Marshal renders locksmith's JSON (holders is [] when empty, never null).
func (s *Semaphore) Marshal() []byte {
	c := *s
	if c.Holders == nil {
		c.Holders = []string{}
	}
	raw, _ := json.Marshal(c)
	return raw
}

// Holds reports whether id holds a slot.
func (s *Semaphore) Holds(id string) bool { return slices.Contains(s.Holders, id) }

// Lock takes a slot for id. Taking it again while holding it is a no-op (changed is false).
// With no free slot it returns ErrBusy.
func (s *Semaphore) Lock(id string) (changed bool, err error) {
	if id == "" {
		return false, ErrInvalidID
	}
	if s.Holds(id) {
		return false, nil
	}
	if len(s.Holders) >= s.Max {
		return false, ErrBusy
	}
	// Sorted, as locksmith and airlock keep them: locksmith's unlock binary-searches holders.
	s.Holders = append(s.Holders, id)
	slices.Sort(s.Holders)
	s.Semaphore = s.Max - len(s.Holders)
	return true, nil
}

// Unlock frees id's slot; unlocking a slot id does not hold is a no-op (changed is false).
func (s *Semaphore) Unlock(id string) (changed bool) {
	i := slices.Index(s.Holders, id)
	if i < 0 {
		return false
	}
	s.Holders = slices.Delete(s.Holders, i, i+1)
	slices.Sort(s.Holders) // a value written unsorted (by kiln before it sorted) is mended
	s.Semaphore = s.Max - len(s.Holders)
	return true
}

// SetMax changes the number of slots. Holders beyond the new maximum keep their slot (the
// free count goes negative, as in locksmith) until they release it.
func (s *Semaphore) SetMax(max int) (changed bool) {
	if s.Max == max {
		return false
	}
	s.Max = max
	s.Semaphore = max - len(s.Holders)
	return true
}

// Group is the policy of one group of machines.
type Group struct {
	// Max is the number of machines of the group that may hold a slot at once; 0 keeps what the
	// semaphore says (1 for a new one).
	Max int
	// Window restricts when a slot may be taken; nil: any time.
	Window *Window
}

// Policy holds the rules of every group a server knows, and the clock.
type Policy struct {
	// Groups by name; a nil map knows every group, with Max 1 and no window.
	Groups map[string]Group
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

var groupRe = regexp.MustCompile(`^[a-zA-Z0-9.-]+$`)

// ValidGroup checks a group name against the FleetLock protocol's [a-zA-Z0-9.-]+.
func ValidGroup(group string) error {
	if !groupRe.MatchString(group) {
		return fmt.Errorf("%w %q: want [a-zA-Z0-9.-]+", ErrInvalidGroup, group)
	}
	return nil
}

// Group returns the policy of group ("" is the default group).
func (p Policy) Group(group string) (Group, error) {
	group = keys.GroupName(group)
	if err := ValidGroup(group); err != nil {
		return Group{}, err
	}
	if p.Groups == nil {
		return Group{}, nil
	}
	g, ok := p.Groups[group]
	if !ok {
		return Group{}, fmt.Errorf("%w %q", ErrUnknownGroup, group)
	}
	return g, nil
}

func (p Policy) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

// Acquire applies the group's rules to take a slot in s for id: a holder taking it again is a
// no-op (even outside the window); otherwise the window must be open and a slot free. The
// group's Max, when set, replaces the semaphore's.
func (p Policy) Acquire(s *Semaphore, group, id string) (changed bool, err error) {
	g, err := p.Group(group)
	if err != nil {
		return false, err
	}
	if id == "" {
		return false, ErrInvalidID
	}
	if g.Max > 0 {
		changed = s.SetMax(g.Max)
	}
	if s.Holds(id) {
		return changed, nil
	}
	if g.Window != nil && !g.Window.Contains(p.now()) {
		return false, fmt.Errorf("%w (%s, next opens %s)", ErrOutsideWindow, g.Window, g.Window.Next(p.now()).Format(time.RFC3339))
	}
	took, err := s.Lock(id)
	return changed || took, err
}
