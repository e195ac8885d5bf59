package pxe

import (
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// NormalizeMAC returns mac in one spelling, lower-case and colon-separated (52:54:00:aa:bb:01),
// accepting colons, dashes, Cisco's dots or bare hex digits in either case; ok is false for
// anything that is not a 6-byte MAC.
func NormalizeMAC(mac string) (norm string, ok bool) {
	mac = strings.TrimSpace(mac)
	var hw net.HardwareAddr
	if len(mac) == 12 {
		b, err := hex.DecodeString(mac)
		if err != nil {
			return "", false
		}
		hw = b
	} else {
		var err error
		if hw, err = net.ParseMAC(mac); err != nil {
			return "", false
		}
	}
	if len(hw) != 6 {
		return "", false
	}
	return hw.String(), true
}

// hyphenMAC is the spelling kiln writes into URLs: 52-54-00-aa-bb-01 (no characters that URLs,
// kernel command lines or boot scripts treat specially).
func hyphenMAC(norm string) string { return strings.ReplaceAll(norm, ":", "-") }

// normalizeUUID lower-cases a UUID and drops braces; "" when it is not 32 hex digits with or
// without the usual dashes. iPXE sends ${uuid} lower-case with dashes.
func normalizeUUID(u string) string {
	u = strings.ToLower(strings.Trim(strings.TrimSpace(u), "{}"))
	digits := strings.ReplaceAll(u, "-", "")
	if len(digits) != 32 {
		return ""
	}
	if _, err := hex.DecodeString(digits); err != nil {
		return ""
	}
	return digits[0:8] + "-" + digits[8:12] + "-" + digits[12:16] + "-" + digits[16:20] + "-" + digits[20:]
}

// selector is what a machine says about itself in a query: its MAC, SMBIOS UUID and hostname.
type selector struct {
	mac, uuid, hostname string
	// badMAC is a mac parameter that is not a MAC address.
	badMAC string
}

func parseSelector(q url.Values) selector {
	var s selector
	if m := q.Get("mac"); m != "" {
		if n, ok := NormalizeMAC(m); ok {
			s.mac = n
		} else {
			s.badMAC = m
		}
	}
	s.uuid = normalizeUUID(q.Get("uuid"))
	s.hostname = strings.ToLower(strings.TrimSpace(q.Get("hostname")))
	return s
}

func (s selector) empty() bool { return s.mac == "" && s.uuid == "" && s.hostname == "" }

// String describes the selector for the body of a 404 and for logs.
func (s selector) String() string {
	var parts []string
	if s.mac != "" {
		parts = append(parts, "MAC "+s.mac)
	}
	if s.badMAC != "" {
		bad := s.badMAC
		if len(bad) > 40 {
			bad = bad[:40] + "..."
		}
		parts = append(parts, fmt.Sprintf("MAC %q (not a MAC address)", bad))
	}
	if s.uuid != "" {
		parts = append(parts, "UUID "+s.uuid)
	}
	if s.hostname != "" {
		parts = append(parts, "hostname "+s.hostname)
	}
	if len(parts) == 0 {
		return "no mac, uuid or hostname"
	}
	return strings.Join(parts, ", ")
}
