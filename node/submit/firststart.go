package submit

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"github.com/kiln-cluster/kiln/internal/atomicfile"
)

// FirstStart submits the generator's units from dir (its config.ManifestName and unit files) once per
// content: stateFile remembers the digest of what was submitted, so that a restart changes
// nothing and an operator's later kiln ctl stop is not undone. New units get the manifest's
// state; units that exist are left alone, so every machine may run it and the first wins.
// It retries (with backoff) until etcd answers or ctx ends; a bad manifest or unit file is
// logged and given up on, not retried.
func FirstStart(ctx context.Context, kv KV, dir, stateFile string, log *slog.Logger) error {
	plan, digest, err := ReadDir(dir)
	if err != nil {
		log.Error("units not submitted", "dir", dir, "err", err)
		return nil
	}
	if len(plan) == 0 {
		return nil
	}
	if prev, err := os.ReadFile(stateFile); err == nil && strings.TrimSpace(string(prev)) == digest {
		return nil
	}
	backoff := 500 * time.Millisecond
	for {
		results, err := EnsureAll(ctx, kv, plan)
		if err == nil {
			n := 0
			for _, r := range results {
				if r.Changed {
					n++
				}
			}
			log.Info("units submitted", "dir", dir, "units", len(plan), "new", n)
			if err := atomicfile.Write(stateFile, []byte(digest+"\n"), 0o600); err != nil {
				log.Warn("units submitted, state not saved", "file", stateFile, "err", err)
			}
			return nil
		}
		if IsUserError(err) {
			log.Error("units not submitted", "dir", dir, "err", err)
			return nil
		}
		log.Warn("submitting units, will retry", "dir", dir, "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff + time.Duration(rand.Int64N(int64(backoff)))):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}
