"""Train the bundled example: a small residual CNN on scikit-learn's digits, exported to ONNX.

Writes, next to this file:
  model.onnx        FP32 model, input 'input' [N, 1, 8, 8] float32, output 'logits' [N, 10]
  calibration.npz   'input' and 'label' for calibration (disjoint from training and held-out)
  heldout.npz       'input' and 'label' for evaluation (disjoint from training and calibration)

Needs torch (pip install torch==2.13.0) and scikit-learn. Seeded: reruns give the same split.
Run: python examples/digits/train.py
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

HERE = Path(__file__).resolve().parent
SEED = 0


class Block(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + x)


class DigitsResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.block1 = Block(16)
        self.down = nn.Sequential(nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU())
        self.block2 = Block(32)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block2(self.down(self.block1(self.stem(x))))
        return self.head(torch.flatten(self.pool(x), 1))


def split_digits():
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    labels = digits.target.astype(np.int64)
    indices = np.arange(len(labels))
    rest, held_out = train_test_split(indices, test_size=0.3, random_state=SEED, stratify=labels)
    train, calibration = train_test_split(rest, test_size=200, random_state=SEED, stratify=labels[rest])
    return images, labels, np.sort(train), np.sort(calibration), np.sort(held_out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--output", type=Path, default=HERE)
    args = parser.parse_args()
    torch.manual_seed(SEED)
    images, labels, train, calibration, held_out = split_digits()
    model = DigitsResNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-4)
    x_train, y_train = torch.from_numpy(images[train]), torch.from_numpy(labels[train])
    generator = torch.Generator().manual_seed(SEED)
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(train), generator=generator)
        for start in range(0, len(train), 64):
            batch = order[start:start + 64]
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(x_train[batch]), y_train[batch])
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(torch.from_numpy(images[held_out])).argmax(1).numpy() == labels[held_out]).mean()
    print(f"held-out top-1 (torch FP32): {accuracy:.4f}  train={len(train)} calibration={len(calibration)} "
          f"held_out={len(held_out)}")
    args.output.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(model, torch.zeros(1, 1, 8, 8), str(args.output / "model.onnx"), input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                      opset_version=17, dynamo=False)
    np.savez_compressed(args.output / "calibration.npz", input=images[calibration], label=labels[calibration])
    np.savez_compressed(args.output / "heldout.npz", input=images[held_out], label=labels[held_out])


if __name__ == "__main__":
    main()
