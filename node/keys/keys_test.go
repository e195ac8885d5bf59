package keys

import "testing"

func TestSemaphoreKeys(t *testing.T) {
	cases := []struct{ group, key, back string }{
		{"", "coreos.com/updateengine/rebootlock/semaphore", "default"},
		{"default", "coreos.com/updateengine/rebootlock/semaphore", "default"},
		{"workers", "coreos.com/updateengine/rebootlock/groups/workers/semaphore", "workers"},
		{"a b/c", "coreos.com/updateengine/rebootlock/groups/a+b%2Fc/semaphore", "a b/c"},
	}
	for _, tc := range cases {
		t.Run(tc.group, func(t *testing.T) {
			if got := Semaphore(tc.group); got != tc.key {
				t.Fatalf("Semaphore(%q) = %s, want %s", tc.group, got, tc.key)
			}
			if g, ok := SemaphoreGroup(tc.key); !ok || g != tc.back {
				t.Fatalf("SemaphoreGroup(%s) = %q %v, want %q", tc.key, g, ok, tc.back)
			}
		})
	}
	for _, k := range []string{"coreos.com/updateengine/rebootlock/groups/x/y/semaphore", "coreos.com/updateengine/rebootlock/other", Machine("m")} {
		if _, ok := SemaphoreGroup(k); ok {
			t.Errorf("%s taken for a semaphore key", k)
		}
	}
	if Machine("m1") != "/kiln/machines/m1" || RebootRequest("m1") != "/kiln/reboot/m1" || LockInfo("", "m1") != "/kiln/locks/default/m1" {
		t.Fatal("kiln key layout changed")
	}
}
