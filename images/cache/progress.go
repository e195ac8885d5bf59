package cache

import (
	"fmt"
	"io"
	"os"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// Progress reports downloads.
type Progress interface {
	// Start begins the report of a download of total bytes (-1 unknown), from done bytes on.
	Start(name string, total, done int64) ProgressBar
}

// ProgressBar is the report of one download: the bytes written to it, resumes, and its end.
type ProgressBar interface {
	io.Writer
	// Resume says the download restarts at done bytes.
	Resume(done int64)
	io.Closer
}

// NewProgress reports to w: a progress bar when w is a terminal, plain lines otherwise (every
// tenth of the download, and each resume).
func NewProgress(w io.Writer) Progress {
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return barProgress{w}
	}
	return lineProgress{w}
}

type barProgress struct{ w io.Writer }

func (p barProgress) Start(name string, total, done int64) ProgressBar {
	b := progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(p.w),
		progressbar.OptionSetDescription(name),
		progressbar.OptionShowBytes(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100e6),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(p.w) }),
	)
	_ = b.Set64(done)
	return &bar{b}
}

type bar struct{ *progressbar.ProgressBar }

func (b *bar) Resume(done int64) { _ = b.Set64(done) }
func (b *bar) Close() error      { return b.Finish() }

type lineProgress struct{ w io.Writer }

func (p lineProgress) Start(name string, total, done int64) ProgressBar {
	l := &line{w: p.w, name: name, total: total, done: done}
	if total >= 0 {
		fmt.Fprintf(p.w, "%s: downloading %s\n", name, bytesString(total))
	} else {
		fmt.Fprintf(p.w, "%s: downloading\n", name)
	}
	if done > 0 {
		fmt.Fprintf(p.w, "%s: resuming at %s\n", name, bytesString(done))
	}
	l.next = l.tenth()
	return l
}

type line struct {
	w           io.Writer
	name        string
	total, done int64
	next        int64 // the tenth at which the next line is written
}

func (l *line) tenth() int64 {
	if l.total <= 0 {
		return 1 << 62
	}
	return l.done*10/l.total + 1
}

func (l *line) Write(b []byte) (int, error) {
	l.done += int64(len(b))
	if l.total > 0 && l.done*10/l.total >= l.next && l.done < l.total {
		fmt.Fprintf(l.w, "%s: %d%% (%s of %s)\n", l.name, l.done*100/l.total, bytesString(l.done), bytesString(l.total))
		l.next = l.tenth()
	}
	return len(b), nil
}

func (l *line) Resume(done int64) {
	l.done = done
	l.next = l.tenth()
	fmt.Fprintf(l.w, "%s: connection lost, resuming at %s\n", l.name, bytesString(done))
}

func (l *line) Close() error {
	_, err := fmt.Fprintf(l.w, "%s: done (%s)\n", l.name, bytesString(l.done))
	return err
}

// bytesString writes a size for people: 512 B, 1.5 KiB, 700.0 MiB.
func bytesString(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// BytesString writes a size for people (as the progress lines do).
func BytesString(n int64) string { return bytesString(n) }
