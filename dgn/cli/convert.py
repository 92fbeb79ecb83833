"""``dgn convert caffe``: Caffe models to safetensors, read without Caffe."""

from __future__ import annotations

import argparse

from dgn import weights
from dgn.errors import DGNError
from dgn.files import check_writable

HELP = "convert original files, e.g. Caffe models, to safetensors"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("format", choices=["caffe"])
    p.add_argument("--caffemodel", help="binary .caffemodel")
    p.add_argument("--prototxt", help="deploy .prototxt (checked against the weights; needed for --arch generic)")
    p.add_argument("--arch", help="target architecture: deepsim-fc6/fc7/fc8/pool5, caffenet, or generic")
    p.add_argument("--inspect", metavar="CAFFEMODEL", help="list a .caffemodel's layers, types and blob shapes")
    p.add_argument("--out", help="safetensors file to write (default for a registry --arch: <arch>.safetensors in the "
                                 "weights cache, e.g. pretrained/ in a checkout, where dgn then finds it)")


_CONVERTIBLE = (*weights.CONVERTIBLE_FROM_CAFFE, "generic")


def run(args: argparse.Namespace) -> int:
    from dgn import caffe

    if args.inspect:
        print(caffe.inspect_caffemodel(args.inspect))
        return 0
    missing = [opt for opt in ("caffemodel", "arch") if not getattr(args, opt)]
    if missing:
        raise DGNError(f"convert caffe needs --{', --'.join(missing)} (or --inspect CAFFEMODEL)")
    if args.arch not in _CONVERTIBLE:
        raise DGNError(f"unknown --arch {args.arch!r}; valid: {', '.join(_CONVERTIBLE)}")
    if not args.out:
        if args.arch == "generic":
            raise DGNError("--arch generic needs --out (there is no registry name to store it under)")
        args.out = str(weights.cache_dir() / f"{args.arch}.safetensors")
        check_writable(args.out, folder=False)
    from safetensors.torch import save as safetensors_save

    from dgn.files import atomic_write_bytes

    net = caffe.read_caffemodel(args.caffemodel)
    if args.arch == "generic":
        if not args.prototxt:
            raise DGNError("--arch generic builds the module from the deploy prototxt: give --prototxt")
        module = caffe.build_module(args.prototxt, net)
        report = None
    else:
        from dgn import models

        module = models.ARCHITECTURES[args.arch].build()
        if args.prototxt:
            declared = {layer.name for layer in caffe.read_prototxt(args.prototxt).layers}
            absent = [layer.name for layer in net.layers if layer.blobs and layer.name not in declared]
            if absent:
                raise DGNError(f"layers {', '.join(absent[:5])} of the caffemodel are not in {args.prototxt}")
        report = caffe.load_into(module, net, strict=False)
        if report.missing:
            raise DGNError(f"the caffemodel does not fill {len(report.missing)} parameters of {args.arch}, e.g. "
                           f"{', '.join(report.missing[:4])}; is it the right --arch?")
    state = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
    atomic_write_bytes(args.out, safetensors_save(state, metadata={"source": str(args.caffemodel), "arch": args.arch}))
    print(f"wrote {len(state)} tensors to {args.out}")
    if report is not None:
        print(f"loaded {len(report.loaded)} blobs; Caffe blobs without a {args.arch} parameter: "
              f"{', '.join(report.unmapped) or 'none'}")
    return 0
