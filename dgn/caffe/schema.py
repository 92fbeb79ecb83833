"""Message schemas: the subset of caffe.proto that matters for reading nets and weights."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class _Field:
    num: int
    name: str
    kind: str  # int, uint, bool, enum, float, double, string, msg, floats, doubles
    repeated: bool = False
    sub: Any = None  # _Msg for kind "msg", dict[int, str] for kind "enum"


class _Msg:
    def __init__(self, name: str, *fields: _Field) -> None:
        self.name = name
        self.by_num = {f.num: f for f in fields}
        self.by_name = {f.name: f for f in fields}


def _f(num: int, name: str, kind: str, repeated: bool = False, sub: Any = None) -> _Field:
    return _Field(num, name, kind, repeated, sub)


_PHASE = {0: "TRAIN", 1: "TEST"}
_ENGINE = {0: "DEFAULT", 1: "CAFFE", 2: "CUDNN"}
_POOL = {0: "MAX", 1: "AVE", 2: "STOCHASTIC"}
_ROUND = {0: "CEIL", 1: "FLOOR"}
_NORM_REGION = {0: "ACROSS_CHANNELS", 1: "WITHIN_CHANNEL"}
_ELTWISE_OP = {0: "PROD", 1: "SUM", 2: "MAX"}
_SHARE_MODE = {0: "STRICT", 1: "PERMISSIVE"}
_REDUCTION_OP = {1: "SUM", 2: "ASUM", 3: "SUMSQ", 4: "MEAN"}
_VARIANCE_NORM = {0: "FAN_IN", 1: "FAN_OUT", 2: "AVERAGE"}
_V1_TYPE = {
    0: "NONE", 1: "ACCURACY", 2: "BNLL", 3: "CONCAT", 4: "CONVOLUTION", 5: "DATA", 6: "DROPOUT",
    7: "EUCLIDEAN_LOSS", 8: "FLATTEN", 9: "HDF5_DATA", 10: "HDF5_OUTPUT", 11: "IM2COL",
    12: "IMAGE_DATA", 13: "INFOGAIN_LOSS", 14: "INNER_PRODUCT", 15: "LRN",
    16: "MULTINOMIAL_LOGISTIC_LOSS", 17: "POOLING", 18: "RELU", 19: "SIGMOID", 20: "SOFTMAX",
    21: "SOFTMAX_LOSS", 22: "SPLIT", 23: "TANH", 24: "WINDOW_DATA", 25: "ELTWISE", 26: "POWER",
    27: "SIGMOID_CROSS_ENTROPY_LOSS", 28: "HINGE_LOSS", 29: "MEMORY_DATA", 30: "ARGMAX",
    31: "THRESHOLD", 32: "DUMMY_DATA", 33: "SLICE", 34: "MVN", 35: "ABSVAL", 36: "SILENCE",
    37: "CONTRASTIVE_LOSS", 38: "EXP", 39: "DECONVOLUTION",
}  # fmt: skip
# Caffe's own V1 -> string upgrade table (upgrade_proto.cpp UpgradeV1LayerType).
_V1_TO_NEW = {
    "NONE": "", "ABSVAL": "AbsVal", "ACCURACY": "Accuracy", "ARGMAX": "ArgMax", "BNLL": "BNLL",
    "CONCAT": "Concat", "CONTRASTIVE_LOSS": "ContrastiveLoss", "CONVOLUTION": "Convolution",
    "DECONVOLUTION": "Deconvolution", "DATA": "Data", "DROPOUT": "Dropout", "DUMMY_DATA": "DummyData",
    "EUCLIDEAN_LOSS": "EuclideanLoss", "ELTWISE": "Eltwise", "EXP": "Exp", "FLATTEN": "Flatten",
    "HDF5_DATA": "HDF5Data", "HDF5_OUTPUT": "HDF5Output", "HINGE_LOSS": "HingeLoss",
    "IM2COL": "Im2col", "IMAGE_DATA": "ImageData", "INFOGAIN_LOSS": "InfogainLoss",
    "INNER_PRODUCT": "InnerProduct", "LRN": "LRN", "MEMORY_DATA": "MemoryData",
    "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss", "MVN": "MVN", "POOLING": "Pooling",
    "POWER": "Power", "RELU": "ReLU", "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss", "SILENCE": "Silence",
    "SOFTMAX": "Softmax", "SOFTMAX_LOSS": "SoftmaxWithLoss", "SPLIT": "Split", "SLICE": "Slice",
    "TANH": "TanH", "WINDOW_DATA": "WindowData", "THRESHOLD": "Threshold",
}  # fmt: skip
# V0 (pre-2014) string types, from upgrade_proto.cpp UpgradeV0LayerType.
_V0_TO_NEW = {
    "accuracy": "Accuracy", "bnll": "BNLL", "concat": "Concat", "conv": "Convolution",
    "data": "Data", "dropout": "Dropout", "euclidean_loss": "EuclideanLoss", "flatten": "Flatten",
    "hdf5_data": "HDF5Data", "hdf5_output": "HDF5Output", "im2col": "Im2col", "images": "ImageData",
    "infogain_loss": "InfogainLoss", "innerproduct": "InnerProduct", "lrn": "LRN",
    "multinomial_logistic_loss": "MultinomialLogisticLoss", "pool": "Pooling", "relu": "ReLU",
    "sigmoid": "Sigmoid", "softmax": "Softmax", "softmax_loss": "SoftmaxWithLoss", "split": "Split",
    "tanh": "TanH", "window_data": "WindowData",
}  # fmt: skip

_BLOB_SHAPE = _Msg("BlobShape", _f(1, "dim", "int", True))
_BLOB = _Msg(
    "BlobProto",
    _f(1, "num", "int"), _f(2, "channels", "int"), _f(3, "height", "int"), _f(4, "width", "int"),
    _f(5, "data", "floats", True), _f(7, "shape", "msg", sub=_BLOB_SHAPE),
    _f(8, "double_data", "doubles", True),
)  # fmt: skip
_RULE = _Msg(
    "NetStateRule",
    _f(1, "phase", "enum", sub=_PHASE), _f(2, "min_level", "int"), _f(3, "max_level", "int"),
    _f(4, "stage", "string", True), _f(5, "not_stage", "string", True),
)  # fmt: skip
_PARAM_SPEC = _Msg(
    "ParamSpec",
    _f(1, "name", "string"), _f(2, "share_mode", "enum", sub=_SHARE_MODE),
    _f(3, "lr_mult", "float"), _f(4, "decay_mult", "float"),
)  # fmt: skip
_CONV = _Msg(
    "ConvolutionParameter",
    _f(1, "num_output", "uint"), _f(2, "bias_term", "bool"), _f(3, "pad", "uint", True),
    _f(4, "kernel_size", "uint", True), _f(5, "group", "uint"), _f(6, "stride", "uint", True),
    _f(9, "pad_h", "uint"), _f(10, "pad_w", "uint"), _f(11, "kernel_h", "uint"),
    _f(12, "kernel_w", "uint"), _f(13, "stride_h", "uint"), _f(14, "stride_w", "uint"),
    _f(15, "engine", "enum", sub=_ENGINE), _f(16, "axis", "int"), _f(17, "force_nd_im2col", "bool"),
    _f(18, "dilation", "uint", True),
)  # fmt: skip
_POOLING = _Msg(
    "PoolingParameter",
    _f(1, "pool", "enum", sub=_POOL), _f(2, "kernel_size", "uint"), _f(3, "stride", "uint"),
    _f(4, "pad", "uint"), _f(5, "kernel_h", "uint"), _f(6, "kernel_w", "uint"),
    _f(7, "stride_h", "uint"), _f(8, "stride_w", "uint"), _f(9, "pad_h", "uint"),
    _f(10, "pad_w", "uint"), _f(11, "engine", "enum", sub=_ENGINE), _f(12, "global_pooling", "bool"),
    _f(13, "round_mode", "enum", sub=_ROUND),
)  # fmt: skip
_LRN = _Msg(
    "LRNParameter",
    _f(1, "local_size", "uint"), _f(2, "alpha", "float"), _f(3, "beta", "float"),
    _f(4, "norm_region", "enum", sub=_NORM_REGION), _f(5, "k", "float"),
    _f(6, "engine", "enum", sub=_ENGINE),
)  # fmt: skip
_IP = _Msg(
    "InnerProductParameter",
    _f(1, "num_output", "uint"), _f(2, "bias_term", "bool"), _f(5, "axis", "int"),
    _f(6, "transpose", "bool"),
)  # fmt: skip
_RELU = _Msg("ReLUParameter", _f(1, "negative_slope", "float"), _f(2, "engine", "enum", sub=_ENGINE))
_DROPOUT = _Msg("DropoutParameter", _f(1, "dropout_ratio", "float"), _f(2, "scale_train", "bool"))
_RESHAPE = _Msg(
    "ReshapeParameter",
    _f(1, "shape", "msg", sub=_BLOB_SHAPE), _f(2, "axis", "int"), _f(3, "num_axes", "int"),
)  # fmt: skip
_CONCAT = _Msg("ConcatParameter", _f(1, "concat_dim", "uint"), _f(2, "axis", "int"))
_SOFTMAX = _Msg("SoftmaxParameter", _f(1, "engine", "enum", sub=_ENGINE), _f(2, "axis", "int"))
_ELTWISE = _Msg(
    "EltwiseParameter",
    _f(1, "operation", "enum", sub=_ELTWISE_OP), _f(2, "coeff", "float", True),
    _f(3, "stable_prod_grad", "bool"),
)  # fmt: skip
_FLATTEN = _Msg("FlattenParameter", _f(1, "axis", "int"), _f(2, "end_axis", "int"))
_POWER = _Msg("PowerParameter", _f(1, "power", "float"), _f(2, "scale", "float"), _f(3, "shift", "float"))
_INPUT = _Msg("InputParameter", _f(1, "shape", "msg", True, _BLOB_SHAPE))
# The model-zoo layers (ResNet, FCN, PReLU nets, ...).
_FILLER = _Msg(
    "FillerParameter",
    _f(1, "type", "string"), _f(2, "value", "float"), _f(3, "min", "float"), _f(4, "max", "float"),
    _f(5, "mean", "float"), _f(6, "std", "float"), _f(7, "sparse", "int"),
    _f(8, "variance_norm", "enum", sub=_VARIANCE_NORM),
)  # fmt: skip
_BATCH_NORM = _Msg(
    "BatchNormParameter",
    _f(1, "use_global_stats", "bool"), _f(2, "moving_average_fraction", "float"), _f(3, "eps", "float"),
)  # fmt: skip
_SCALE = _Msg(
    "ScaleParameter",
    _f(1, "axis", "int"), _f(2, "num_axes", "int"), _f(3, "filler", "msg", sub=_FILLER),
    _f(4, "bias_term", "bool"), _f(5, "bias_filler", "msg", sub=_FILLER),
)  # fmt: skip
_BIAS = _Msg("BiasParameter", _f(1, "axis", "int"), _f(2, "num_axes", "int"), _f(3, "filler", "msg", sub=_FILLER))
_PRELU = _Msg("PReLUParameter", _f(1, "filler", "msg", sub=_FILLER), _f(2, "channel_shared", "bool"))
_ELU = _Msg("ELUParameter", _f(1, "alpha", "float"))
_EXP = _Msg("ExpParameter", _f(1, "base", "float"), _f(2, "scale", "float"), _f(3, "shift", "float"))
_LOG = _Msg("LogParameter", _f(1, "base", "float"), _f(2, "scale", "float"), _f(3, "shift", "float"))
_THRESHOLD = _Msg("ThresholdParameter", _f(1, "threshold", "float"))
_CROP = _Msg("CropParameter", _f(1, "axis", "int"), _f(2, "offset", "uint", True))
_SLICE = _Msg(
    "SliceParameter", _f(3, "axis", "int"), _f(2, "slice_point", "uint", True), _f(1, "slice_dim", "uint")
)
_TILE = _Msg("TileParameter", _f(1, "axis", "int"), _f(2, "tiles", "int"))
_REDUCTION = _Msg(
    "ReductionParameter",
    _f(1, "operation", "enum", sub=_REDUCTION_OP), _f(2, "axis", "int"), _f(3, "coeff", "float"),
)  # fmt: skip
_ARGMAX = _Msg("ArgMaxParameter", _f(1, "out_max_val", "bool"), _f(2, "top_k", "uint"), _f(3, "axis", "int"))

_LAYER = _Msg(
    "LayerParameter",
    _f(1, "name", "string"), _f(2, "type", "string"), _f(3, "bottom", "string", True),
    _f(4, "top", "string", True), _f(5, "loss_weight", "float", True),
    _f(6, "param", "msg", True, _PARAM_SPEC), _f(7, "blobs", "msg", True, _BLOB),
    _f(8, "include", "msg", True, _RULE), _f(9, "exclude", "msg", True, _RULE),
    _f(10, "phase", "enum", sub=_PHASE), _f(11, "propagate_down", "bool", True),
    _f(104, "concat_param", "msg", sub=_CONCAT), _f(106, "convolution_param", "msg", sub=_CONV),
    _f(108, "dropout_param", "msg", sub=_DROPOUT), _f(110, "eltwise_param", "msg", sub=_ELTWISE),
    _f(117, "inner_product_param", "msg", sub=_IP), _f(118, "lrn_param", "msg", sub=_LRN),
    _f(121, "pooling_param", "msg", sub=_POOLING), _f(122, "power_param", "msg", sub=_POWER),
    _f(123, "relu_param", "msg", sub=_RELU), _f(125, "softmax_param", "msg", sub=_SOFTMAX),
    _f(133, "reshape_param", "msg", sub=_RESHAPE), _f(135, "flatten_param", "msg", sub=_FLATTEN),
    _f(143, "input_param", "msg", sub=_INPUT), _f(103, "argmax_param", "msg", sub=_ARGMAX),
    _f(111, "exp_param", "msg", sub=_EXP), _f(126, "slice_param", "msg", sub=_SLICE),
    _f(128, "threshold_param", "msg", sub=_THRESHOLD), _f(131, "prelu_param", "msg", sub=_PRELU),
    _f(134, "log_param", "msg", sub=_LOG), _f(136, "reduction_param", "msg", sub=_REDUCTION),
    _f(138, "tile_param", "msg", sub=_TILE), _f(139, "batch_norm_param", "msg", sub=_BATCH_NORM),
    _f(140, "elu_param", "msg", sub=_ELU), _f(141, "bias_param", "msg", sub=_BIAS),
    _f(142, "scale_param", "msg", sub=_SCALE), _f(144, "crop_param", "msg", sub=_CROP),
)  # fmt: skip
_V0_LAYER = _Msg(
    "V0LayerParameter",
    _f(1, "name", "string"), _f(2, "type", "string"), _f(3, "num_output", "uint"),
    _f(4, "biasterm", "bool"), _f(7, "pad", "uint"), _f(8, "kernelsize", "uint"),
    _f(9, "group", "uint"), _f(10, "stride", "uint"), _f(11, "pool", "enum", sub=_POOL),
    _f(12, "dropout_ratio", "float"), _f(13, "local_size", "uint"), _f(14, "alpha", "float"),
    _f(15, "beta", "float"), _f(22, "k", "float"), _f(50, "blobs", "msg", True, _BLOB),
)  # fmt: skip
_V1_LAYER = _Msg(
    "V1LayerParameter",
    _f(1, "layer", "msg", sub=_V0_LAYER), _f(2, "bottom", "string", True),
    _f(3, "top", "string", True), _f(4, "name", "string"), _f(5, "type", "enum", sub=_V1_TYPE),
    _f(6, "blobs", "msg", True, _BLOB), _f(7, "blobs_lr", "float", True),
    _f(8, "weight_decay", "float", True), _f(9, "concat_param", "msg", sub=_CONCAT),
    _f(10, "convolution_param", "msg", sub=_CONV), _f(12, "dropout_param", "msg", sub=_DROPOUT),
    _f(17, "inner_product_param", "msg", sub=_IP), _f(18, "lrn_param", "msg", sub=_LRN),
    _f(19, "pooling_param", "msg", sub=_POOLING), _f(21, "power_param", "msg", sub=_POWER),
    _f(24, "eltwise_param", "msg", sub=_ELTWISE), _f(30, "relu_param", "msg", sub=_RELU),
    _f(32, "include", "msg", True, _RULE), _f(33, "exclude", "msg", True, _RULE),
    _f(35, "loss_weight", "float", True), _f(39, "softmax_param", "msg", sub=_SOFTMAX),
    _f(1001, "param", "string", True), _f(23, "argmax_param", "msg", sub=_ARGMAX),
    _f(25, "threshold_param", "msg", sub=_THRESHOLD), _f(31, "slice_param", "msg", sub=_SLICE),
    _f(41, "exp_param", "msg", sub=_EXP),
)  # fmt: skip
_NET = _Msg(
    "NetParameter",
    _f(1, "name", "string"), _f(2, "layers", "msg", True, _V1_LAYER), _f(3, "input", "string", True),
    _f(4, "input_dim", "int", True), _f(5, "force_backward", "bool"),
    _f(8, "input_shape", "msg", True, _BLOB_SHAPE), _f(100, "layer", "msg", True, _LAYER),
)  # fmt: skip


