package ctl

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kiln-cluster/kiln/node/journal"
	"github.com/kiln-cluster/kiln/node/submit"
	"github.com/kiln-cluster/kiln/node/unit"
)

// Result is one unit's outcome of submit, load, start, stop, unload or destroy (kiln ctl
// prints a list of them with -o json).
type Result = submit.Result

// File is a unit named by the operator: its name, and its text when a file was given.
type File = submit.File

// ReadUnitArgs turns command-line arguments into units: an existing file is read (its base name
// is the unit's name) and parsed, anything else is a unit name (needFile: every unit must come
// with its file). Every problem is reported at once, before etcd is asked anything.
func ReadUnitArgs(args []string, needFile bool) ([]File, error) {
	var files []File
	var errs []error
	for _, arg := range args {
		st, err := os.Stat(arg)
		if err == nil && st.Mode().IsRegular() {
			text, err := os.ReadFile(arg)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			f := File{Name: filepath.Base(arg), Text: text}
			if _, err := submit.Parse(f); err != nil {
				errs = append(errs, err)
				continue
			}
			files = append(files, f)
			continue
		}
		if needFile || strings.Contains(arg, "/") {
			errs = append(errs, fmt.Errorf("%s: %w", arg, submit.ErrNoText))
			continue
		}
		arg = unit.Normalize(arg) // "foo" is foo.service, as with systemctl and fleetctl
		if err := unit.ValidateName(arg); err != nil {
			errs = append(errs, err)
			continue
		}
		files = append(files, File{Name: arg})
	}
	return files, errors.Join(errs...)
}

// Submit stores unit files (inactive: known, placed nowhere). The same file again changes
// nothing; other contents under a known name are refused (submit.ErrChanged).
func (c *Client) Submit(ctx context.Context, files []File) ([]Result, error) {
	results, err := submit.Submit(ctx, c.etcd, files)
	return nonNil(results), err
}

// SetState sets the units' desired state (load, start, stop, unload); a unit given with its
// text is submitted first.
func (c *Client) SetState(ctx context.Context, files []File, state unit.State) ([]Result, error) {
	results, err := submit.SetState(ctx, c.etcd, files, state)
	return nonNil(results), err
}

// Destroy removes units from the cluster: they stop and leave their machines.
func (c *Client) Destroy(ctx context.Context, names []string) ([]Result, error) {
	results, err := submit.Destroy(ctx, c.etcd, names)
	return nonNil(results), err
}

func nonNil(r []Result) []Result {
	if r == nil {
		return []Result{}
	}
	return r
}

// waitPoll is how often Wait reads the units' status.
const waitPoll = 250 * time.Millisecond

// Wait polls until the machines report every named unit in its desired state (nil), one of them
// cannot get there now (ErrStuck, naming it and why), or ctx ends (ErrNotReached, naming those
// still pending).
func (c *Client) Wait(ctx context.Context, names []string) error {
	for {
		units, err := statuses(ctx, c.etcd)
		if err != nil && ctx.Err() == nil {
			return err
		}
		byName := map[string]UnitStatus{}
		for _, u := range units {
			byName[u.Name] = u
		}
		var pending, stuck []string
		for _, n := range names {
			done, problem := Reached(byName[n])
			switch {
			case problem != "":
				stuck = append(stuck, n+": "+problem)
			case !done:
				pending = append(pending, n)
			}
		}
		if len(stuck) > 0 {
			return fmt.Errorf("%w: %s", ErrStuck, strings.Join(stuck, "; "))
		}
		if len(pending) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %s", ErrNotReached, strings.Join(pending, ", "))
		case <-time.After(waitPoll):
		}
	}
}

// Units reads every unit's status at one revision, sorted by name (kiln ctl list-units).
// Templates are listed too: they run only as instances.
func (c *Client) Units(ctx context.Context) ([]UnitStatus, error) {
	units, err := statuses(ctx, c.etcd)
	if units == nil && err == nil {
		units = []UnitStatus{}
	}
	return units, err
}

// UnitFile is a line of kiln ctl list-unit-files: a submitted unit, its file's hash, its
// desired and current state and the machines it is placed on.
type UnitFile struct {
	Name         string     `json:"name"`
	Hash         unit.Hash  `json:"hash"`
	DesiredState unit.State `json:"desiredState"`
	State        unit.State `json:"state"`
	// Target lists the machines the unit is placed on.
	Target []string `json:"target"`
}

// UnitFiles lists the submitted units (not those being taken down after destroy).
func (c *Client) UnitFiles(ctx context.Context) ([]UnitFile, error) {
	units, err := statuses(ctx, c.etcd)
	if err != nil {
		return nil, err
	}
	out := []UnitFile{}
	for _, u := range units {
		if !u.Submitted {
			continue
		}
		r := UnitFile{Name: u.Name, Hash: u.Hash, DesiredState: u.DesiredState, State: u.State, Target: []string{}}
		for _, p := range u.Placements {
			r.Target = append(r.Target, p.Machine)
		}
		out = append(out, r)
	}
	return out, nil
}

// MachineLog is a unit's last log lines as one machine read them (Error: why it could not).
type MachineLog struct {
	Machine string   `json:"machine"`
	Lines   []string `json:"lines"`
	Error   string   `json:"error,omitempty"`
}

// UnitDetail is kiln ctl status: the unit's status and the last log lines of each machine it
// is placed on.
type UnitDetail struct {
	UnitStatus
	Logs []MachineLog `json:"logs,omitempty"`
}

// journalTimeout bounds each machine's answer to a status's log request, so that one machine
// that is down does not hold the others' lines.
const journalTimeout = 3 * time.Second

// Unit returns one unit's status (submit.ErrNotFound when there is no such unit) with the last
// lines log lines of every machine it is placed on (none when lines is 0).
func (c *Client) Unit(ctx context.Context, name string, lines int) (*UnitDetail, error) {
	u, err := c.find(ctx, name)
	if err != nil {
		return nil, err
	}
	d := &UnitDetail{UnitStatus: *u}
	if lines <= 0 {
		return d, nil
	}
	for _, p := range u.Placements {
		jctx, cancel := context.WithTimeout(ctx, journalTimeout)
		l, err := journal.Ask(jctx, c.etcd, p.Machine, u.Name, lines)
		cancel()
		ml := MachineLog{Machine: p.Machine, Lines: l}
		if err != nil {
			ml.Error = err.Error()
		}
		d.Logs = append(d.Logs, ml)
	}
	return d, nil
}

func (c *Client) find(ctx context.Context, name string) (*UnitStatus, error) {
	name = unit.Normalize(name)
	units, err := statuses(ctx, c.etcd)
	if err != nil {
		return nil, err
	}
	for i := range units {
		if units[i].Name == name {
			return &units[i], nil
		}
	}
	return nil, fmt.Errorf("%s: %w", name, submit.ErrNotFound)
}

// Journal reads a unit's last lines of log on the machines it is placed on (only machine's,
// when given), through etcd: the unit's kiln-node reads systemd's journal and answers. It
// returns what every machine answered; the error joins those that did not.
func (c *Client) Journal(ctx context.Context, name, machine string, lines int) ([]MachineLog, error) {
	u, err := c.find(ctx, name)
	if err != nil {
		return nil, err
	}
	var out []MachineLog
	var errs []error
	for _, p := range u.Placements {
		if machine != "" && p.Machine != machine {
			continue
		}
		l, err := journal.Ask(ctx, c.etcd, p.Machine, u.Name, lines)
		ml := MachineLog{Machine: p.Machine, Lines: l}
		if err != nil {
			ml.Error = err.Error()
			errs = append(errs, err)
		}
		out = append(out, ml)
	}
	if len(out) == 0 {
		if machine == "" {
			return nil, fmt.Errorf("%w: %s runs on no machine", ErrNotPlaced, name)
		}
		return nil, fmt.Errorf("%w: %s on %s", ErrNotPlaced, name, machine)
	}
	return out, errors.Join(errs...)
}

// UnitText is kiln ctl cat: a submitted unit's file (an instance's is its template's), in its
// canonical text.
type UnitText struct {
	Name string    `json:"name"`
	Hash unit.Hash `json:"hash"`
	Text string    `json:"text"`
}

// Cat returns a submitted unit's file; submit.ErrNotFound when there is none.
func (c *Client) Cat(ctx context.Context, name string) (*UnitText, error) {
	rec, _, err := submit.Get(ctx, c.etcd, name)
	if err != nil {
		return nil, err
	}
	if rec == nil {
		return nil, fmt.Errorf("%s: %w", name, submit.ErrNotFound)
	}
	text, err := submit.FileText(ctx, c.etcd, rec.Hash)
	if err != nil {
		return nil, err
	}
	return &UnitText{Name: rec.Name, Hash: rec.Hash, Text: string(text)}, nil
}
