package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/blockport/blockport/backstore"
	"github.com/blockport/blockport/config"
	"golang.org/x/sys/unix"
)

const imageUsage = `usage:
  blockport image create --backstore sparse|file --size SIZE [--block-size 512|4096] [--force] PATH
  blockport image info PATH
`

// image creates and describes image files the way serve uses them.
func image(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, imageUsage)
		return exitUsage
	}
	switch args[0] {
	case "create":
		return imageCreate(args[1:], stdout, stderr)
	case "info":
		return imageInfo(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, imageUsage)
		return exitOK
	}
	fmt.Fprintf(stderr, "blockport image: unknown command %q\n%s", args[0], imageUsage)
	return exitUsage
}

func imageCreate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("image create", flag.ContinueOnError)
	fs.SetOutput(stderr)
	kind := fs.String("backstore", "", "sparse (thin, allocates on write) or file (fully allocated now)")
	sizeText := fs.String("size", "", `image size, such as "10GiB"`)
	blockSize := fs.Uint("block-size", config.DefaultBlockSize, "logical block size the LUN will use: 512 or 4096")
	force := fs.Bool("force", false, "replace an existing image (never one that is being served)")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() != 1 {
		fmt.Fprintf(stderr, "blockport image create: want exactly one PATH\n%s", imageUsage)
		return exitUsage
	}
	path := fs.Arg(0)
	if *kind != config.BackstoreSparse && *kind != config.BackstoreFile {
		fmt.Fprintf(stderr, "blockport image create: --backstore must be sparse or file, not %q\n", *kind)
		return exitUsage
	}
	if *sizeText == "" {
		fmt.Fprintln(stderr, "blockport image create: --size is required")
		return exitUsage
	}
	size, err := config.ParseSize(*sizeText)
	if err == nil && size <= 0 {
		err = fmt.Errorf("must be greater than 0")
	}
	if err != nil {
		fmt.Fprintf(stderr, "blockport image create: --size %s: %v\n", *sizeText, err)
		return exitUsage
	}
	if *blockSize != 512 && *blockSize != 4096 {
		fmt.Fprintf(stderr, "blockport image create: --block-size must be 512 or 4096, not %d\n", *blockSize)
		return exitUsage
	}
	if size%int64(*blockSize) != 0 {
		fmt.Fprintf(stderr, "blockport image create: --size %d bytes is not a multiple of the block size %d\n", size, *blockSize)
		return exitUsage
	}
	opts := backstore.Options{Kind: *kind, Path: path, Size: size, BlockSize: uint32(*blockSize)}
	var bar *progressBar
	if *kind == config.BackstoreFile && isTerminal(stdout) {
		bar = &progressBar{w: stdout, label: "allocating " + path}
		opts.Progress = bar.update
	}
	err = backstore.CreateImage(opts, *force)
	if bar != nil {
		bar.finish()
	}
	if err != nil {
		fmt.Fprintf(stderr, "blockport image create: %v\n", err)
		return exitFailure
	}
	info, err := backstore.StatImage(path)
	if err != nil {
		fmt.Fprintf(stderr, "blockport image create: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(stdout, "created %s image %s: %s, %s allocated\n", *kind, path, humanBytes(info.Size), humanBytes(info.Allocated))
	return exitOK
}

func imageInfo(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 || strings.HasPrefix(args[0], "-") {
		fmt.Fprintf(stderr, "blockport image info: want exactly one PATH\n%s", imageUsage)
		return exitUsage
	}
	info, err := backstore.StatImage(args[0])
	if err != nil {
		fmt.Fprintf(stderr, "blockport image info: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(stdout, "path:      %s\nsize:      %d bytes (%s)\nallocated: %d bytes (%s)\n",
		args[0], info.Size, humanBytes(info.Size), info.Allocated, humanBytes(info.Allocated))
	return exitOK
}

// humanBytes prints n in binary units with one decimal ("1.5 GiB").
func humanBytes(n int64) string {
	const units = "KMGTPE"
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n)/1024, 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	return fmt.Sprintf("%.1f %ciB", v, units[i])
}

// isTerminal reports whether w is a terminal: the progress bar is drawn
// only there, never into a pipe or a log.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// progressBar redraws one line with carriage returns, at most every 100 ms.
type progressBar struct {
	w     io.Writer
	label string
	last  time.Time
	drawn bool
}

func (p *progressBar) update(done, total int64) {
	now := time.Now()
	if done < total && now.Sub(p.last) < 100*time.Millisecond {
		return
	}
	p.last = now
	const width = 30
	filled := int(done * width / max(total, 1))
	fmt.Fprintf(p.w, "\r%s [%s%s] %3d%% %s", p.label, strings.Repeat("#", filled), strings.Repeat(" ", width-filled),
		done*100/max(total, 1), humanBytes(done))
	p.drawn = true
}

// finish ends the bar's line so later output starts on a fresh one.
func (p *progressBar) finish() {
	if p.drawn {
		fmt.Fprintln(p.w)
	}
}
