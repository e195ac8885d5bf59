package render

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"sync"

	"github.com/vincent-petithory/dataurl"
)

// gzipWriters are reused: a gzip writer at best compression costs about 800 KB to make, more
// than the whole rest of a node's render.
var gzipWriters = sync.Pool{New: func() any {
	w, _ := gzip.NewWriterLevel(nil, gzip.BestCompression)
	return w
}}

// dataURL encodes inline contents exactly as Butane's MakeDataURL does (the tests compare the
// two): the shortest of URL-escaped text, base64, and gzip then base64; it returns the URL and
// the compression ("gzip" or "").
func dataURL(contents []byte) (string, string, error) {
	opaque := "," + dataurl.Escape(contents)
	if b64 := ";base64," + base64.StdEncoding.EncodeToString(contents); len(b64) < len(opaque) {
		opaque = b64
	}
	var buf bytes.Buffer
	w := gzipWriters.Get().(*gzip.Writer)
	defer gzipWriters.Put(w)
	w.Reset(&buf)
	if _, err := w.Write(contents); err != nil {
		return "", "", err
	}
	if err := w.Close(); err != nil {
		return "", "", err
	}
	compression := ""
	if gz := ";base64," + base64.StdEncoding.EncodeToString(buf.Bytes()); len(gz)+len("gzip") < len(opaque) {
		opaque, compression = gz, "gzip"
	}
	return "data:" + opaque, compression, nil
}
