"""``dgn inspect receptive-field``: argument parsing and printing; the method is in :mod:`dgn.receptive`."""

from __future__ import annotations

from dgn.layers import resolve_layer
from dgn.receptive import receptive_field


def add_cli_arguments(parser) -> None:
    """Options of ``dgn inspect receptive-field``."""
    parser.add_argument("--classifier", default="cifar-caffenet", help="classifier name (default: cifar-caffenet)")
    parser.add_argument("--layer", required=True, help="a layer with spatial output, e.g. conv5")
    parser.add_argument("--position", default=None, metavar="Y,X",
                        help="output position (default: the centre of the layer's output)")
    parser.add_argument("--weights-dir", default=None, help="directory with weights copied by hand")


def run_cli(args) -> int:
    """Print the receptive field of ``--layer`` at ``--position``."""
    from dgn.errors import DGNError
    from dgn.layers import layer_table
    from dgn.models import input_shape, load_classifier

    classifier = load_classifier(args.classifier, random_weights=True)  # the field depends on shapes only
    model = classifier.module.eval()
    shape = input_shape(classifier)
    name = resolve_layer(model, args.layer)
    out_shape = next(row["shape"] for row in layer_table(model, shape) if row["name"] == name)
    if not out_shape or len(out_shape) != 3:
        raise DGNError(f"layer {args.layer} has output shape {out_shape}; a receptive field needs (C, H, W)")
    if args.position is None:
        position = (out_shape[1] // 2, out_shape[2] // 2)
    else:
        try:
            position = tuple(int(v) for v in args.position.split(","))
            assert len(position) == 2
        except (ValueError, AssertionError):
            raise DGNError(f"--position {args.position!r} is not Y,X (two integers)") from None
        if not (0 <= position[0] < out_shape[1] and 0 <= position[1] < out_shape[2]):
            raise DGNError(f"--position {position} is outside {args.layer}'s {out_shape[1]}x{out_shape[2]} output")
    top, left, height, width = receptive_field(model, name, position, shape)
    print(f"{args.classifier} {args.layer} at (y={position[0]}, x={position[1]}): receptive field "
          f"{height}x{width} pixels, top-left (y={top}, x={left}) of the {shape[1]}x{shape[2]} input")
    return 0
