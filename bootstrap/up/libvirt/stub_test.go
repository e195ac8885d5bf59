//go:build !(cgo && libvirt_dlopen)

package libvirt

import (
	"context"
	"errors"
	"testing"
)

// TestStub: a kiln built without cgo or the libvirt_dlopen tag says how to get the driver.
func TestStub(t *testing.T) {
	if err := New().Up(context.Background(), nil, nil); !errors.Is(err, ErrNotBuilt) {
		t.Fatalf("%v, want ErrNotBuilt", err)
	}
}
