package feed

import "errors"

// Errors a user reads.
var (
	// ErrFeed: the release feed could not be read or made no sense.
	ErrFeed = errors.New("release feed")
	// ErrNotPublished: the feed names no such platform, artifact or version.
	ErrNotPublished = errors.New("not published by the feed")
	// ErrChecksum: a download's digest is not the published one.
	ErrChecksum = errors.New("checksum mismatch")
	// ErrSignature: a download's OpenPGP signature is missing, malformed or not made by a key of
	// the keyring.
	ErrSignature = errors.New("bad signature")
	// ErrNoKeys: kiln embeds no signing key for the OS and no --keyring was given.
	ErrNoKeys = errors.New("no signing keys")
)
