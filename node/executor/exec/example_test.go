package exec_test

import (
	"context"
	"fmt"
	"os"

	"github.com/kiln-cluster/kiln/node/executor/exec"
	"github.com/kiln-cluster/kiln/node/unit"
)

// The exec executor runs a template's instance as a child process; its state file says what
// runs (a test of several kiln-node processes reads DATA-DIR/exec this way).
func ExampleNew() {
	dir, _ := os.MkdirTemp("", "kiln-exec-example")
	defer os.RemoveAll(dir)
	ex, err := exec.New(exec.Config{Dir: dir, MachineID: "node1"})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	defer ex.Close(ctx)

	text := []byte("[Service]\nExecStart=/bin/sh -c 'echo %i on %m; exec sleep 1000'\nRestart=on-failure\n")
	u, _ := unit.Parse("my-app@.service", text)
	_ = ex.WriteFile("my-app@.service", u.Hash(), u.Bytes())
	_ = ex.Reload(ctx)
	if err := ex.Start(ctx, "my-app@1.service"); err != nil {
		fmt.Println(err)
		return
	}
	st, _ := ex.Status(ctx, []string{"my-app@1.service"})
	fmt.Println(st[0].LoadState, st[0].ActiveState, st[0].SubState)

	states, _ := exec.States(dir)
	fmt.Println("running:", states["my-app@1.service"].Running())

	_ = ex.Stop(ctx, "my-app@1.service")
	states, _ = exec.States(dir)
	fmt.Println("after stop:", states["my-app@1.service"].ActiveState, states["my-app@1.service"].Running())
	// Output:
	// loaded active running
	// running: true
	// after stop: inactive false
}
