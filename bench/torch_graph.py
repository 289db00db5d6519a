"""A KryptonDB graph as a torch module (same weights), so Captum can explain the very model the
benchmarks run. Covers the ops of the zoo; benchmark-only code."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kryptondb.graph.ir import Op


class TorchGraph(torch.nn.Module):
    def __init__(self, graph):
        super().__init__()
        self.graph = graph
        self.w = {k: torch.from_numpy(v.copy()) for k, v in graph.weights.items()}

    def forward(self, x):
        g, vals = self.graph, {}
        for n in g.nodes:
            xs = [vals[i] for i in n.inputs]
            vals[n.name] = x if n.op is Op.INPUT else self._op(n, xs)
        return vals[g.output]

    def _op(self, n, xs):
        p = [self.w[k] for k in n.params]
        if n.op is Op.CONV:
            t, l, b, r = n.attr("pads")
            return F.conv2d(F.pad(xs[0], (l, r, t, b)), p[0], p[1], n.attr("stride"), 0,
                            n.attr("dilation"), n.attr("groups"))
        if n.op in (Op.MAXPOOL, Op.AVGPOOL):
            t, l, b, r = n.attr("pads")
            fill = float("-inf") if n.op is Op.MAXPOOL else 0.0
            y = F.pad(xs[0], (l, r, t, b), value=fill)
            pool = F.max_pool2d if n.op is Op.MAXPOOL else F.avg_pool2d
            return pool(y, n.attr("kernel"), n.attr("stride"), ceil_mode=bool(n.attr("ceil_mode")))
        simple = {Op.RELU: lambda: F.relu(xs[0]),
                  Op.CLIP: lambda: torch.clamp(xs[0], n.attr("min"), n.attr("max")),
                  Op.ADD: lambda: sum(xs[1:], xs[0]),
                  Op.CONCAT: lambda: torch.cat(xs, dim=n.attr("axis") + 1),
                  Op.GLOBAL_AVGPOOL: lambda: xs[0].mean(dim=(2, 3), keepdim=True),
                  Op.FLATTEN: lambda: xs[0].flatten(1),
                  Op.GEMM: lambda: F.linear(xs[0], p[0], p[1]),
                  Op.SOFTMAX: lambda: torch.softmax(xs[0], dim=n.attr("axis") + 1)}
        if n.op not in simple:
            raise NotImplementedError(f"{n.op.value} in the torch mirror")
        return simple[n.op]()
