// dbusprobe talks to systemd over the system D-Bus with go-systemd, as kiln-node's systemd
// executor does. systemdtest's integration test builds it static and runs it inside a machine.
//
//	dbusprobe list         one line per loaded unit: NAME LOAD ACTIVE SUB
//	dbusprobe start UNIT   daemon-reload, start UNIT, print "UNIT JOB-RESULT ACTIVE-STATE"
//	dbusprobe stop UNIT    stop UNIT, print "UNIT JOB-RESULT ACTIVE-STATE"
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/coreos/go-systemd/v22/dbus"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "dbusprobe:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: dbusprobe list | start UNIT | stop UNIT")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := dbus.NewSystemConnectionContext(ctx)
	if err != nil {
		return fmt.Errorf("connect to the system bus: %w", err)
	}
	defer conn.Close()

	switch {
	case args[0] == "list" && len(args) == 1:
		units, err := conn.ListUnitsContext(ctx)
		if err != nil {
			return err
		}
		sort.Slice(units, func(i, j int) bool { return units[i].Name < units[j].Name })
		for _, u := range units {
			fmt.Println(u.Name, u.LoadState, u.ActiveState, u.SubState)
		}
		return nil
	case (args[0] == "start" || args[0] == "stop") && len(args) == 2:
		unit := args[1]
		done := make(chan string, 1)
		if args[0] == "start" {
			if err := conn.ReloadContext(ctx); err != nil {
				return fmt.Errorf("daemon-reload: %w", err)
			}
			_, err = conn.StartUnitContext(ctx, unit, "replace", done)
		} else {
			_, err = conn.StopUnitContext(ctx, unit, "replace", done)
		}
		if err != nil {
			return fmt.Errorf("%s %s: %w", args[0], unit, err)
		}
		var result string
		select {
		case result = <-done:
		case <-ctx.Done():
			return fmt.Errorf("%s %s: %w", args[0], unit, ctx.Err())
		}
		state, err := conn.GetUnitPropertyContext(ctx, unit, "ActiveState")
		if err != nil {
			return err
		}
		fmt.Println(unit, result, state.Value.Value())
		return nil
	}
	return fmt.Errorf("unknown command %q", args)
}
