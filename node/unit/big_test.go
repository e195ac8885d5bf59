package unit

import (
	"strings"
	"testing"
)

// Pathological inputs must stay linear: a line continued many times, many short lines, and a
// huge unknown key.
func TestParseLargeInputs(t *testing.T) {
	inputs := map[string]string{
		"long continuation": "[Service]\nExecStart=/bin/a" + strings.Repeat(" \\\nx", 200000) + "\n",
		"many lines":        "[Service]\n" + strings.Repeat("Environment=A=1\n", 50000),
		"many sections":     strings.Repeat("[S]\n", 100000),
		"huge unknown key":  "[X-Fleet]\n" + strings.Repeat("K", 500000) + "=1\n",
		"many bad lines":    "[X-Fleet]\n" + strings.Repeat("MachineMetdata=a\n", 20000),
	}
	for name, text := range inputs {
		t.Run(name, func(t *testing.T) {
			Parse("a.service", []byte(text))
		})
	}
}
