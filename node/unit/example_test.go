package unit_test

import (
	"errors"
	"fmt"

	"github.com/kiln-cluster/kiln/node/unit"
)

func ExampleParse() {
	text := `[Unit]
Description=My app %i

[Service]
ExecStart=/usr/bin/app --id %i

[X-Fleet]
Conflicts=my-app@*.service
MachineMetadata="region=east" "disk=ssd"
`
	tmpl, err := unit.Parse("my-app@.service", []byte(text))
	if err != nil {
		panic(err)
	}
	one, _ := tmpl.Instantiate("1")
	fmt.Println(one.Name, one.Fleet.Conflicts, one.Fleet.Metadata)
	fmt.Println(one.Fleet.ConflictsWith("my-app@2.service"))
	fmt.Println(one.Hash() == tmpl.Hash())
	// Output:
	// my-app@1.service [my-app@*.service] disk=ssd region=east
	// true
	// true
}

func ExampleParse_errors() {
	_, err := unit.Parse("web.service", []byte("[Service]\nExecStart=/bin/web\n\n[X-Fleet]\nMachineMetdata=region=east\nGlobal=sometimes\n"))
	var list unit.Errors
	if errors.As(err, &list) {
		for _, e := range list {
			fmt.Printf("units/web.service:%d:%d: %s\n", e.Line, e.Column, e.Message())
		}
	}
	fmt.Println(errors.Is(err, unit.ErrUnknownKey))
	// Output:
	// units/web.service:5:1: unknown key in [X-Fleet]: "MachineMetdata": did you mean MachineMetadata?
	// units/web.service:6:8: invalid boolean: Global=sometimes: expected true or false
	// true
}
