package render

import (
	"bytes"
	"strings"
	"testing"
)

// TestEnrolLeavesKeysOut: with EnrolOptions no node config carries a private key or a node
// certificate, every node gets kiln-enrol.service (members with --etcd-dir) and the units that
// use the keys require it; spliced and whole translations still agree. Without it, the keys are
// there as before (user-data, Vagrant and ISOs keep them).
func TestEnrolLeavesKeysOut(t *testing.T) {
	s := loadSpec(t, "../../configs/examples/demo.yaml")
	b := testPKI(t, s)
	for _, url := range []string{"", "http://10.0.0.1:8080"} {
		opt := Options{Enrol: &EnrolOptions{URL: url}}
		fast, rep, err := Render(s, b, opt)
		if err != nil {
			t.Fatalf("%v\n%s", err, rep.Error())
		}
		opt.Slow = true
		slow, _, err := Render(s, b, opt)
		if err != nil {
			t.Fatal(err)
		}
		for i, n := range fast {
			if !bytes.Equal(n.Ignition, slow[i].Ignition) {
				t.Errorf("%s: spliced and whole configs differ", n.Name)
			}
			bu := string(n.Butane)
			for _, bad := range []string{"PRIVATE KEY", "path: " + PKIDir + "/client.key", "path: " + EtcdPKIDir + "/peer.key",
				"path: " + EtcdPKIDir + "/server.key", "path: " + PKIDir + "/client.crt"} {
				if strings.Contains(bu, bad) {
					t.Errorf("%s: config.bu holds %q", n.Name, bad)
				}
			}
			if !strings.Contains(bu, "name: "+EnrolUnit) || strings.Count(bu, "Requires="+EnrolUnit) < 1 {
				t.Errorf("%s: no enrolment unit required by kiln-node:\n%s", n.Name, bu)
			}
			member := s.IsMember(n.Name)
			if strings.Contains(bu, "--etcd-dir "+EtcdPKIDir) != member {
				t.Errorf("%s: member %v, but --etcd-dir in the unit: %v", n.Name, member, !member)
			}
			if strings.Contains(bu, "--server "+url) != (url != "") {
				t.Errorf("%s: --server %q not as given", n.Name, url)
			}
		}
	}
	plain, _, err := Render(s, b, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(plain[0].Butane), "PRIVATE KEY") || strings.Contains(string(plain[0].Butane), EnrolUnit) {
		t.Error("without EnrolOptions the keys are not in the config, or it enrols")
	}
}
