// Package exitcode is the exit-code contract of kiln and kiln-node: 0 ok, 1 the user's error
// (bad flags, arguments, files or settings), 2 anything else.
package exitcode

import "errors"

// The exit codes.
const (
	OK       = 0
	User     = 1
	Internal = 2
)

// userError marks an error caused by the user's input.
type userError struct{ err error }

func (e userError) Error() string { return e.err.Error() }
func (e userError) Unwrap() error { return e.err }

// UserErr marks err as the user's (exit code 1), keeping its text and chain; nil stays nil.
func UserErr(err error) error {
	if err == nil {
		return nil
	}
	return userError{err}
}

// Of is the exit code of err: OK for nil, User when err holds one marked by UserErr or one of
// user (errors.Is), Internal otherwise.
func Of(err error, user ...error) int {
	if err == nil {
		return OK
	}
	var ue userError
	if errors.As(err, &ue) {
		return User
	}
	for _, u := range user {
		if errors.Is(err, u) {
			return User
		}
	}
	return Internal
}
