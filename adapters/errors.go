package adapters

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error the package returns wraps one of them together with the operation
// and the offending names; test for them with errors.Is.
var (
	// ErrUnsupported means a model uses an operator (or an operator variant) that the GoMLX import
	// cannot run correctly; the error names the operator and the nodes.
	ErrUnsupported = errors.New("adapters: unsupported by the GoMLX engine")
	// ErrInvalidArgument means an argument or option is out of range or inconsistent: an unknown
	// input name, a missing input, a wrong element type or shape, a bad training option.
	ErrInvalidArgument = errors.New("adapters: invalid argument")
	// ErrEngine means GoMLX failed while building or running a computation (gomlx reports errors
	// by panicking; the package recovers them at its boundary and wraps them with this).
	ErrEngine = errors.New("adapters: GoMLX engine failure")
	// ErrDiverged means a training step's loss was not a finite number (NaN or infinite): the
	// training diverged, most often from too high a learning rate, and retrying it as it is
	// cannot help.
	ErrDiverged = errors.New("adapters: the training diverged")
)

// catch runs fn and turns a panic into an error wrapping ErrEngine, so that gomlx's exceptions
// never cross the package boundary. Errors fn returns that wrap none of the package's sentinels
// (gomlx's own) are wrapped with ErrEngine too.
func catch(op string, fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if e, ok := r.(error); ok {
				err = fmt.Errorf("%s: %w: %w", op, ErrEngine, e)
			} else {
				err = fmt.Errorf("%s: %w: %v", op, ErrEngine, r)
			}
		}
	}()
	err = fn()
	if err != nil && !errors.Is(err, ErrUnsupported) && !errors.Is(err, ErrInvalidArgument) && !errors.Is(err, ErrEngine) {
		err = fmt.Errorf("%s: %w: %w", op, ErrEngine, err)
	}
	return err
}
