package up

import "errors"

var (
	// ErrNoState: kiln up made nothing in this state folder.
	ErrNoState = errors.New("no cluster made by kiln up")
	// ErrTimeout: the cluster was not up (etcd healthy, every kiln-node registered) in time.
	ErrTimeout = errors.New("cluster not up in time")
	// ErrConfig: a driver's flags or options are wrong (a bad value, a missing one, an object
	// they name that does not exist): the user's error, for which kiln exits 1. Drivers mark
	// such errors with ConfigError; errors.Is(err, ErrConfig) finds them.
	ErrConfig = errors.New("bad driver configuration")
)

// ConfigError marks err as a driver configuration error (errors.Is(err, ErrConfig)) and keeps
// its text and its chain; nil stays nil.
func ConfigError(err error) error {
	if err == nil {
		return nil
	}
	return configError{err}
}

type configError struct{ err error }

func (e configError) Error() string        { return e.err.Error() }
func (e configError) Unwrap() error        { return e.err }
func (e configError) Is(target error) bool { return target == ErrConfig }
