"""ONNX Runtime for inference, on a graph built from the same weights."""
from .configs import Skip


def onnx_model(cfg, params):
    """The inference MLP as an ONNX graph (Gemm with transB=1, Relu/Tanh), as bytes."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    if cfg.get("embed"):
        raise Skip("no ONNX graph for the embedding model")
    sizes = cfg["sizes"]
    L = len(sizes) - 1
    act = {"relu": "Relu", "tanh": "Tanh"}[cfg["act"]]
    nodes, inits, h = [], [], "x"
    for j in range(L):
        w, b = params[2 * j], params[2 * j + 1]
        inits += [numpy_helper.from_array(np.ascontiguousarray(w), f"w{j}"),
                  numpy_helper.from_array(np.ascontiguousarray(b), f"b{j}")]
        out = "y" if j == L - 1 else f"z{j}"
        nodes.append(helper.make_node("Gemm", [h, f"w{j}", f"b{j}"], [out], transB=1))
        if j < L - 1:
            nodes.append(helper.make_node(act, [out], [f"h{j}"]))
            out = f"h{j}"
        h = out
    graph = helper.make_graph(
        nodes, "fastnn_bench_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", sizes[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", sizes[-1]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="fastnn.bench")
    model.ir_version = 8  # readable by every onnxruntime >= 1.13
    onnx.checker.check_model(model)
    return model.SerializeToString()


def build(cfg, params, data, threads):
    """ONNX Runtime (CPU provider) on the same graph and weights: an
    InferenceSession with intra_op_num_threads = threads, one inter-op thread,
    sequential execution, all graph optimizations; sess.run per call."""
    if cfg["mode"] != "infer":
        raise Skip("ONNX Runtime is measured for inference only")
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(onnx_model(cfg, params), so, providers=["CPUExecutionProvider"])
    run = sess.run
    xs = [x for x, _ in data]
    nb = len(data)

    def step(i):
        return run(["y"], {"x": xs[i % nb]})[0]
    step.method = "InferenceSession.run"
    return step, step
