package render

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-cluster/kiln/bootstrap/pki"
	"github.com/kiln-cluster/kiln/bootstrap/spec"
)

// bigSpec writes a spec of n nodes (three etcd members, the demo's units and snippet).
func bigSpec(b *testing.B, n int) (*spec.Spec, *pki.Bundle) {
	b.Helper()
	dir := b.TempDir()
	ex, _ := filepath.Abs("../../configs/examples")
	var sb strings.Builder
	fmt.Fprintf(&sb, `cluster:
  name: big
  sshAuthorizedKeys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOIy/TQoSlTXSeqM+uMkSEbQyxlIgk+Abpz+XTlObolq test@kiln"]
  updates: {strategy: etcd-lock, maxConcurrent: 10, window: {start: "Sun 04:00", length: 2h}}
  runtime: {engine: docker, mirrors: {docker.io: ["https://mirror.example.com"]}}
  network: {gateway: 10.0.0.1, dns: [10.0.0.1]}
  kilnNode: {url: "http://10.0.0.1/kiln-node", sha512: "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"}
  units:
    - {file: %[1]s/units/my-app@.service, instances: 2}
    - {file: %[1]s/units/node-exporter.service}
snippets: [%[1]s/snippets/motd.bu]
nodes:
`, ex)
	for i := range n {
		fmt.Fprintf(&sb, "  - {name: node%d, mac: \"52:54:00:00:%02x:%02x\", ip: 10.0.%d.%d/16, metadata: {rack: r%d}}\n", i, i/256, i%256, i/250, i%250+2, i%10)
	}
	path := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	s := loadSpec(b, path)
	bundle, err := pki.Ensure(filepath.Join(dir, "pki"), s.Cluster.Name, PKINodes(s), time.Now())
	if err != nil {
		b.Fatal(err)
	}
	return s, bundle
}

// BenchmarkRender1000 renders a 1,000-node spec the way `kiln render` does.
func BenchmarkRender1000(b *testing.B) {
	s, bundle := bigSpec(b, 1000)
	b.ResetTimer()
	for b.Loop() {
		nodes, _, err := Render(s, bundle, Options{})
		if err != nil {
			b.Fatal(err)
		}
		if st := Count(nodes); st.Spliced != len(nodes) {
			b.Fatalf("the figure is not the fast path's: %+v", st)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1000, "ns/node")
}

// BenchmarkTranslateEach1000 is the peer: each node's whole Butane config translated one by one.
func BenchmarkTranslateEach1000(b *testing.B) {
	s, bundle := bigSpec(b, 1000)
	b.ResetTimer()
	for b.Loop() {
		if _, _, err := Render(s, bundle, Options{Slow: true, Workers: 1}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1000, "ns/node")
}
