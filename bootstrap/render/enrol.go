package render

import (
	"strings"
)

// EnrolOptions make configs for a channel that anyone may read, such as the network boot path:
// the node's private keys and their certificates are left out, and a oneshot unit
// (EnrolUnit) makes the keys on the machine and has them signed by the boot server before etcd
// and kiln-node start.
type EnrolOptions struct {
	// URL is the boot server's base URL (http://10.0.0.1:8080). Empty: kiln-node enrol takes
	// the server from ignition.config.url on the kernel command line, the server that served
	// the config.
	URL string
}

// The enrolment's unit, and the drop-in that makes etcd and kiln-node wait for it.
const (
	EnrolUnit   = "kiln-enrol.service"
	enrolDropin = "10-kiln-enrol.conf"
	// EtcdPKIDir holds an etcd member's peer and server certificates and keys.
	EtcdPKIDir = PKIDir + "/etcd"
)

// enrolUnit is the oneshot unit that runs kiln-node enrol on the node. It is ordered before,
// and required by, the units that need the keys (the drop-in of enrolDropin on each).
func (c *cluster) enrolUnit(member bool, kilnNode string) unit {
	// No time limit: the units that need the keys wait until the operator or the policy decides.
	args := []string{kilnNode, "enrol", "--config", NodeConfigPath, "--timeout", "0"}
	if member {
		args = append(args, "--etcd-dir", EtcdPKIDir)
	}
	if c.enrol.URL != "" {
		args = append(args, "--server", c.enrol.URL)
	}
	body := `[Unit]
Description=Make this node's keys and have the boot server sign its certificates (kiln)
Wants=network-online.target
After=network-online.target
Before=kiln-etcd.service kiln-node.service

[Service]
Type=oneshot
RemainAfterExit=yes
TimeoutStartSec=infinity
ExecStart=` + strings.Join(args, " ") + `
Restart=on-failure
RestartSec=30s
`
	return unit{Name: EnrolUnit, Contents: body}
}

// enrolDropins makes the units that use the node's keys require the enrolment.
func enrolDropins() []dropin {
	return []dropin{{Name: enrolDropin, Contents: "[Unit]\nRequires=" + EnrolUnit + "\nAfter=" + EnrolUnit + "\n"}}
}
