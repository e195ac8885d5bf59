package keys

import (
	"github.com/kiln-cluster/kiln/node/unit"
)

// More of the scheduler's keys (see units.go for the rest):
//
//	/kiln/unplaced/<unit-name>                     why the engine could not place a unit (JSON Unplaced)
//	/kiln/journal/requests/<machine-id>/<id>       kiln ctl journal asks a machine for a unit's lines
//	                                               (JSON JournalRequest, under a short lease)
//	/kiln/journal/replies/<id>                     the machine's answer (JSON JournalReply, same lease)
const (
	Unplaced        = Prefix + "unplaced/"
	JournalRequests = Prefix + "journal/requests/"
	JournalReplies  = Prefix + "journal/replies/"
)

// UnplacedUnit is the key of the reason a unit has no machine.
func UnplacedUnit(name string) string { return Unplaced + name }

// MachineJournalRequests is the prefix of the journal requests a machine answers.
func MachineJournalRequests(machine string) string { return JournalRequests + machine + "/" }

// JournalRequest is the key of one journal request to a machine.
func JournalRequest(machine, id string) string { return MachineJournalRequests(machine) + id }

// JournalReply is the key of the answer to request id.
func JournalReply(id string) string { return JournalReplies + id }

// Submitted is the value at Unit(name): a unit the operator submitted and the state they want
// it in. kiln ctl (and kiln-node's first start) write it; the engine reads it. A template
// ("my-app@.service") is submitted once, always inactive; its instances ("my-app@1.service")
// get their own Submitted with the template's hash.
type Submitted struct {
	Name string `json:"name"`
	// Hash names the unit file's text at UnitFile(Hash) (the template's for an instance).
	Hash unit.Hash `json:"hash"`
	// DesiredState is inactive (known, placed nowhere), loaded or launched.
	DesiredState unit.State `json:"desiredState"`
}

// UnplacedReason is the value at UnplacedUnit(name), written by the engine (only when it
// changes) for a loaded or launched unit that fits on no machine, and deleted once it has one.
type UnplacedReason struct {
	Unit   string `json:"unit"`
	Reason string `json:"reason"`
}

// JournalRequestValue is the value at JournalRequest(machine, id): the agent of machine answers
// with the last Lines lines of Unit's log at JournalReply(id), under the request's lease.
type JournalRequestValue struct {
	Unit  string `json:"unit"`
	Lines int    `json:"lines"`
}

// JournalReplyValue is the value at JournalReply(id).
type JournalReplyValue struct {
	Machine string   `json:"machine"`
	Unit    string   `json:"unit"`
	Lines   []string `json:"lines"`
	// Error is set when the agent could not read the log (the unit is not on the machine...).
	Error string `json:"error,omitempty"`
}
