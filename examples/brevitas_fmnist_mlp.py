"""A binary MLP for Fashion-MNIST in Brevitas, exported as QONNX for ``hwgen import``.

The input is binarized (``pixel >= 32``: ``x - 31.5`` through a bipolar quantizer), every
weight is +-1 (``SignedBinaryWeightPerTensorConst``) and every hidden activation +-1
(``SignedBinaryActPerTensorConst`` after a batch norm); the output layer has no bias. The
default, 784-100-100-10, fits the iCE40UP5K (docs/import.md); 784-256-256-10 does not.
Training runs on one CPU thread (3 to 5 s an epoch on this project's machine). From the
repository root (``build/`` is git-ignored):

    .venv/bin/python examples/brevitas_fmnist_mlp.py --epochs 3 --out build/bmlp.onnx
    .venv/bin/python -m hwgen import build/bmlp.onnx -o build/bmlp.npz \
        --dataset fashion-mnist --classes build/bmlp.classes.txt
    .venv/bin/python -m hwgen build --board icebreaker build/bmlp.npz -o build/bmlp-ice

``make`` sets up all of it (``.[train,dev,import]``); by hand:
``pip install -e '.[train,import]' brevitas==0.13.4 onnxoptimizer``.
"""

import argparse
import time
import warnings
from pathlib import Path

import torch
from torch import nn

import brevitas.nn as qnn
from brevitas.export import export_qonnx
from brevitas.quant import SignedBinaryActPerTensorConst, SignedBinaryWeightPerTensorConst

from hwgen.datasets import DATASETS, load_dataset


class BinaryMLP(nn.Module):
    def __init__(self, hidden=(100, 100), classes=10, binarize_at=32):
        super().__init__()
        self.offset = binarize_at - 0.5  # +1 where pixel >= binarize_at, else -1
        self.input_quant = qnn.QuantIdentity(act_quant=SignedBinaryActPerTensorConst)
        layers, n = [], 28 * 28
        for h in hidden:
            layers += [qnn.QuantLinear(n, h, bias=False,
                                       weight_quant=SignedBinaryWeightPerTensorConst),
                       nn.BatchNorm1d(h),
                       qnn.QuantIdentity(act_quant=SignedBinaryActPerTensorConst)]
            n = h
        layers.append(qnn.QuantLinear(n, classes, bias=False,
                                      weight_quant=SignedBinaryWeightPerTensorConst))
        self.body = nn.Sequential(*layers)

    def forward(self, x):  # x: pixel values 0..255 as floats, [K, 1, 28, 28]
        x = x.flatten(1)
        return self.body(self.input_quant(x - self.offset))


def accuracy(model, images, labels, batch=1000):
    model.eval()
    with torch.no_grad():
        right = sum(int((model(images[i:i + batch]).argmax(1) == labels[i:i + batch]).sum())
                    for i in range(0, len(images), batch))
    return right / len(images)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--hidden", default="100,100", help="hidden widths (default 100,100)")
    parser.add_argument("--binarize-at", type=int, default=32, help="pixel level (default 32)")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="build/bmlp.onnx",
                        help="QONNX file to write (default build/bmlp.onnx)")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)  # as fast for this small MLP, and steady on a shared machine

    def tensors(split):
        images, labels = load_dataset("fashion-mnist", split)  # uint8 [K, 1, 28, 28], int64
        return torch.from_numpy(images).float(), torch.from_numpy(labels)

    train_x, train_y = tensors("train")
    test_x, test_y = tensors("test")
    model = BinaryMLP(tuple(int(h) for h in args.hidden.split(",")),
                      binarize_at=args.binarize_at)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    steps = args.epochs * (len(train_x) // args.batch)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    loss_fn = nn.CrossEntropyLoss()  # on the scores 0.1 * acc (the weights are +-0.1)
    for epoch in range(args.epochs):
        start, model = time.time(), model.train()
        order = torch.randperm(len(train_x))
        for i in range(0, len(order) - args.batch + 1, args.batch):
            idx = order[i:i + args.batch]
            loss = loss_fn(model(train_x[idx]), train_y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        print(f"epoch {epoch + 1}: loss {loss.item():.3f}, test accuracy "
              f"{accuracy(model, test_x, test_y):.4f} ({time.time() - start:.0f} s)")
    print(f"Brevitas model, test accuracy {accuracy(model, test_x, test_y):.4f}")

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    example = torch.rand(1, 1, 28, 28) * 255  # pixel-valued, as hwgen import feeds the graph
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_qonnx(model.eval(), example, args.out)
    names = Path(args.out).with_suffix(".classes.txt")  # for hwgen import --classes
    names.write_text("".join(f"{name}\n" for name in DATASETS["fashion-mnist"].classes))
    print(f"wrote {args.out} and {names}")


if __name__ == "__main__":
    main()
