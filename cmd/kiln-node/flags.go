package main

import (
	"encoding/csv"
	"fmt"
	"strings"
)

// listFlag is a comma-separated list flag; it may be given again to add to the list (as
// pflag's StringSlice, which kiln-node used before).
type listFlag struct {
	v   *[]string
	set bool
}

func (l *listFlag) String() string {
	if l.v == nil {
		return ""
	}
	return strings.Join(*l.v, ",")
}

func (l *listFlag) Set(s string) error {
	vals, err := csvFields(s)
	if err != nil {
		return err
	}
	if !l.set {
		*l.v, l.set = nil, true
	}
	*l.v = append(*l.v, vals...)
	return nil
}

// mapFlag is a flag of k=v pairs, comma-separated; it may be given again to add pairs.
type mapFlag struct {
	m   *map[string]string
	set bool
}

func (f *mapFlag) String() string {
	if f.m == nil || len(*f.m) == 0 {
		return ""
	}
	var pairs []string
	for k, v := range *f.m {
		pairs = append(pairs, k+"="+v)
	}
	return strings.Join(pairs, ",")
}

func (f *mapFlag) Set(s string) error {
	pairs, err := csvFields(s)
	if err != nil {
		return err
	}
	if !f.set || *f.m == nil {
		*f.m, f.set = map[string]string{}, true
	}
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok {
			return fmt.Errorf("%q: want key=value", p)
		}
		(*f.m)[k] = v
	}
	return nil
}

// csvFields splits a flag's value at commas, with CSV's quotes for values that hold one.
func csvFields(s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	return csv.NewReader(strings.NewReader(s)).Read()
}
