// Package keys is kiln's layout of keys in etcd, shared by kiln-node, its scheduler and kiln ctl.
//
//	/kiln/machines/<machine-id>                        registry entry (JSON), under the machine's lease
//	/kiln/reboot/<machine-id>                          a reboot asked for by kiln ctl reboot (JSON)
//	/kiln/locks/<group>/<machine-id>                   when a holder took its reboot slot (JSON)
//	coreos.com/updateengine/rebootlock/semaphore       locksmith's semaphore (group "default")
//	coreos.com/updateengine/rebootlock/groups/<g>/semaphore   locksmith's per-group semaphore
//
// The semaphore keys and their JSON are locksmith's, for continuity: an operator who knows
// locksmith finds the lock where and as it was. They are not wire compatibility: locksmith
// speaks only etcd's v2 API, which etcd 3.6 no longer serves, and kiln uses v3, so locksmith's
// tools cannot read kiln's value (nor kiln theirs). Everything else lives under Prefix.
package keys

import (
	"net/url"
	"strings"
)

// Prefix is the root of kiln's own keys.
const Prefix = "/kiln/"

// Machines is the prefix of the machine registry.
const Machines = Prefix + "machines/"

// Machine is the registry key of a machine.
func Machine(id string) string { return Machines + id }

// RebootRequests is the prefix of the reboots asked for by kiln ctl reboot.
const RebootRequests = Prefix + "reboot/"

// RebootRequest is the key that asks machine id to reboot.
func RebootRequest(id string) string { return RebootRequests + id }

// LockInfos is the prefix of the holders' details (since when they hold a slot).
const LockInfos = Prefix + "locks/"

// LockInfo is the key with the details of holder id of group's semaphore.
func LockInfo(group, id string) string {
	return LockInfos + url.PathEscape(GroupName(group)) + "/" + id
}

// SemaphorePrefix is the prefix of every locksmith semaphore.
const SemaphorePrefix = "coreos.com/updateengine/rebootlock/"

// DefaultGroup is the group of machines that name none; its semaphore is locksmith's
// group-less key.
const DefaultGroup = "default"

const (
	semaphoreKey = SemaphorePrefix + "semaphore"
	groupsPrefix = SemaphorePrefix + "groups/"
)

// GroupName returns the group's canonical name: "" becomes DefaultGroup.
func GroupName(group string) string {
	if group == "" {
		return DefaultGroup
	}
	return group
}

// Semaphore is the key of the group's semaphore: locksmith's group-less key for the default
// group, coreos.com/updateengine/rebootlock/groups/<url.QueryEscape(group)>/semaphore otherwise.
func Semaphore(group string) string {
	group = GroupName(group)
	if group == DefaultGroup {
		return semaphoreKey
	}
	return groupsPrefix + url.QueryEscape(group) + "/semaphore"
}

// SemaphoreGroup is the inverse of Semaphore: the group whose semaphore is at key, and whether
// key is a semaphore key at all.
func SemaphoreGroup(key string) (string, bool) {
	if key == semaphoreKey {
		return DefaultGroup, true
	}
	rest, ok := strings.CutPrefix(key, groupsPrefix)
	if !ok {
		return "", false
	}
	esc, ok := strings.CutSuffix(rest, "/semaphore")
	if !ok || strings.Contains(esc, "/") {
		return "", false
	}
	g, err := url.QueryUnescape(esc)
	if err != nil {
		return "", false
	}
	return g, true
}
