package render

import (
	butil "github.com/coreos/butane/base/util"
)

// dataURL encodes contents as Butane does for inline contents.
func dataURL(contents []byte) (string, string, error) {
	src, comp, err := butil.MakeDataURL(contents, nil, true)
	if err != nil {
		return "", "", err
	}
	c := ""
	if comp != nil {
		c = *comp
	}
	return src, c, nil
}
