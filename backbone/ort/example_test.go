package ort_test

import (
	"context"
	"fmt"
	"log"
	"path/filepath"

	"github.com/s3t-dev/s3t/backbone/ort"
)

func ExampleSession_Run() {
	s, err := ort.NewSessionFromFile(filepath.Join("testdata", "affine.onnx"))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	fmt.Println(s.Inputs(), s.Outputs(), s.Provider())

	x := ort.NewTensor([]float32{1, 2, 3, 4, 5, 6, 7, 8}, 2, 4)
	var st ort.RunStats
	out, err := s.Run(context.Background(), map[string]ort.Tensor{"x": x}, ort.Fetch("y"), ort.RecordStats(&st))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(out["y"].Shape, out["y"].Data, st.ORT <= st.Total)

	_, err = s.Run(context.Background(), map[string]ort.Tensor{"x": ort.NewTensor([]float32{1, 2, 3}, 1, 3)})
	fmt.Println(err)
	// Output:
	// [x float32[batch,4]] [y float32[batch,3] z float32[batch,3]] cpu
	// [2 3] [7.5 -1 8 21.5 0 14] true
	// ort: run: input "x" has shape [1 3], the model wants x float32[batch,4] (dimension 1 must be 4): ort: wrong shape
}

func ExampleSession_RunBatched() {
	s, err := ort.NewSessionFromFile(filepath.Join("testdata", "affine.onnx"))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	x := make([]float32, 4*100)
	out, err := s.RunBatched(context.Background(), map[string]ort.Tensor{"x": ort.NewTensor(x, 100, 4)}, 32)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(out["z"].Shape)
	// Output: [100 3]
}

func ExampleBench() {
	s, err := ort.NewSessionFromFile(filepath.Join("testdata", "affine.onnx"))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	in, err := ort.SyntheticInputs(s, 64, 1)
	if err != nil {
		log.Fatal(err)
	}
	samples, err := ort.Bench(context.Background(), s, in, 10, 100)
	if err != nil {
		log.Fatal(err)
	}
	sum := samples.Summary()
	fmt.Println(sum.Runs, sum.TotalP50 >= sum.ORTP50)
	// Output: 100 true
}
