"""Read Caffe nets without Caffe or compiled protobuf, and rebuild them as PyTorch modules.

* ``.caffemodel`` files (binary ``NetParameter``) are decoded by a small protobuf wire-format
  reader written here. Both the current format (``layer`` = 100, string types, ``BlobShape``)
  and the deprecated V1 format (``layers`` = 2, enum types, legacy num/channels/height/width
  blob shapes) are read; a V0 layer nested in a V1 layer is converted too.
* ``.prototxt`` files (protobuf text format) are parsed by a general tokenizer into nested dicts.
* :func:`build_module` turns a deploy prototxt (plus optional weights) into an ``nn.Module``
  whose submodules carry the Caffe layer names and whose forward follows the blob DAG. It covers
  the BVLC layers that the model zoo's classifiers and generators use (``SUPPORTED_LAYER_TYPES``),
  ResNet's BatchNorm + Scale, PReLU, FCN's Crop and dilated / grouped (de)convolution included.

Field numbers follow BVLC ``caffe.proto``. Bad, truncated or hostile files raise
:class:`~dgn.errors.DGNError`; nothing is ever executed or unpickled.
"""

from __future__ import annotations

from dgn.caffe.builder import SUPPORTED_LAYER_TYPES, build_module
from dgn.caffe.modules import CaffeModule, CaffePool2d, LoadReport, sanitize_name
from dgn.caffe.net import CaffeLayer, CaffeNet
from dgn.caffe.read import inspect_caffemodel, read_caffemodel, read_prototxt
from dgn.caffe.state import caffe_state_dict, load_into
from dgn.caffe.text import parse_prototxt_text
from dgn.caffe.zoo_modules import CaffeBatchNorm, CaffeBias, CaffeScale

__all__ = [
    "SUPPORTED_LAYER_TYPES",
    "CaffeBatchNorm",
    "CaffeBias",
    "CaffeLayer",
    "CaffeModule",
    "CaffeNet",
    "CaffePool2d",
    "CaffeScale",
    "LoadReport",
    "build_module",
    "caffe_state_dict",
    "inspect_caffemodel",
    "load_into",
    "parse_prototxt_text",
    "read_caffemodel",
    "read_prototxt",
    "sanitize_name",
]
