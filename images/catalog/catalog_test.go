package catalog_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/coreos/butane/config"
	"github.com/coreos/butane/config/common"

	"github.com/kiln-cluster/kiln/images/catalog"
)

// Every entry is complete, and its Butane variant and version translate to the Ignition
// version it claims.
func TestEntries(t *testing.T) {
	for _, o := range catalog.All() {
		t.Run(o.Name, func(t *testing.T) {
			if !o.HasChannel(o.DefaultChannel) {
				t.Errorf("default channel %q not among %v", o.DefaultChannel, o.Channels)
			}
			for name, v := range map[string]string{"FwCfgName": o.FwCfgName, "BinDir": o.BinDir, "Agent": o.Updates.Agent,
				"ConfigPath": o.Updates.ConfigPath, "Network.Path": o.Network.Path, "Box": o.Vagrant.Box, "Feed.URL": o.Feed.URL} {
				if v == "" {
					t.Errorf("%s is empty", name)
				}
			}
			bu := fmt.Sprintf("variant: %s\nversion: %s\n", o.ButaneVariant, o.ButaneVersion)
			ign, _, err := config.TranslateBytes([]byte(bu), common.TranslateBytesOptions{})
			if err != nil {
				t.Fatalf("butane %s %s: %v", o.ButaneVariant, o.ButaneVersion, err)
			}
			var head struct {
				Ignition struct{ Version string } `json:"ignition"`
			}
			if err := json.Unmarshal(ign, &head); err != nil || head.Ignition.Version != o.IgnitionVersion {
				t.Errorf("ignition version %q (%v), catalog says %q", head.Ignition.Version, err, o.IgnitionVersion)
			}
			pxe, err := o.Platform("pxe")
			if err != nil {
				t.Fatal(err)
			}
			for _, role := range []string{catalog.Kernel, catalog.Initramfs} {
				if _, ok := pxe.Artifact(role); !ok {
					t.Errorf("pxe has no %s", role)
				}
			}
			for pn, p := range o.Platforms {
				for _, a := range p.Artifacts {
					if a.Name == "" || (a.Remote == "" && a.StreamArtifact == "") {
						t.Errorf("platform %s: artifact %+v has no name or no source", pn, a)
					}
				}
			}
		})
	}
}

func TestLookups(t *testing.T) {
	if _, err := catalog.Get("windows"); !errors.Is(err, catalog.ErrUnknownOS) {
		t.Errorf("Get(windows): %v", err)
	}
	if catalog.Of("windows") != catalog.Default {
		t.Error("Of(unknown) is not the default")
	}
	fl, _ := catalog.Get("flatcar")
	if err := fl.Channel("next"); !errors.Is(err, catalog.ErrUnknownChannel) {
		t.Errorf("flatcar channel next: %v", err)
	}
	if _, err := fl.Platform("aws"); !errors.Is(err, catalog.ErrUnknownPlatform) {
		t.Errorf("flatcar platform aws: %v", err)
	}
	for _, tc := range []struct{ name, mirror, want string }{
		{"flatcar", "", "https://beta.release.flatcar-linux.net/amd64-usr"},
		{"flatcar", "http://mirror.lan/flatcar/", "http://mirror.lan/flatcar/beta/amd64-usr"},
		{"fcos", "", "https://builds.coreos.fedoraproject.org"},
		{"fcos", "http://mirror.lan/fcos", "http://mirror.lan/fcos"},
	} {
		if got := catalog.Of(tc.name).FeedURL("beta", tc.mirror); got != tc.want {
			t.Errorf("%s FeedURL(beta, %q) = %q, want %q", tc.name, tc.mirror, got, tc.want)
		}
	}
}
