#!/usr/bin/python3
"""Generates the small ONNX fixtures that backbone/ort's tests run through ONNX Runtime.

Run it with Debian's python3-onnx (onnx 1.12, package python3-onnx; pyenv/venv Pythons usually lack
it), from this directory:

    /usr/bin/python3 gen.py

The output is deterministic for a given onnx version; the .onnx files are committed next to it.
Every model uses opset 13 and IR version 8, and names its batch dimension "batch".
"""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = [helper.make_opsetid("", 13)]
IR_VERSION = 8


def save(graph, name, full_check=True):
    model = helper.make_model(graph, opset_imports=OPSET, producer_name="s3t-ort-testdata")
    model.ir_version = IR_VERSION
    if full_check:
        onnx.checker.check_model(model, full_check=True)
    onnx.save(model, name)
    print("wrote", name)


def affine():
    """y = x @ W + b and z = relu(y): float32 [batch,4] -> two float32 [batch,3] outputs."""
    w = numpy_helper.from_array(
        np.array([[1, 0, -1], [2, 1, 0], [0, -1, 3], [0.5, 0.25, -0.5]], dtype=np.float32), "W")
    b = numpy_helper.from_array(np.array([0.5, -1, 2], dtype=np.float32), "b")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["y"]),
            helper.make_node("Relu", ["y"], ["z"]),
        ],
        "affine",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", 3]),
        ],
        [w, b],
    )
    save(graph, "affine.onnx")


def embed():
    """An int64 input: emb = table[ids] (float32 [batch,5,2]) and next = ids + 1 (int64 [batch,5])."""
    table = numpy_helper.from_array(np.arange(20, dtype=np.float32).reshape(10, 2), "table")
    one = numpy_helper.from_array(np.array(1, dtype=np.int64), "one")
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["table", "ids"], ["emb"], axis=0),
            helper.make_node("Add", ["ids", "one"], ["next"]),
        ],
        "embed",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", 5])],
        [
            helper.make_tensor_value_info("emb", TensorProto.FLOAT, ["batch", 5, 2]),
            helper.make_tensor_value_info("next", TensorProto.INT64, ["batch", 5]),
        ],
        [table, one],
    )
    save(graph, "embed.onnx")


def bias_default():
    """y = x + bias, where bias is a graph input with a default initializer ([1,2,3]): ONNX Runtime
    runs it with or without bias being fed (how spliced PEFT parameters are exposed)."""
    bias = numpy_helper.from_array(np.array([1, 2, 3], dtype=np.float32), "bias")
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "bias"], ["y"])],
        "bias_default",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("bias", TensorProto.FLOAT, [3]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [bias],
    )
    save(graph, "bias_default.onnx")


def shapes():
    """Outputs whose shapes are awkward for a wrapper: a scalar (total), one with no declared shape
    (free), a dynamic dimension with no name (rows), and log(x), which is NaN/-Inf for x <= 0."""
    axes = numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")
    graph = helper.make_graph(
        [
            helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0),
            helper.make_node("Log", ["x"], ["logx"]),
            helper.make_node("Identity", ["x"], ["free"]),
            helper.make_node("ReduceSum", ["x", "axes"], ["rows"], keepdims=0),
        ],
        "shapes",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [
            helper.make_tensor_value_info("total", TensorProto.FLOAT, []),
            helper.make_tensor_value_info("logx", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("free", TensorProto.FLOAT, None),
            helper.make_tensor_value_info("rows", TensorProto.FLOAT, [None]),
        ],
        [axes],
    )
    # The checker insists on a declared shape for "free"; ONNX Runtime does not.
    save(graph, "shapes.onnx", full_check=False)


def misdeclared():
    """y = 2x, but y is declared [1,3] while it is really [batch,3]: a model that lies about an
    output shape must still run."""
    two = numpy_helper.from_array(np.array(2, dtype=np.float32), "two")
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["y"])],
        "misdeclared",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [two],
    )
    # No full_check: shape inference would flag the lie.
    save(graph, "misdeclared.onnx", full_check=False)


def unsupported():
    """A well-formed file ONNX Runtime must refuse: it imports the default domain at opset 1000."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "unsupported",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 1000)],
                              producer_name="s3t-ort-testdata")
    model.ir_version = IR_VERSION
    onnx.save(model, "unsupported.onnx")
    print("wrote unsupported.onnx")


if __name__ == "__main__":
    affine()
    embed()
    bias_default()
    shapes()
    misdeclared()
    unsupported()
