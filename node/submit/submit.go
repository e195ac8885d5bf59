// Package submit is how units enter the cluster: kiln ctl and kiln-node's first start submit
// unit files (stored once under the hash of their canonical text), set the state the operator
// wants (inactive, loaded, launched) and destroy units. Instances of a template share its file:
// my-app@.service is submitted once and my-app@1.service, my-app@2.service are started.
//
// Every write is a compare-and-swap on the key's absence or mod revision, so that two writers
// never overwrite each other: submitting the same file twice is a no-op, submitting other
// contents under a known name is an error.
package submit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sync/errgroup"

	"github.com/kiln-cluster/kiln/node/keys"
	"github.com/kiln-cluster/kiln/node/unit"
)

// KV is what the package needs of etcd (a *clientv3.Client has it).
type KV interface {
	Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error)
	Txn(ctx context.Context) clientv3.Txn
}

// parallel is how many units are written at once.
const parallel = 32

// File is a unit file to submit: its name and text.
type File struct {
	Name string
	Text []byte
}

// Result says what happened to one unit.
type Result struct {
	Unit string `json:"unit"`
	// Changed is false when the unit was already as asked (a no-op).
	Changed bool `json:"changed"`
	// State is the unit's desired state afterwards.
	State unit.State `json:"state"`
}

// Get reads a unit's record; nil when it was never submitted. A name without a type is a
// service's (unit.Normalize).
func Get(ctx context.Context, kv KV, name string) (*keys.Submitted, int64, error) {
	name = unit.Normalize(name)
	resp, err := kv.Get(ctx, keys.Unit(name))
	if err != nil {
		return nil, 0, err
	}
	if len(resp.Kvs) == 0 {
		return nil, 0, nil
	}
	var s keys.Submitted
	if err := json.Unmarshal(resp.Kvs[0].Value, &s); err != nil {
		return nil, 0, fmt.Errorf("%s: %w", keys.Unit(name), err)
	}
	return &s, resp.Kvs[0].ModRevision, nil
}

// List reads every submitted unit, sorted by name.
func List(ctx context.Context, kv KV) ([]keys.Submitted, error) {
	resp, err := kv.Get(ctx, keys.Units, clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	out := make([]keys.Submitted, 0, len(resp.Kvs))
	for _, kvp := range resp.Kvs {
		var s keys.Submitted
		if err := json.Unmarshal(kvp.Value, &s); err != nil {
			return nil, fmt.Errorf("%s: %w", kvp.Key, err)
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// FileText reads a unit file's canonical text by its hash.
func FileText(ctx context.Context, kv KV, h unit.Hash) ([]byte, error) {
	resp, err := kv.Get(ctx, keys.UnitFile(h.String()))
	if err != nil {
		return nil, err
	}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("%w: %s", ErrMissingFile, h)
	}
	return resp.Kvs[0].Value, nil
}

// Parse checks a file and returns its unit; a file given for an instance is refused unless it
// is its template's (fleet stored instances' files apart; kiln keeps one per template).
func Parse(f File) (*unit.Unit, error) {
	if len(f.Text) == 0 {
		return nil, fmt.Errorf("%s: %w", f.Name, ErrNoText)
	}
	if err := unit.CheckSize(f.Text); err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name, err)
	}
	u, err := unit.Parse(f.Name, f.Text)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name, err)
	}
	return u, nil
}

// Submit stores the files and records their units as inactive (a unit already known with the
// same contents keeps its state). A file named after an instance ("my-app@1.service") is
// stored as its template's file and records the instance. No file is written when any of them
// is invalid.
func Submit(ctx context.Context, kv KV, files []File) ([]Result, error) {
	units := make([]*unit.Unit, len(files))
	var errs []error
	for i, f := range files {
		u, err := Parse(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		units[i] = u
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	results := make([]Result, len(files))
	err := each(ctx, len(files), func(ctx context.Context, i int) error {
		r, err := create(ctx, kv, units[i], unit.StateInactive, false)
		results[i] = r
		return err
	})
	return results, err
}

// Ensure submits a unit file and gives it the state when the unit is new; a unit that exists
// with the same contents is left as it is (its state included). kiln-node's first start uses
// it: whoever comes first writes, the others change nothing.
func Ensure(ctx context.Context, kv KV, u *unit.Unit, state unit.State) (Result, error) {
	return create(ctx, kv, u, state, false)
}

// create writes u's file (if absent) and its record (if absent) with state; when the record
// exists with the same hash, it is a no-op unless setState, which then moves it to state.
func create(ctx context.Context, kv KV, u *unit.Unit, state unit.State, setState bool) (Result, error) {
	name := u.Name
	if u.ParseName().IsTemplate() && state.Scheduled() {
		return Result{Unit: name}, fmt.Errorf("%s: %w", name, ErrTemplateState)
	}
	h := u.Hash()
	fileKey := keys.UnitFile(h.String())
	rec := keys.Submitted{Name: name, Hash: h, DesiredState: state}
	val, _ := json.Marshal(rec)
	for range 5 {
		resp, err := kv.Txn(ctx).
			If(clientv3.Compare(clientv3.Version(keys.Unit(name)), "=", 0)).
			Then(
				clientv3.OpTxn([]clientv3.Cmp{clientv3.Compare(clientv3.Version(fileKey), "=", 0)},
					[]clientv3.Op{clientv3.OpPut(fileKey, string(u.Bytes()))}, nil),
				clientv3.OpPut(keys.Unit(name), string(val))).
			Else(clientv3.OpGet(keys.Unit(name))).Commit()
		if err != nil {
			return Result{Unit: name}, err
		}
		if resp.Succeeded {
			return Result{Unit: name, Changed: true, State: state}, nil
		}
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 0 {
			continue // destroyed meanwhile
		}
		var cur keys.Submitted
		if err := json.Unmarshal(kvs[0].Value, &cur); err != nil {
			return Result{Unit: name}, fmt.Errorf("%s: %w", keys.Unit(name), err)
		}
		if cur.Hash != h {
			return Result{Unit: name, State: cur.DesiredState}, fmt.Errorf("%s: %w", name, ErrChanged)
		}
		if !setState || cur.DesiredState == state {
			return Result{Unit: name, State: cur.DesiredState}, nil
		}
		ok, err := casState(ctx, kv, cur, kvs[0].ModRevision, state)
		if err != nil {
			return Result{Unit: name}, err
		}
		if ok {
			return Result{Unit: name, Changed: true, State: state}, nil
		}
	}
	return Result{Unit: name}, fmt.Errorf("%s: %w", name, ErrRaced)
}

func casState(ctx context.Context, kv KV, cur keys.Submitted, rev int64, state unit.State) (bool, error) {
	cur.DesiredState = state
	val, _ := json.Marshal(cur)
	resp, err := kv.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(keys.Unit(cur.Name)), "=", rev)).
		Then(clientv3.OpPut(keys.Unit(cur.Name), string(val))).Commit()
	if err != nil {
		return false, err
	}
	return resp.Succeeded, nil
}

// SetState moves units to a desired state. A unit given with a file (Text) is submitted first;
// one given by name alone must be known, or be an instance of a known template (it is then
// recorded with the template's file).
func SetState(ctx context.Context, kv KV, files []File, state unit.State) ([]Result, error) {
	if !state.Valid() {
		return nil, unit.ErrState
	}
	results := make([]Result, len(files))
	err := each(ctx, len(files), func(ctx context.Context, i int) error {
		f := files[i]
		var u *unit.Unit
		var err error
		if len(f.Text) > 0 {
			u, err = Parse(f)
		} else {
			u, err = known(ctx, kv, f.Name)
		}
		if err == nil {
			results[i], err = create(ctx, kv, u, state, true)
		}
		results[i].Unit = f.Name
		return err
	})
	return results, err
}

// known gives the unit of a submitted name, or of an instance of a submitted template.
func known(ctx context.Context, kv KV, name string) (*unit.Unit, error) {
	name = unit.Normalize(name)
	n, err := unit.ParseName(name)
	if err != nil {
		return nil, err
	}
	for _, candidate := range []string{name, n.Template()} {
		if candidate == "" || (candidate != name && !n.IsInstance()) {
			continue
		}
		rec, _, err := Get(ctx, kv, candidate)
		if err != nil {
			return nil, err
		}
		if rec == nil {
			continue
		}
		text, err := FileText(ctx, kv, rec.Hash)
		if err != nil {
			return nil, err
		}
		u, err := unit.Parse(candidate, text)
		if err != nil {
			return nil, fmt.Errorf("%s: stored file: %w", candidate, err)
		}
		if candidate != name {
			return u.Instantiate(n.Instance)
		}
		return u, nil
	}
	return nil, fmt.Errorf("%s: %w", name, ErrNotFound)
}

// Destroy removes units from the cluster: the engine takes them off their machines. Their
// files stay (content-addressed, shared by instances). Unknown names are errors.
func Destroy(ctx context.Context, kv KV, names []string) ([]Result, error) {
	results := make([]Result, len(names))
	err := each(ctx, len(names), func(ctx context.Context, i int) error {
		name := unit.Normalize(names[i])
		results[i] = Result{Unit: name, State: unit.StateInactive}
		resp, err := kv.Txn(ctx).If(clientv3.Compare(clientv3.Version(keys.Unit(name)), ">", 0)).
			Then(clientv3.OpDelete(keys.Unit(name))).Commit()
		if err != nil {
			return err
		}
		if !resp.Succeeded {
			return fmt.Errorf("%s: %w", name, ErrNotFound)
		}
		results[i].Changed = true
		return nil
	})
	return results, err
}

// each runs f for 0..n-1, a few at a time, and joins every error (it does not stop at the
// first: the other units are still worth writing).
func each(ctx context.Context, n int, f func(ctx context.Context, i int) error) error {
	var g errgroup.Group
	g.SetLimit(parallel)
	var mu sync.Mutex
	var errs []error
	for i := range n {
		g.Go(func() error {
			if err := f(ctx, i); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
			return nil
		})
	}
	_ = g.Wait()
	sort.Slice(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
	return errors.Join(errs...)
}

// IsUserError tells whether err comes from the user's input rather than from etcd.
func IsUserError(err error) bool {
	for _, s := range []error{ErrNotFound, ErrChanged, ErrTemplateState, ErrNoText,
		ErrManifest, unit.ErrState, unit.ErrName} {
		if errors.Is(err, s) {
			return true
		}
	}
	var ue unit.Errors
	var e *unit.Error
	return errors.As(err, &ue) || errors.As(err, &e)
}
