"""The data classes of a Caffe net as read: layers with their parameters and weight blobs."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dgn.errors import DGNError

_MAX_DEPTH = 64  # nesting limit for messages (binary and text)
_MAX_AXES = 32  # Caffe's kMaxBlobAxes
_MAX_PARAM_ELEMENTS = 2**31  # refuse to allocate a single layer parameter larger than this


@dataclass
class CaffeLayer:
    """One Caffe layer.

    ``type`` is the modern string name (V1 ``CONVOLUTION`` becomes ``"Convolution"``).
    ``params`` holds every other field of the layer message as nested dicts (for example
    ``params["convolution_param"]["num_output"]``, ``params["include"]``); enum values are
    their names (``"MAX"``, ``"TEST"``).
    """

    name: str
    type: str
    bottoms: list[str]
    tops: list[str]
    blobs: list[np.ndarray] = field(default_factory=list)
    params: dict = field(default_factory=dict)


@dataclass
class CaffeNet:
    """A Caffe net: its name, its layers in file order, and its declared input shapes."""

    name: str
    layers: list[CaffeLayer]
    inputs: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def layer(self, name: str) -> CaffeLayer:
        """Return the layer called ``name``.

        Raises:
            DGNError: no layer has that name.
        """
        for lay in self.layers:
            if lay.name == name:
                return lay
        raise DGNError(f"net {self.name!r} has no layer {name!r}; layers: {[x.name for x in self.layers]}")


