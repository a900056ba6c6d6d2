package dataset

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// maxIDXBytes bounds the data an IDX header may announce, so a corrupt header cannot make the
// loader allocate without limit (Fashion-MNIST's largest file holds 47,040,000 bytes).
const maxIDXBytes = 1 << 30

// LoadFashionMNIST reads one split of Fashion-MNIST from dir, or from FashionMNISTDir() when dir
// is "". It expects the four files of the original distribution (train-images-idx3-ubyte.gz,
// train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz), gzipped or
// not. Images keep the files' order.
func LoadFashionMNIST(dir string, split Split) (*Set, error) {
	if dir == "" {
		dir = FashionMNISTDir()
	}
	var prefix string
	switch split {
	case Train:
		prefix = "train"
	case Test:
		prefix = "t10k"
	default:
		return nil, fmt.Errorf("dataset: fashion-mnist: unknown split %q (want %q or %q)", split, Train, Test)
	}
	set, err := loadIDXPair(filepath.Join(dir, prefix+"-images-idx3-ubyte"), filepath.Join(dir, prefix+"-labels-idx1-ubyte"))
	if err != nil {
		return nil, fmt.Errorf("dataset: fashion-mnist %s: %w", split, err)
	}
	set.Name = "fashion-mnist/" + string(split)
	return set, nil
}

// loadIDXPair reads an image file ([N, 28, 28] bytes) and its label file ([N] bytes), each at
// base+".gz" or, failing that, base.
func loadIDXPair(imagesBase, labelsBase string) (*Set, error) {
	dims, pixels, err := readIDXFile(imagesBase)
	if err != nil {
		return nil, err
	}
	if len(dims) != 3 || dims[1] != Height || dims[2] != Width {
		return nil, fmt.Errorf("%s: %w: images have shape %v, want [N %d %d]", imagesBase, ErrCorrupt, dims, Height, Width)
	}
	ldims, labels, err := readIDXFile(labelsBase)
	if err != nil {
		return nil, err
	}
	if len(ldims) != 1 {
		return nil, fmt.Errorf("%s: %w: labels have shape %v, want [N]", labelsBase, ErrCorrupt, ldims)
	}
	if ldims[0] != dims[0] {
		return nil, fmt.Errorf("%s: %w: %d labels for %d images", labelsBase, ErrCorrupt, ldims[0], dims[0])
	}
	set := &Set{Pixels: make([]float32, len(pixels)), Labels: make([]int, len(labels))}
	for i, b := range pixels {
		set.Pixels[i] = float32(b) / 255
	}
	for i, b := range labels {
		if int(b) >= Classes {
			return nil, fmt.Errorf("%s: %w: label %d of image %d is not in [0, %d)", labelsBase, ErrCorrupt, b, i, Classes)
		}
		set.Labels[i] = int(b)
	}
	return set, nil
}

// readIDXFile opens base+".gz" (gunzipping it) or else base, and reads it as an IDX file.
func readIDXFile(base string) (dims []int, data []byte, err error) {
	path := base + ".gz"
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		if plain, err2 := os.Open(base); !errors.Is(err2, os.ErrNotExist) {
			path, f, err = base, plain, err2
		}
	}
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("%w (run `make deps`, or set %s)", err, EnvFashionMNISTDir)
	}
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	var r io.Reader = bufio.NewReader(f)
	if filepath.Ext(path) == ".gz" {
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w: %w", path, ErrCorrupt, err)
		}
		defer zr.Close()
		r = zr
	}
	dims, data, err = readIDX(r)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return dims, data, nil
}

// readIDX reads an IDX file of unsigned bytes (http://yann.lecun.com/exdb/mnist/): the magic
// 0x00 0x00 0x08 NDIM, NDIM big-endian uint32 dimensions, then the data, and nothing after it.
// Every format error wraps ErrCorrupt.
func readIDX(r io.Reader) (dims []int, data []byte, err error) {
	var magic [4]byte
	if _, err := io.ReadFull(r, magic[:]); err != nil {
		return nil, nil, fmt.Errorf("%w: reading IDX magic: %w", ErrCorrupt, err)
	}
	if magic[0] != 0 || magic[1] != 0 || magic[2] != 0x08 || magic[3] == 0 {
		return nil, nil, fmt.Errorf("%w: bad IDX magic %#x (want 0x000008NN: unsigned bytes, NN dimensions)", ErrCorrupt, magic[:])
	}
	n := int(magic[3])
	raw := make([]byte, 4*n)
	if _, err := io.ReadFull(r, raw); err != nil {
		return nil, nil, fmt.Errorf("%w: reading %d IDX dimensions: %w", ErrCorrupt, n, err)
	}
	size := 1
	dims = make([]int, n)
	for i := range dims {
		d := binary.BigEndian.Uint32(raw[4*i:])
		if d == 0 || uint64(size)*uint64(d) > maxIDXBytes {
			return nil, nil, fmt.Errorf("%w: implausible IDX dimensions %v", ErrCorrupt, rawDims(raw))
		}
		dims[i] = int(d)
		size *= int(d)
	}
	data = make([]byte, size)
	if got, err := io.ReadFull(r, data); err != nil {
		return nil, nil, fmt.Errorf("%w: truncated: header %v announces %d bytes of data, read %d: %w", ErrCorrupt, dims, size, got, err)
	}
	// Reading on to the end also makes a gzip reader check the stream's checksum.
	var extra [1]byte
	switch got, err := io.ReadFull(r, extra[:]); {
	case got > 0:
		return nil, nil, fmt.Errorf("%w: more data than header %v announces", ErrCorrupt, dims)
	case err != io.EOF:
		return nil, nil, fmt.Errorf("%w: after the data: %w", ErrCorrupt, err)
	}
	return dims, data, nil
}

func rawDims(raw []byte) []uint32 {
	dims := make([]uint32, len(raw)/4)
	for i := range dims {
		dims[i] = binary.BigEndian.Uint32(raw[4*i:])
	}
	return dims
}
