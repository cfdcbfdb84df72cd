from __future__ import annotations

import numpy as np

from cnnscope.data import to_float


def test_compat_endpoint_like_2017_demo(client, shipped, mnist) -> None:
    model, _ = shipped
    x = mnist.test_images[0]
    res = client.post("/predict", json=x.flatten().tolist()).json()
    assert set(res) == {"h_conv1", "h_pool1", "h_conv2", "h_pool2", "y_conv"}
    conv1 = np.array(res["h_conv1"])
    assert conv1.shape == (32, 28, 28) and conv1.min() == 0 and conv1.max() == 255
    assert conv1.dtype.kind == "i"  # whole gray levels, as the old page paints them
    assert np.array(res["h_pool2"]).shape == (64, 7, 7)
    want = model(to_float(x[None]))[0].detach().numpy()
    assert np.allclose(res["y_conv"], want, atol=1e-4)


def test_compat_rejects_bad_input(client) -> None:
    assert client.post("/predict", json=[0] * 10).status_code == 422
    assert client.post("/predict", json=[300] * 784).status_code == 422
