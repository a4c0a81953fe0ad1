"""Our int8 .tflite against the public PyTorch -> .tflite route that installs without TensorFlow (issue 14):
litert-torch (formerly ai-edge-torch), PT2E static int8 quantisation (per-channel weights), on the reference CNN
trained on Fashion-MNIST. Both files run in TFLite Micro's own interpreter (tflite-micro): ops, file size, the
measured arena (bisection, as tflm_check.py) and int8 test accuracy.

litert-torch is not a dependency of this project (it pulls jax, transformers, torchao, a 70 MB MLIR converter):
install it in a separate virtualenv that sees this environment's torch and tflite-micro, and run the script there:

    python -m venv --system-site-packages /tmp/lt && /tmp/lt/bin/pip install litert-torch==0.10.0
    /tmp/lt/bin/python benchmarks/tflm_vs_litert.py     # -> benchmarks/results/tflm_vs_litert.json

`python benchmarks/tflm_check.py` puts the JSON's figures into BENCHMARKS.md's "tflm" section.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
OUT = ROOT / "benchmarks" / "results" / "tflm_vs_litert.json"


def op_names(data: bytes) -> list:
    import tflite
    m = tflite.Model.GetRootAsModel(data, 0)
    names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
    codes = [max(m.OperatorCodes(i).BuiltinCode(), m.OperatorCodes(i).DeprecatedBuiltinCode())
             for i in range(m.OperatorCodesLength())]
    sg = m.Subgraphs(0)
    return [names.get(codes[sg.Operators(i).OpcodeIndex()], "?") for i in range(sg.OperatorsLength())]


def tflm_accuracy(data: bytes, arena: int, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy of the .tflite run by TFLM on float inputs x (N, 1, 28, 28), quantised with the model's
    input parameters; NCHW or NHWC as the model's input shape says."""
    from tflite_micro.python.tflite_micro import runtime

    from lightning_mcuprune.deploy.tflm import _quiet
    with _quiet():
        it = runtime.Interpreter.from_bytes(bytes(data), arena_size=int(arena) + 4096)
    d = it.get_input_details(0)
    shape = [int(v) for v in d["shape"]]
    q = d["quantization_parameters"]
    correct = 0
    for k in range(len(x)):
        v = x[k:k + 1].numpy()
        v = (v if shape[1] == v.shape[1] else v.transpose(0, 2, 3, 1)).reshape(shape)
        if d["dtype"] == np.int8:
            v = np.clip(np.round(v / q["scales"][0]) + q["zero_points"][0], -128, 127).astype(np.int8)
        it.set_input(v.astype(d["dtype"]), 0)
        it.invoke()
        correct += int(np.argmax(it.get_output(0).reshape(-1).astype(np.float64)) == int(y[k]))
    return correct / len(x)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train-samples", type=int, default=30000, help="Fashion-MNIST training images (one pass)")
    ap.add_argument("--calib", type=int, default=512, help="calibration images, the same for both converters")
    ap.add_argument("--test", type=int, default=1000, help="test images run through TFLM per model")
    args = ap.parse_args()
    torch.set_num_threads(1)   # a shared machine: one thread
    torch.manual_seed(0)
    import lightning_mcuprune as lm
    from lightning_mcuprune.examples import zoo
    from lightning_mcuprune.data.datasets import load_fashion_mnist, to_tensors
    from lightning_mcuprune.deploy.tflm import measure_arena
    x, y = to_tensors(*load_fashion_mnist("train"))
    xt, yt = to_tensors(*load_fashion_mnist("test"))
    xt, yt = xt[:args.test], yt[:args.test]
    net = zoo.reference_cnn()
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    perm = torch.randperm(len(x))
    t0 = time.time()
    net.train()
    for i in range(0, args.train_samples, 128):
        idx = perm[i:min(i + 128, args.train_samples)]
        loss = F.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        float_acc = float((net(xt).argmax(1) == yt).float().mean())
    print(f"trained on {args.train_samples} images in {time.time() - t0:.0f} s; float test acc {float_acc:.4f}", flush=True)
    calib = x[perm[len(x) - args.calib:]]       # images the training pass did not use

    rows = {}
    t0 = time.time()
    res = lm.export_tflite(net, calib[:1], calib)   # ours: traced order, our arena plan embedded
    arena = measure_arena(res.data)
    rows["lightning-mcuprune"] = dict(ops=op_names(res.data), tflite_bytes=len(res.data), arena_measured=arena,
                                      arena_predicted=res.host.total, int8_acc=tflm_accuracy(res.data, arena, xt, yt),
                                      secs=round(time.time() - t0, 1))
    print(rows["lightning-mcuprune"], flush=True)

    t0 = time.time()
    import litert_torch   # after our measurement: it loads JAX, whose threads do not like measure_arena's fork
    from litert_torch.quantize import pt2e_quantizer as pq
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e import quantize_pt2e
    ex = (calib[:1],)
    m = torch.export.export(net, ex).module()
    quantizer = pq.PT2EQuantizer().set_global(pq.get_symmetric_quantization_config(is_per_channel=True,
                                                                                     is_dynamic=False))
    m = quantize_pt2e.prepare_pt2e(m, quantizer)
    with torch.no_grad():
        for i in range(len(calib)):   # the exported program is specialised to batch 1
            m(calib[i:i + 1])
    m = quantize_pt2e.convert_pt2e(m, fold_quantize=False)
    edge = litert_torch.convert(m, ex, quant_config=QuantConfig(pt2e_quantizer=quantizer))
    path = OUT.parent / "litert_reference_cnn.tflite"
    path.parent.mkdir(parents=True, exist_ok=True)
    edge.export(str(path))
    data = path.read_bytes()
    path.unlink()
    arena = measure_arena(data)
    from importlib.metadata import version
    rows[f"litert-torch {version('litert-torch')}"] = dict(
        ops=op_names(data), tflite_bytes=len(data), arena_measured=arena, int8_acc=tflm_accuracy(data, arena, xt, yt),
        secs=round(time.time() - t0, 1))
    print(rows[f"litert-torch {version('litert-torch')}"], flush=True)
    result = dict(network="reference_cnn (width 1.0)", train_samples=args.train_samples, calib=args.calib,
                  test=args.test, float_acc=float_acc, rows=rows,
                  measured=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                  command="benchmarks/tflm_vs_litert.py (in a virtualenv with litert-torch)")
    from lightning_mcuprune.io import write_text_atomic
    write_text_atomic(OUT, json.dumps(result, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
