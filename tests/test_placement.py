"""Where ONNX Runtime's CUDA provider would run each node of the shipped graphs, decided on the CPU
from the rules in ORT's sources (docs/decisions/ort-review.md has the evidence, file by file):

- a node runs on CUDA if CUDA registers a kernel for its op at opset 18 and its input type
  (CUDA_TYPES, from ORT's docs/OperatorKernels.md);
- some CUDA kernels read an input in host memory (HOST_READ: `InputMemoryType(OrtMemTypeCPUInput, i)`
  in the kernel's registration); such an input must be a constant or a graph input the host binds
  once per image size in CPU memory (graph.HOST_INPUTS), never a tensor computed per evaluation;
- ORT moves small shape computations to the CPU (framework/fallback_cpu_capability.cc,
  GetCpuPreferredNodes): the consumers of a CPU tensor (Shape's output, say) whose other inputs are
  small initializers or graph inputs. Every CPU node beside a GPU graph costs copies and rules out a
  CUDA graph capture.

A new op or type in a graph fails here until it has been checked against ORT's registrations.
"""

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from onnxstyle.core.graph import HOST_INPUTS, PACKAGE_MODELS, size_feed

onnx = pytest.importorskip("onnx")

F32, F64, I64, BOOL, U8, I32 = "float32", "float64", "int64", "bool", "uint8", "int32"

# Inputs each CUDA kernel reads on the host (index into the node's inputs).
HOST_READ = {
    "Pad": {1, 2, 3},  # pads, constant_value, axes
    "Reshape": {1},  # shape
    "Slice": {1, 2, 3, 4},  # starts, ends, axes, steps
    "Resize": {1, 2, 3},  # roi, scales, sizes
    "Upsample": {1},
    "Unsqueeze": {1},  # axes
    "Squeeze": {1},
    "ReduceSum": {1},  # axes (ReduceSum-13, the others from 18)
    "ReduceSumSquare": {1},
    "ReduceMax": {1},
    "ReduceMin": {1},
    "ReduceMean": {1},
    "ReduceProd": {1},
    "Expand": {1},  # shape
    "Tile": {1},  # repeats
    "ConstantOfShape": {0},
    "Range": {0, 1, 2},
    "Clip": {1, 2},  # min, max
    "Split": {1},
    "TopK": {1},
    "OneHot": {1},
}

# Element types (of the first input) CUDA registers a kernel for, at opset 18, for the ops our graphs
# use. From ORT's docs/OperatorKernels.md, CUDAExecutionProvider (rows covering opset 18).
CUDA_TYPES = {
    "Abs": {F32, F64, I64},
    "Add": {F32, F64, I64},
    "And": {BOOL},
    "AveragePool": {F32, F64},
    "Cast": {F32, F64, I64, BOOL, U8, I32},
    "Ceil": {F32, F64},
    "Concat": {F32, F64, I64, BOOL},
    "Conv": {F32, F64},
    "Div": {F32, F64, I64},
    "Equal": {F32, F64, I64, BOOL},
    "Gather": {F32, F64, I64},
    "Gemm": {F32, F64},
    "Greater": {F32, F64, I64},
    "GreaterOrEqual": {F32, F64, I64},
    "Identity": {F32, F64, I64, BOOL},
    "IsInf": {F32, F64},
    "IsNaN": {F32, F64},
    "Less": {F32, F64, I64},
    "LessOrEqual": {F32, F64, I64},
    "MatMul": {F32, F64},
    "Max": {F32, F64, I64},
    "MaxPool": {F32, F64},
    "Min": {F32, F64, I64},
    "Mul": {F32, F64, I64},
    "Neg": {F32, F64, I64},
    "Or": {BOOL},
    "Pad": {F32, F64, BOOL},
    "ReduceMax": {F32, F64, I64},
    "ReduceProd": {F32, F64, I32},  # no int64: the old graphs' n = ReduceProd(Shape) ran on the CPU
    "ReduceSum": {F32, F64, I64},
    "ReduceSumSquare": {F32, F64},
    "Relu": {F32, F64},
    "Reshape": {F32, F64, I64, BOOL},
    "Resize": {F32, F64, I32, U8},
    "Shape": {F32, F64, I64, BOOL},  # its output lives in host memory
    "Slice": {F32, F64, I64, BOOL},
    "Sqrt": {F32, F64},
    "Sub": {F32, F64, I64},
    "Sum": {F32, F64},
    "Transpose": {F32, F64, I64},
    "Unsqueeze": {F32, F64, I64, BOOL},
    "Where": {F32, F64, I64, BOOL},
}
CPU_OUTPUT = {"Shape", "Size"}  # CUDA kernels whose output is in host memory
SMALL_INITIALIZER = 100  # elements: fallback_cpu_capability.cc's kSmallInitializerThreshold

GRAPHS = sorted(PACKAGE_MODELS.glob("*.onnx"))


def _type_names(model) -> dict[str, str]:
    """Tensor name -> element type name, for every tensor of the model."""
    model = onnx.shape_inference.infer_shapes(model)
    graph = model.graph
    values = [*graph.value_info, *graph.input, *graph.output]
    types = {v.name: v.type.tensor_type.elem_type for v in values}
    types.update({t.name: t.data_type for t in graph.initializer})
    for node in graph.node:
        if node.op_type == "Constant":
            types[node.output[0]] = node.attribute[0].t.data_type
    return {k: onnx.helper.tensor_dtype_to_np_dtype(v).name for k, v in types.items() if v}


def _folded(path: Path, tmp_path: Path):
    """The graph as ORT partitions it: after its basic (provider-independent) optimisations,
    constant folding first (the dequantised, flipped kernels become initializers)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(tmp_path / path.name)
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return onnx.load(tmp_path / path.name)


def cuda_placement(model, host_inputs=frozenset()) -> dict:
    """Which nodes CUDA's GetCapability + GetCpuPreferredNodes leave on the CPU, and the
    host<->device copies ORT would insert per run. Graph inputs live on the device except
    `host_inputs` (bound in CPU memory)."""
    graph = model.graph
    types = _type_names(model)
    sizes = {t.name: int(np.prod(t.dims)) for t in graph.initializer}
    inputs = {i.name for i in graph.input}
    small = {name for name, n in sizes.items() if n <= SMALL_INITIALIZER} | inputs
    producer = {out: node for node in graph.node for out in node.output}
    on_cpu, cpu_tensors = set(), set(host_inputs)

    def cuda_kernel(node) -> bool:
        first = next((i for i in node.input if i), None)
        return types.get(first) in CUDA_TYPES.get(node.op_type, set())

    for index, node in enumerate(graph.node):  # the models are in topological order
        host_read = HOST_READ.get(node.op_type, set())
        if not cuda_kernel(node):
            on_cpu.add(index)
        elif any(i in cpu_tensors for i in node.input) and all(
            (name in small and name not in cpu_tensors)
            or (name in cpu_tensors and k not in host_read)
            for k, name in enumerate(node.input)
            if name
        ):
            on_cpu.add(index)  # GetCpuPreferredNodes: a consumer of CPU tensors, all inputs small
        if index in on_cpu or node.op_type in CPU_OUTPUT:
            cpu_tensors.update(node.output)
    up, down = set(), set()  # ORT's memcpy transformer makes one copy per tensor and direction
    for index, node in enumerate(graph.node):
        host_read = HOST_READ.get(node.op_type, set())
        for k, name in enumerate(node.input):
            if not name or name in sizes:  # initializers are placed once, at session start
                continue
            made_on_cpu = name in cpu_tensors
            wanted_on_cpu = index in on_cpu or k in host_read
            if made_on_cpu and not wanted_on_cpu:
                up.add(name)
            elif wanted_on_cpu and not made_on_cpu and (name in producer or name in inputs):
                down.add(name)  # a device tensor read on the host: a copy down and a sync per run
    ops = sorted(graph.node[i].op_type for i in on_cpu)
    return {"cpu_nodes": ops, "copies_up": len(up), "copies_down": len(down)}


@pytest.mark.parametrize("path", GRAPHS, ids=[p.stem for p in GRAPHS])
def test_host_read_inputs_are_constants_or_bound_once(path):
    """Every input a CUDA kernel reads on the host is an initializer, a Constant, or a per-size
    graph input the engine binds once in CPU memory; no graph computes a shape on the device."""
    graph = onnx.load(path).graph
    constants = {t.name for t in graph.initializer}
    constants |= {n.output[0] for n in graph.node if n.op_type == "Constant"}
    assert not [n.name for n in graph.node if n.op_type in CPU_OUTPUT]
    for node in graph.node:
        for k in HOST_READ.get(node.op_type, ()):
            if k < len(node.input) and node.input[k]:
                name = node.input[k]
                assert name in constants or name in HOST_INPUTS, (node.name, k, name)
    for name in {i.name for i in graph.input} & HOST_INPUTS:
        assert name in size_feed(33, 47)  # the engine computes it from the image size


@pytest.mark.parametrize("path", GRAPHS, ids=[p.stem for p in GRAPHS])
def test_every_node_runs_on_cuda_without_copies(path, tmp_path):
    """After ORT's constant folding every node has a CUDA kernel for its type, none falls back to
    the CPU, and nothing but the bound inputs crosses between host and device in a run."""
    model = _folded(path, tmp_path)
    types = _type_names(model)
    unchecked = {
        (n.op_type, types.get(n.input[0])) for n in model.graph.node if n.op_type not in CUDA_TYPES
    }
    assert not unchecked, "check these ops' CUDA registrations: docs/decisions/ort-review.md"
    placement = cuda_placement(model, HOST_INPUTS)
    assert placement == {"cpu_nodes": [], "copies_up": 0, "copies_down": 0}


def test_placement_rules_see_the_old_shape_arithmetic(tmp_path):
    """The rules above are not vacuous: the Gram's n = Cast(ReduceProd(Slice(Shape(a)))) of the
    graphs before issue 18 lands on the CPU, and its result is copied up each run."""
    helper, TensorProto = onnx.helper, onnx.TensorProto

    def io(name, shape):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)

    const = [
        helper.make_tensor(name, TensorProto.INT64, [1], [v])
        for name, v in (("two", 2), ("four", 4))
    ]
    nodes = [
        helper.make_node("Relu", ["a"], ["r"]),  # a tensor made on the device
        helper.make_node("Shape", ["r"], ["shape"]),
        helper.make_node("Slice", ["shape", "two", "four"], ["hw"]),
        helper.make_node("ReduceProd", ["hw"], ["n64"], keepdims=0),
        helper.make_node("Cast", ["n64"], ["n"], to=TensorProto.FLOAT),
        helper.make_node("Div", ["r", "n"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "g", [io("a", [1, 4, "h", "w"])], [io("y", None)], const)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    placement = cuda_placement(model)
    expected = {"cpu_nodes": ["Cast", "ReduceProd", "Slice"], "copies_up": 1, "copies_down": 0}
    assert placement == expected
