package feed

// StreamRelease exposes streamRelease to the tests.
var StreamRelease = streamRelease
