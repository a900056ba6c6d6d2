package backbone

import "testing"

func TestInferShapes(t *testing.T) {
	tests := []struct {
		name string
		b    *graphBuilder
		want string // shape of "y"
	}{
		{"broadcast", newBuilder().input("x", -1, 1, 4).init("w", 3, 1).
			node("Add", "a", []string{"x", "w"}, []string{"y"}), "[batch,3,4]"},
		{"matmul batched", newBuilder().input("x", -1, 5, 4).init("w", 4, 6).
			node("MatMul", "m", []string{"x", "w"}, []string{"y"}), "[batch,5,6]"},
		{"matmul vector", newBuilder().input("x", 4).init("w", 2, 4, 6).
			node("MatMul", "m", []string{"x", "w"}, []string{"y"}), "[2,6]"},
		{"gemm transB", newBuilder().input("x", -1, 4).init("w", 6, 4).
			node("Gemm", "g", []string{"x", "w"}, []string{"y"}, "transB", 1), "[batch,6]"},
		{"transpose", newBuilder().input("x", -1, 5, 4).
			node("Transpose", "t", []string{"x"}, []string{"y"}, "perm", []int64{0, 2, 1}), "[batch,4,5]"},
		{"concat", newBuilder().input("x", -1, 5, 4).init("c", 1, 5, 4).
			node("Concat", "c", []string{"x", "c"}, []string{"y"}, "axis", 0), "[?,5,4]"},
		{"reshape from shape chain", newBuilder().input("x", -1, 6, 8).ints("i0", 0).ints("rest", 6, 2, 4).
			node("Shape", "s", []string{"x"}, []string{"s"}).
			node("Gather", "g", []string{"s", "i0"}, []string{"b"}, "axis", 0).
			node("Concat", "c", []string{"b", "rest"}, []string{"target"}, "axis", 0).
			node("Reshape", "r", []string{"x", "target"}, []string{"y"}), "[batch,6,2,4]"},
		{"reshape -1", newBuilder().input("x", 2, 6, 8).ints("t", 2, -1, 4).
			node("Reshape", "r", []string{"x", "t"}, []string{"y"}), "[2,12,4]"},
		{"reshape -1 symbolic", newBuilder().input("x", -1, 64, 4, 4).ints("t", -1, 64, 16).
			node("Reshape", "r", []string{"x", "t"}, []string{"y"}), "[batch,64,16]"},
		{"pad", newBuilder().input("x", -1, 16, 64).ints("p", 0, 1, 0, 0, 0, 0).
			node("Pad", "p", []string{"x", "p"}, []string{"y"}), "[batch,17,64]"},
		{"expand with where", newBuilder().input("x", -1, 3).init("cls", 1, 1, 4).ints("i0", 0).ints("m1", -1, -1).ints("neg", -1).
			node("Shape", "s", []string{"x"}, []string{"s"}).
			node("Gather", "g", []string{"s", "i0"}, []string{"b"}, "axis", 0).
			node("Concat", "c", []string{"b", "m1"}, []string{"t"}, "axis", 0).
			node("Equal", "e", []string{"t", "neg"}, []string{"eq"}).
			node("Shape", "s2", []string{"t"}, []string{"s2"}).
			node("ConstantOfShape", "ones", []string{"s2"}, []string{"ones"}, "value", Int64s("v", 1)).
			node("Where", "w", []string{"eq", "ones", "t"}, []string{"t2"}).
			node("Expand", "x2", []string{"cls", "t2"}, []string{"y"}), "[batch,1,4]"},
		{"slice", newBuilder().input("x", -1, 10, 4).ints("s", 2).ints("e", 100).ints("a", 1).ints("st", 3).
			node("Slice", "sl", []string{"x", "s", "e", "a", "st"}, []string{"y"}), "[batch,3,4]"},
		{"slice negative", newBuilder().input("x", 10).ints("s", -1).ints("e", -100).ints("a", 0).ints("st", -2).
			node("Slice", "sl", []string{"x", "s", "e", "a", "st"}, []string{"y"}), "[5]"},
		{"conv", newBuilder().input("x", -1, 1, 28, 28).init("w", 8, 1, 7, 7).
			node("Conv", "c", []string{"x", "w"}, []string{"y"}, "strides", []int64{7, 7}), "[batch,8,4,4]"},
		{"conv padded", newBuilder().input("x", 1, 3, 224, 224).init("w", 16, 3, 3, 3).
			node("Conv", "c", []string{"x", "w"}, []string{"y"}, "strides", []int64{2, 2}, "pads", []int64{1, 1, 1, 1}), "[1,16,112,112]"},
		{"maxpool ceil", newBuilder().input("x", 1, 3, 7, 7).
			node("MaxPool", "p", []string{"x"}, []string{"y"}, "kernel_shape", []int64{2, 2}, "strides", []int64{2, 2}, "ceil_mode", 1), "[1,3,4,4]"},
		{"reduce keepdims", newBuilder().input("x", -1, 5, 4).
			node("ReduceMean", "r", []string{"x"}, []string{"y"}, "axes", []int64{-1}), "[batch,5,1]"},
		{"unsqueeze", newBuilder().input("x", -1, 4).ints("ax", 0, 3).
			node("Unsqueeze", "u", []string{"x", "ax"}, []string{"y"}), "[1,batch,4,1]"},
		{"flatten", newBuilder().input("x", 2, 3, 4).node("Flatten", "f", []string{"x"}, []string{"y"}), "[2,12]"},
		{"gather", newBuilder().input("x", -1, 17, 4).ints("i", 0).
			node("Gather", "g", []string{"x", "i"}, []string{"y"}, "axis", 1), "[batch,1,4]"},
		{"unknown op", newBuilder().input("x", 2).node("NonMaxSuppression", "n", []string{"x"}, []string{"y"}), "?"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inf := inferGraph(tt.b.g)
			if len(inf.conflicts) > 0 {
				t.Fatalf("conflicts: %v", inf.conflicts)
			}
			if got := inf.types["y"].Shape.String(); got != tt.want {
				t.Errorf("shape %s, want %s", got, tt.want)
			}
		})
	}
}

func TestInferConflicts(t *testing.T) {
	tests := []struct {
		name string
		b    *graphBuilder
	}{
		{"broadcast clash", newBuilder().input("x", 2, 3).init("w", 4).node("Add", "a", []string{"x", "w"}, []string{"y"})},
		{"matmul clash", newBuilder().input("x", 2, 3).init("w", 4, 5).node("MatMul", "m", []string{"x", "w"}, []string{"y"})},
		{"gemm clash", newBuilder().input("x", 2, 3).init("w", 5, 4).node("Gemm", "g", []string{"x", "w"}, []string{"y"}, "transB", 1)},
		{"initializer vs input", newBuilder().input("w", 3).init("w", 4)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if inf := inferGraph(tt.b.g); len(inf.conflicts) == 0 {
				t.Fatal("no conflict found")
			}
		})
	}
}

func TestDTypes(t *testing.T) {
	b := newBuilder().input("x", 2).
		node("Shape", "s", []string{"x"}, []string{"s"}).
		node("Cast", "c", []string{"s"}, []string{"f"}, "to", int(DTypeFloat16)).
		node("Equal", "e", []string{"x", "x"}, []string{"eq"}).
		node("Where", "w", []string{"eq", "s", "s"}, []string{"wh"}).
		node("Relu", "r", []string{"x"}, []string{"r"})
	inf := inferGraph(b.g)
	for name, want := range map[string]DType{"s": DTypeInt64, "f": DTypeFloat16, "eq": DTypeBool, "wh": DTypeInt64, "r": DTypeFloat32} {
		if got := inf.types[name].DType; got != want {
			t.Errorf("%s: %v, want %v", name, got, want)
		}
	}
}
