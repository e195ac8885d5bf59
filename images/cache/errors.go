package cache

import "errors"

// Errors a user reads.
var (
	// ErrNotCached: the cache holds no such image; `kiln images pull` fetches it.
	ErrNotCached = errors.New("not in the image cache")
	// ErrCorrupt: a compressed download does not decompress (truncated or damaged), or a
	// decompressed artifact's digest is not the published one.
	ErrCorrupt = errors.New("corrupt download")
	// ErrDownload: an artifact could not be downloaded, retries and resumes included.
	ErrDownload = errors.New("download failed")
	// ErrBadCache: verify found files of the cache that are not what was pulled.
	ErrBadCache = errors.New("the image cache does not verify")
)
