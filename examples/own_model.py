"""Use your own model: train PyTorch's MNIST example briefly, then look inside it.

    python examples/own_model.py            # about a minute on a laptop CPU

Step 1 is what you already have: a model file (examples/net.py) and a state dict saved
with ``torch.save(model.state_dict(), "net.pt")``. Step 2 is cnnscope.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

import cnnscope

HERE = Path(__file__).resolve().parent
MEAN, STD = 0.1307, 0.3081  # PyTorch's example trains on normalized input


def train_the_example(weights: Path, steps: int = 300) -> None:
    """Your training script: plain PyTorch, normalized input, a state dict at the end."""
    sys.path.insert(0, str(HERE))
    from net import Net

    data = cnnscope.load_mnist()  # finds or downloads MNIST (11 MB) once
    x = (data.train_images.float() / 255.0).unsqueeze(1)  # (N, 1, 28, 28) in [0, 1]
    y = data.train_labels
    torch.manual_seed(0)
    model = Net()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for step in range(steps):
        idx = torch.randint(0, len(x), (64,))
        loss = F.nll_loss(model((x[idx] - MEAN) / STD), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0:
            print(f"step {step}: loss {loss.item():.3f}")
    torch.save(model.state_dict(), weights)


def main() -> None:
    weights = HERE / "net.pt"
    if not weights.exists():
        train_the_example(weights)

    # Step 2: load it into cnnscope. The normalization is applied inside, so every view
    # takes images in [0, 1] (white ink on black), as for the built-in models.
    m = cnnscope.load(f"{HERE / 'net.py'}:Net", weights=weights, normalize=(MEAN, STD))
    print(m)
    for name, info in m.info.items():
        print(f"  {name:<8} {info.kind:<6} {'×'.join(map(str, info.shape))}")

    data = cnnscope.load_mnist()
    image = data.test_images[0].numpy() / 255.0  # (28, 28) in [0, 1]
    p = m.predict(image)
    print(f"test digit 0 (a {int(data.test_labels[0])}): predicted {p.argmax()} ({p.max():.1%})")
    print("conv2's output:", tuple(m.stages(image)["conv2"].shape))
    ig = m.explain(image, method="ig")
    print(f"integrated gradients: map {ig.map.shape}, target {ig.target}")
    print("preferred inputs of conv1's first 4 channels:", m.features("conv1", [0, 1, 2, 3]).shape)
    rep = m.evaluate()
    print(f"test accuracy {rep.accuracy:.2%} on {len(rep.labels):,} digits")
    # The same from the command line:
    #   cnnscope evaluate --model examples/net.py:Net --weights examples/net.pt --normalize 0.1307,0.3081
    #   cnnscope serve    --model examples/net.py:Net --weights examples/net.pt --normalize 0.1307,0.3081


if __name__ == "__main__":
    main()
