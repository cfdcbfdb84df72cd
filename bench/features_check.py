"""How recognisable are each shipped model's class images? (issue 13's table)

    python bench/features_check.py [--models deep_mnist,hvass,single_conv,lenet5] [--png F]

Judges trained on MNIST pixels (logistic regression, 5-NN; never the model explained)
name each class image; faithfulness is how many class images excite their own logit more
than 99 % of that class's test digits; MNIST's test digits have mean 0.13, frame 0.005.
"""

from __future__ import annotations

import argparse
import time

import cnnscope
from cnnscope.analysis.features.check import Judges, check_class_images
from cnnscope.data import load_mnist


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="deep_mnist,hvass,single_conv,lenet5")
    p.add_argument("--png", help="also write the class images, one row per model and method")
    args = p.parse_args()
    rows, labels = [], []
    data = load_mnist()
    t0 = time.perf_counter()
    judges = Judges(data)
    print(f"judges trained in {time.perf_counter() - t0:.1f} s")
    print(f"{'model':12s} {'method':12s} logistic  5-NN  faithful  mean   frame  median pct")
    for name in args.models.split(","):
        model, _ = cnnscope.load_model(name)
        for r in check_class_images(model, data, judges):
            rows.append(r.images)
            labels += [f"{name} {r.method}" if k == 0 else str(k) for k in range(10)]
            pct = sorted(r.percentile)[5]
            print(
                f"{name:12s} {r.method:12s} {r.recognised['logistic']:>5}/10 "
                f"{r.recognised['knn']:>3}/10 {r.faithful:>6}/10  {r.mean:.3f}  {r.frame:.3f}"
                f"  {pct:.2f}"
            )

    if args.png:
        import numpy as np

        from cnnscope.plots import tile_sheet

        sheet = tile_sheet(np.concatenate(rows), cols=10, scale=3, labels=labels)
        sheet.save(args.png)
        print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
