package iso

import (
	"fmt"
	"io"
)

// Options says how a command that changes an image writes it.
type Options struct {
	// Output is where the changed image goes: "" means over the input (atomically), "-" means
	// Stdout, anything else a path (atomically).
	Output string
	// Force allows replacing an embedded config.
	Force bool
	// Stdout receives the image when Output is "-".
	Stdout io.Writer
}

// Embed puts the Ignition config cfg into the live ISO at path (`kiln iso embed`).
func Embed(path string, cfg []byte, o Options) error {
	if err := ValidateConfig(cfg); err != nil {
		return err
	}
	return change(path, o, func(im *Image) error { return im.SetIgnition(cfg, o.Force) })
}

// Show returns the Ignition config embedded in the live ISO at path (`kiln iso show`).
func Show(path string) ([]byte, error) {
	im, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer im.Close()
	return im.Ignition()
}

// Remove takes the embedded config out of the live ISO at path (`kiln iso remove`); an image with
// no config is left as it is.
func Remove(path string, o Options) error {
	return change(path, o, (*Image).RemoveIgnition)
}

// ShowKargs returns the live ISO's kernel arguments, or the ones it was built with when def is set
// (`kiln iso kargs show`).
func ShowKargs(path string, def bool) (string, error) {
	im, err := Open(path)
	if err != nil {
		return "", err
	}
	defer im.Close()
	if def {
		return im.DefaultKargs()
	}
	return im.Kargs()
}

// ModifyKargs edits the live ISO's kernel arguments (`kiln iso kargs modify`) and returns them.
func ModifyKargs(path string, e KargsEdit, o Options) (string, error) {
	var args string
	err := change(path, o, func(im *Image) error {
		cur, err := im.Kargs()
		if err != nil {
			return err
		}
		def, _ := im.DefaultKargs()
		if args, err = e.Apply(cur, def); err != nil {
			return err
		}
		return im.SetKargs(args)
	})
	return args, err
}

// change opens the image, applies f and writes the result where o says.
func change(path string, o Options, f func(*Image) error) error {
	if err := rollBack(path); err != nil {
		return err
	}
	im, err := Open(path)
	if err != nil {
		return err
	}
	defer im.Close()
	if err := f(im); err != nil {
		return err
	}
	if o.Output == "-" {
		if o.Stdout == nil {
			return fmt.Errorf("no standard output to write the image to")
		}
		_, err := im.WriteTo(o.Stdout)
		return err
	}
	return im.Save(o.Output)
}
