"""How recognisable and how faithful are each shipped model's class images? (issue 13's table)

    python bench/features_check.py [--models deep_mnist,hvass,single_conv,lenet5,best] [--png F]

Judges trained on MNIST pixels (logistic regression, 5-NN; never the model explained)
name each class image. Faithfulness: each class image's own *logit* (before the softmax)
against that class's test digits; "faithful" counts the images whose logit beats 99 % of
them, "lowest" is the worst image's percentile. MNIST's test digits have mean 0.13 and a
frame (the 4-px border) of 0.005.
"""

from __future__ import annotations

import argparse
import time

import cnnscope
from cnnscope.analysis.features import METHODS
from cnnscope.analysis.features.check import Judges, check_class_images
from cnnscope.data import load_mnist


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="deep_mnist,hvass,single_conv,lenet5,best")
    p.add_argument("--methods", default=",".join(METHODS), help="default: every method")
    p.add_argument("--png", help="also write the class images, one row per model and method")
    args = p.parse_args()
    rows, labels = [], []
    data = load_mnist()
    t0 = time.perf_counter()
    judges = Judges(data)
    print(f"judges ready in {time.perf_counter() - t0:.1f} s (cached after the first run)")
    print(f"{'model':12s} {'method':12s} logistic  5-NN  faithful  lowest  mean   frame  seconds")
    for name in args.models.split(","):
        model, _ = cnnscope.load_model(name)
        for method in args.methods.split(","):
            t0 = time.perf_counter()
            (r,) = check_class_images(model, data, judges, [method])
            seconds = time.perf_counter() - t0
            rows.append(r.images)
            labels += [
                f"{name} {r.method} {r.recognised['logistic']}/{r.recognised['knn']}/{r.faithful}"
                if k == 0
                else str(k)
                for k in range(10)
            ]
            print(
                f"{name:12s} {r.method:12s} {r.recognised['logistic']:>5}/10 "
                f"{r.recognised['knn']:>3}/10 {r.faithful:>6}/10  {min(r.percentile):6.1%}"
                f"  {r.mean:.3f}  {r.frame:.3f}  {seconds:5.1f}",
                flush=True,
            )

    if args.png:
        import numpy as np

        from cnnscope.plots import tile_sheet

        title = "class images: label = model method logistic/5-NN/faithful (of 10)"
        sheet = tile_sheet(np.concatenate(rows), cols=10, scale=3, labels=labels, title=title)
        sheet.save(args.png)
        print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
