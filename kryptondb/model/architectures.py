"""The zoo's architectures, layer for layer as torchvision (and the EfficientNet-Lite reference)
define them, with the same parameter names so real checkpoints load into them."""

from __future__ import annotations

from kryptondb.graph.builder import Builder
from kryptondb.graph.ir import Graph


def _head(b: Builder, x: str, classes: int = 1000, fc: str = "fc") -> Graph:
    x = b.flatten(b.global_pool(x))
    return b.build(b.softmax(b.linear(x, fc, classes)))


# -- ResNet ------------------------------------------------------------------------------------


def _basic(b: Builder, x: str, p: str, cout: int, stride: int) -> str:
    y = b.conv_bn(x, f"{p}.conv1", f"{p}.bn1", cout, 3, stride, 1)
    y = b.conv_bn(y, f"{p}.conv2", f"{p}.bn2", cout, 3, 1, 1, act=None)
    return b.act(b.add(_shortcut(b, x, p, cout, stride), y, f"{p}.add"), "relu", f"{p}.relu")


def _bottleneck(b: Builder, x: str, p: str, cout: int, stride: int) -> str:
    width = cout // 4
    y = b.conv_bn(x, f"{p}.conv1", f"{p}.bn1", width, 1)
    y = b.conv_bn(y, f"{p}.conv2", f"{p}.bn2", width, 3, stride, 1)
    y = b.conv_bn(y, f"{p}.conv3", f"{p}.bn3", cout, 1, act=None)
    return b.act(b.add(_shortcut(b, x, p, cout, stride), y, f"{p}.add"), "relu", f"{p}.relu")


def _shortcut(b: Builder, x: str, p: str, cout: int, stride: int) -> str:
    if stride == 1 and b.shapes[x][0] == cout:
        return x
    return b.conv_bn(x, f"{p}.downsample.0", f"{p}.downsample.1", cout, 1, stride, act=None)


def resnet(name: str, blocks, bottleneck: bool, seed=0, state=None) -> Graph:
    b = Builder(name, (3, 224, 224), seed, state)
    x = b.conv_bn("input", "conv1", "bn1", 64, 7, 2, 3)
    x = b.pool(x, "max", 3, 2, 1, name="maxpool")
    block, expand = (_bottleneck, 4) if bottleneck else (_basic, 1)
    for i, (n, width) in enumerate(zip(blocks, (64, 128, 256, 512))):
        for j in range(n):
            stride = 2 if (i > 0 and j == 0) else 1
            x = block(b, x, f"layer{i + 1}.{j}", width * expand, stride)
    return _head(b, x)


def resnet18(seed=0, state=None) -> Graph:
    return resnet("resnet18", (2, 2, 2, 2), False, seed, state)


def resnet50(seed=0, state=None) -> Graph:
    return resnet("resnet50", (3, 4, 6, 3), True, seed, state)


# -- VGG16 -------------------------------------------------------------------------------------


def vgg16(seed=0, state=None) -> Graph:
    b = Builder("vgg16", (3, 224, 224), seed, state)
    x, idx = "input", 0
    for v in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512,
              "M"):
        if v == "M":
            x = b.pool(x, "max", 2, 2, name=f"features.{idx}")
            idx += 1
        else:
            x = b.conv(x, f"features.{idx}", v, 3, 1, 1, bias=True)
            x = b.act(x, "relu", f"features.{idx + 1}")
            idx += 2
    x = b.flatten(x)
    x = b.act(b.linear(x, "classifier.0", 4096), "relu", "classifier.1")
    x = b.act(b.linear(x, "classifier.3", 4096), "relu", "classifier.4")
    return b.build(b.softmax(b.linear(x, "classifier.6", 1000)))


# -- Inception v3 ------------------------------------------------------------------------------


def _bc(b: Builder, x: str, p: str, cout: int, k, stride=1, pad=0) -> str:
    """torchvision's BasicConv2d: conv without bias, BatchNorm (eps 1e-3), ReLU."""
    return b.conv_bn(x, f"{p}.conv", f"{p}.bn", cout, k, stride, pad, eps=1e-3)


def _avg3(b: Builder, x: str, p: str) -> str:
    return b.pool(x, "avg", 3, 1, 1, name=f"{p}.avg_pool")


def _inception_a(b, x, p, pool_features):
    a = _bc(b, x, f"{p}.branch1x1", 64, 1)
    c = _bc(b, _bc(b, x, f"{p}.branch5x5_1", 48, 1), f"{p}.branch5x5_2", 64, 5, pad=2)
    d = _bc(b, x, f"{p}.branch3x3dbl_1", 64, 1)
    d = _bc(b, _bc(b, d, f"{p}.branch3x3dbl_2", 96, 3, pad=1), f"{p}.branch3x3dbl_3", 96, 3, pad=1)
    e = _bc(b, _avg3(b, x, p), f"{p}.branch_pool", pool_features, 1)
    return b.concat([a, c, d, e], f"{p}.concat")


def _inception_b(b, x, p):
    a = _bc(b, x, f"{p}.branch3x3", 384, 3, 2)
    d = _bc(b, x, f"{p}.branch3x3dbl_1", 64, 1)
    d = _bc(b, _bc(b, d, f"{p}.branch3x3dbl_2", 96, 3, pad=1), f"{p}.branch3x3dbl_3", 96, 3, 2)
    return b.concat([a, d, b.pool(x, "max", 3, 2, name=f"{p}.max_pool")], f"{p}.concat")


def _inception_c(b, x, p, c7):
    a = _bc(b, x, f"{p}.branch1x1", 192, 1)
    s = _bc(b, x, f"{p}.branch7x7_1", c7, 1)
    s = _bc(b, s, f"{p}.branch7x7_2", c7, (1, 7), pad=(0, 3))
    s = _bc(b, s, f"{p}.branch7x7_3", 192, (7, 1), pad=(3, 0))
    d = _bc(b, x, f"{p}.branch7x7dbl_1", c7, 1)
    for i, (k, pad, cout) in enumerate([((7, 1), (3, 0), c7), ((1, 7), (0, 3), c7),
                                        ((7, 1), (3, 0), c7), ((1, 7), (0, 3), 192)]):
        d = _bc(b, d, f"{p}.branch7x7dbl_{i + 2}", cout, k, pad=pad)
    e = _bc(b, _avg3(b, x, p), f"{p}.branch_pool", 192, 1)
    return b.concat([a, s, d, e], f"{p}.concat")


def _inception_d(b, x, p):
    a = _bc(b, _bc(b, x, f"{p}.branch3x3_1", 192, 1), f"{p}.branch3x3_2", 320, 3, 2)
    s = _bc(b, x, f"{p}.branch7x7x3_1", 192, 1)
    s = _bc(b, s, f"{p}.branch7x7x3_2", 192, (1, 7), pad=(0, 3))
    s = _bc(b, s, f"{p}.branch7x7x3_3", 192, (7, 1), pad=(3, 0))
    s = _bc(b, s, f"{p}.branch7x7x3_4", 192, 3, 2)
    return b.concat([a, s, b.pool(x, "max", 3, 2, name=f"{p}.max_pool")], f"{p}.concat")


def _split13(b, x, p, name):
    l = _bc(b, x, f"{p}.{name}a", 384, (1, 3), pad=(0, 1))
    r = _bc(b, x, f"{p}.{name}b", 384, (3, 1), pad=(1, 0))
    return b.concat([l, r], f"{p}.{name}.concat")


def _inception_e(b, x, p):
    a = _bc(b, x, f"{p}.branch1x1", 320, 1)
    s = _split13(b, _bc(b, x, f"{p}.branch3x3_1", 384, 1), p, "branch3x3_2")
    d = _bc(b, _bc(b, x, f"{p}.branch3x3dbl_1", 448, 1), f"{p}.branch3x3dbl_2", 384, 3, pad=1)
    d = _split13(b, d, p, "branch3x3dbl_3")
    e = _bc(b, _avg3(b, x, p), f"{p}.branch_pool", 192, 1)
    return b.concat([a, s, d, e], f"{p}.concat")


def inception3(seed=0, state=None) -> Graph:
    b = Builder("inception3", (3, 299, 299), seed, state)
    x = _bc(b, "input", "Conv2d_1a_3x3", 32, 3, 2)
    x = _bc(b, x, "Conv2d_2a_3x3", 32, 3)
    x = _bc(b, x, "Conv2d_2b_3x3", 64, 3, pad=1)
    x = b.pool(x, "max", 3, 2, name="maxpool1")
    x = _bc(b, x, "Conv2d_3b_1x1", 80, 1)
    x = _bc(b, x, "Conv2d_4a_3x3", 192, 3)
    x = b.pool(x, "max", 3, 2, name="maxpool2")
    for name, pf in (("Mixed_5b", 32), ("Mixed_5c", 64), ("Mixed_5d", 64)):
        x = _inception_a(b, x, name, pf)
    x = _inception_b(b, x, "Mixed_6a")
    for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
        x = _inception_c(b, x, name, c7)
    x = _inception_d(b, x, "Mixed_7a")
    x = _inception_e(b, _inception_e(b, x, "Mixed_7b"), "Mixed_7c")
    return _head(b, x)


# -- MobileNetV2 -------------------------------------------------------------------------------


def _inverted(b: Builder, x: str, p: str, cout: int, stride: int, t: int) -> str:
    cin = b.shapes[x][0]
    hidden, i, y = cin * t, 0, x
    if t != 1:
        y = b.conv_bn(y, f"{p}.conv.0.0", f"{p}.conv.0.1", hidden, 1, act="relu6")
        i = 1
    y = b.conv_bn(y, f"{p}.conv.{i}.0", f"{p}.conv.{i}.1", hidden, 3, stride, 1, groups=hidden,
                  act="relu6")
    y = b.conv_bn(y, f"{p}.conv.{i + 1}", f"{p}.conv.{i + 2}", cout, 1, act=None)
    return b.add(x, y, f"{p}.add") if stride == 1 and cin == cout else y


def mobilenet_v2(seed=0, state=None) -> Graph:
    b = Builder("mobilenet_v2", (3, 224, 224), seed, state)
    x = b.conv_bn("input", "features.0.0", "features.0.1", 32, 3, 2, 1, act="relu6")
    idx = 1
    for t, c, n, s in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)):
        for j in range(n):
            x = _inverted(b, x, f"features.{idx}", c, s if j == 0 else 1, t)
            idx += 1
    x = b.conv_bn(x, f"features.{idx}.0", f"features.{idx}.1", 1280, 1, act="relu6")
    return _head(b, x, fc="classifier.1")


# -- EfficientNet-Lite0 ------------------------------------------------------------------------


def same_pads(size: int, k: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding (extra pixel at the end), as the Lite checkpoints were trained."""
    total = max((-(-size // stride) - 1) * stride + k - size, 0)
    return total // 2, total - total // 2


def _same(b: Builder, x: str, k: int, stride: int):
    (t, bo), (l, r) = (same_pads(s, k, stride) for s in b.shapes[x][1:])
    return (t, l, bo, r)


def _mbconv(b: Builder, x: str, p: str, cout: int, k: int, stride: int, t: int) -> str:
    cin, y = b.shapes[x][0], x
    if t != 1:
        y = b.conv_bn(y, f"{p}._expand_conv", f"{p}._bn0", cin * t, 1, eps=1e-3, act="relu6")
    hidden = b.shapes[y][0]
    y = b.conv_bn(y, f"{p}._depthwise_conv", f"{p}._bn1", hidden, k, stride, _same(b, y, k, stride),
                  groups=hidden, eps=1e-3, act="relu6")
    y = b.conv_bn(y, f"{p}._project_conv", f"{p}._bn2", cout, 1, eps=1e-3, act=None)
    return b.add(y, x, f"{p}.add") if stride == 1 and cin == cout else y


def efficientnet_lite0(seed=0, state=None) -> Graph:
    b = Builder("efficientnet_lite0", (3, 224, 224), seed, state)
    x = b.conv_bn("input", "_conv_stem", "_bn0", 32, 3, 2, _same(b, "input", 3, 2), eps=1e-3,
                  act="relu6")
    idx = 0
    for t, k, s, c, n in ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
                          (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)):
        for j in range(n):
            x = _mbconv(b, x, f"_blocks.{idx}", c, k, s if j == 0 else 1, t)
            idx += 1
    x = b.conv_bn(x, "_conv_head", "_bn1", 1280, 1, eps=1e-3, act="relu6")
    return _head(b, x, fc="_fc")
