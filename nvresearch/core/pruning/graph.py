"""Channel dependency analysis by ``torch.fx`` tracing (Molchanov et al., CVPR 2019; Torch-Pruning DepGraph).

Which channels must be removed together is found from the traced graph, never from hard-coded module indices:

- every ``Conv2d`` (``groups == 1``) and ``Linear`` *produces* a fresh channel space (a "variable");
- zero-preserving element-wise modules and functions (BatchNorm, ReLU/ReLU6, pooling, dropout, flatten, ...) carry
  their input's channels unchanged;
- a residual addition (or any element-wise binary op between two channel-carrying tensors) *unifies* the channel
  spaces of its operands: the channels that meet in it form one group, like the paper's shared stage skip gate;
- a depthwise convolution (``groups == in_channels == out_channels``) ties its output channels to its input channels;
  other grouped convolutions fix their input and output channels (not prunable);
- a concatenation along the channel dimension (DenseNet) lays its inputs' spaces side by side: each input keeps its
  own group, and every consumer of the concatenation sees each group at its offset;
- ``flatten`` after pooling maps channel ``c`` to the ``c * s .. c * s + s - 1`` inputs of the next ``Linear``;
- the network input, the network output and anything reaching an unknown operation are fixed.

Each unfixed channel space becomes one :class:`ChannelGroup`. :class:`DependencyGraph` can mask a set of channels
(forward hooks that zero them everywhere they live), count the MACs and parameters that would remain, and physically
remove them (:func:`nvresearch.core.pruning.surgery.remove_channels`).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ChannelGroup", "DependencyGraph", "GatePoint"]

# Modules that map zeros to zeros channel by channel, so a channel that is zero before them is zero after them.
_PASS_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Hardswish,
    nn.Tanh,
    nn.Hardtanh,
    nn.Dropout,
    nn.Dropout2d,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.Identity,
)
_PASS_FUNCTIONS: set[object] = {
    F.relu,
    torch.relu,
    F.relu6,
    F.leaky_relu,
    F.gelu,
    F.silu,
    F.hardswish,
    F.hardtanh,
    torch.tanh,
    F.dropout,
    F.max_pool2d,
    F.avg_pool2d,
    F.adaptive_avg_pool2d,
    F.adaptive_max_pool2d,
    torch.nn.functional.max_pool2d_with_indices,
}
_PASS_METHODS = {"relu", "relu_", "tanh", "contiguous", "clone", "detach"}
# Channel-wise but not zero-preserving (sigmoid(0) = 1/2): their channels may only end in a product with a
# zero-preserving tensor of the same channels (squeeze-excitation), where a removed channel is zero either way.
_NONZERO_MODULES: tuple[type[nn.Module], ...] = (nn.Sigmoid, nn.Hardsigmoid)
_NONZERO_FUNCTIONS: set[object] = {torch.sigmoid, F.sigmoid, F.hardsigmoid}
_NONZERO_METHODS = {"sigmoid"}
# Modules that are zero-preserving per channel and are identified by name (torchvision.ops is not imported here).
_PASS_MODULE_NAMES = {"StochasticDepth"}
_BINARY = {operator.add, operator.iadd, operator.sub, operator.mul, operator.imul, torch.add, torch.sub, torch.mul}
_BINARY_METHODS = {"add", "add_", "sub", "mul", "mul_"}

Seg = tuple[int, int]  # (variable id, length)

#: Ids of the forward hooks that pruning code registers (masks, gates); a deep copy must not inherit them.
PRUNING_HOOK_IDS: set[int] = set()


def register_pruning_hook(module: nn.Module, hook: Callable[..., object]) -> torch.utils.hooks.RemovableHandle:
    """``module.register_forward_hook(hook)``, remembered so that :func:`strip_pruning_hooks` can drop copies."""
    handle = module.register_forward_hook(hook)
    PRUNING_HOOK_IDS.add(handle.id)
    return handle


def strip_pruning_hooks(model: nn.Module) -> None:
    """Remove every pruning hook from ``model`` (e.g. a deep copy of a network being pruned)."""
    for m in model.modules():
        for hid in [h for h in m._forward_hooks if h in PRUNING_HOOK_IDS]:
            m._forward_hooks.pop(hid, None)
            m._forward_hooks_with_kwargs.pop(hid, None)
            m._forward_hooks_always_called.pop(hid, None)


@dataclass(frozen=True)
class GatePoint:
    """Where the paper's gate for a group sits: the output of ``module`` (a BN right after the producer, else the
    producer itself), channels ``offset .. offset + length - 1`` of that output."""

    module: str
    offset: int
    length: int
    is_bn: bool


@dataclass
class ChannelGroup:
    """Channels that can only be removed together (one prunable "neuron" per channel index).

    Attributes:
        name: The first producer's module name (unique per group).
        size: Number of channels.
        producers: ``(module name, offset)`` of every conv/linear whose output channels these are.
        bns: ``(module name, offset)`` of every BatchNorm that normalises them.
        consumers: ``(module name, offset, expand)`` of every conv/linear reading them as input channels.
        gate_points: Where the paper's gate sits for each producer (see :class:`GatePoint`).
        stream_points: For a residual stream (channels that meet in additions), the outputs of the blocks that end
            in those additions (after the block's final ReLU): where the reference's shared skip gate sits
            (official ``models/resnet.py``).
            Empty for other groups, and when an addition is not the output of a module called once (then the
            stream cannot be gated by a module hook).
    """

    name: str
    size: int
    producers: list[tuple[str, int]] = field(default_factory=list)
    bns: list[tuple[str, int]] = field(default_factory=list)
    consumers: list[tuple[str, int, int]] = field(default_factory=list)
    gate_points: list[GatePoint] = field(default_factory=list)
    stream_points: list[GatePoint] = field(default_factory=list)
    var: int = -1

    def __repr__(self) -> str:
        return (
            f"ChannelGroup({self.name!r}, size={self.size}, producers={[p for p, _ in self.producers]}, "
            f"bns={[b for b, _ in self.bns]}, consumers={[c for c, _, _ in self.consumers]})"
        )


class _Vars:
    """Union-find over channel spaces with a length and a fixed flag per root."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.length: list[int] = []
        self.fixed: list[bool] = []

    def new(self, length: int, fixed: bool = False) -> int:
        self.parent.append(len(self.parent))
        self.length.append(int(length))
        self.fixed.append(fixed)
        return len(self.parent) - 1

    def find(self, v: int) -> int:
        while self.parent[v] != v:
            self.parent[v] = self.parent[self.parent[v]]
            v = self.parent[v]
        return v

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if self.length[ra] != self.length[rb]:
            self.fix(ra)
            self.fix(rb)
            return
        self.parent[rb] = ra
        self.fixed[ra] = self.fixed[ra] or self.fixed[rb]

    def fix(self, v: int) -> None:
        self.fixed[self.find(v)] = True


@dataclass
class _Info:
    segs: list[Seg]
    expand: int = 1  # elements per channel along dim 1 (after a flatten)
    nonzero: bool = False  # a removed channel is not zero here (after a sigmoid): only a product may consume it
    last: bool = False  # channels on the last dim (channels-last after a permute, ConvNeXt's Linear layers)


def _shape(node: object) -> tuple[int, ...] | None:
    meta = getattr(node, "meta", {}).get("tensor_meta")
    shape = getattr(meta, "shape", None)
    return tuple(int(s) for s in shape) if shape is not None else None


class DependencyGraph:
    """Channel groups of a CNN found by ``torch.fx`` tracing, with masking, MAC counting and removal.

    Args:
        model: Any network that ``torch.fx.symbolic_trace`` can trace (torchvision ResNet/VGG/DenseNet/MobileNetV2,
            ``nn.Sequential`` CNNs, most plain ``forward`` methods). It is not modified.
        example_input: One input batch, used once (eval mode, no grad) to record every tensor's shape.

    Attributes:
        groups: The prunable :class:`ChannelGroup` s, in graph order of their first producer.

    Raises:
        TypeError: If the model cannot be traced (the message names the fx error).
    """

    def __init__(self, model: nn.Module, example_input: torch.Tensor) -> None:
        from torch.fx import symbolic_trace
        from torch.fx.passes.shape_prop import ShapeProp

        try:
            gm = symbolic_trace(model)
        except Exception as err:  # noqa: BLE001 - fx raises many kinds; report them uniformly
            raise TypeError(f"cannot trace {type(model).__name__} with torch.fx: {err}") from err
        was_training = model.training
        try:
            model.eval()
            with torch.no_grad():
                ShapeProp(gm).propagate(example_input)
        finally:
            model.train(was_training)
        self.model = model
        self.input_shape = tuple(example_input.shape)
        self._modules = dict(model.named_modules())
        self._vars = _Vars()
        self._out: dict[str, list[Seg]] = {}  # conv/linear producers and depthwise convs: output channel segments
        self._bn: dict[str, list[Seg]] = {}
        self._in: dict[str, tuple[list[Seg], int]] = {}
        self._spatial: dict[str, int] = {}  # conv: H_out * W_out; linear: rows per sample
        self._gate_nodes: dict[str, str] = {}  # producer -> module whose output holds its gate
        self._adds: list[tuple[object, int]] = []  # residual additions: (fx node, channel variable)
        self._streams: dict[int, list[str | None]] = {}  # channel variable -> module output after each addition
        self._trace(gm)
        self._build_groups()
        self._keep: dict[int, torch.Tensor] = {}
        self._mask_cache: dict[str, torch.Tensor] | None = None

    # ------------------------------------------------------------------ analysis
    def _trace(self, gm: torch.fx.GraphModule) -> None:
        V = self._vars
        info: dict[object, _Info | None] = {}

        def fix(i: _Info | None) -> None:
            for v, _ in i.segs if i is not None else []:
                V.fix(v)

        def fresh(node: object, fixed: bool) -> _Info | None:
            shape = _shape(node)
            if shape is None or len(shape) < 2:
                return None
            return _Info([(V.new(shape[1], fixed=fixed), shape[1])])

        def unify(a: _Info, b: _Info) -> bool:
            if [n for _, n in a.segs] != [n for _, n in b.segs] or a.expand != b.expand or a.last != b.last:
                return False
            for (va, _), (vb, _) in zip(a.segs, b.segs, strict=True):
                V.union(va, vb)
            return True

        def tensor_args(node: object) -> list[_Info | None]:
            out = []
            for a in list(node.args) + list(node.kwargs.values()):
                if isinstance(a, (list, tuple)):
                    out.extend(info.get(x) for x in a if hasattr(x, "op"))
                elif hasattr(a, "op"):
                    out.append(info.get(a))
            return out

        def unknown(node: object) -> _Info | None:
            for i in tensor_args(node):
                fix(i)
            return fresh(node, fixed=True)

        users_of: dict[object, list[object]] = {n: list(n.users) for n in gm.graph.nodes}
        for node in gm.graph.nodes:
            result: _Info | None
            if node.op == "placeholder":
                result = fresh(node, fixed=True)
            elif node.op == "get_attr":
                result = fresh(node, fixed=True)
            elif node.op == "output":
                for i in tensor_args(node):
                    fix(i)
                continue
            elif node.op == "call_module":
                result = self._module_rule(node, gm, info, fresh, unify, fix, unknown, users_of)
            else:
                result = self._function_rule(node, info, unify, fix, unknown)
            info[node] = result
        self._find_streams(gm, users_of)

    def _find_streams(self, gm: torch.fx.GraphModule, users_of: Mapping[object, list[object]]) -> None:
        """For each residual addition, the module whose output is the stream after it (the reference's skip gate).

        From the addition, follow single-user zero-preserving operations (the block's final ReLU) to the stream
        tensor; its module is the innermost one (in fx's ``nn_module_stack``) that the tensor leaves, called once.
        """
        calls: dict[str, int] = {}
        for node in gm.graph.nodes:
            for key in node.meta.get("nn_module_stack", {}):
                base = key.split("@")[0]
                calls[base] = max(calls.get(base, 0), int(key.split("@")[1]) + 1 if "@" in key else 1)

        def passes(node: object) -> bool:
            if node.op == "call_module":
                return isinstance(gm.get_submodule(str(node.target)), _PASS_MODULES)
            if node.op == "call_method":
                return node.target in _PASS_METHODS
            return node.op == "call_function" and node.target in _PASS_FUNCTIONS

        def stack(node: object) -> list[str]:
            return [k.split("@")[0] for k in node.meta.get("nn_module_stack", {})]

        for add, var in self._adds:
            end, inside = add, stack(add)
            while len(users_of.get(end, [])) == 1 and passes(users_of[end][0]):
                if stack(users_of[end][0])[: len(inside)] != inside:  # not past the block's end (a global pool)
                    break
                end = users_of[end][0]
            module = None
            for name in reversed(stack(end)):
                if calls.get(name, 0) != 1:
                    continue
                if all(name not in stack(u) for u in users_of.get(end, [])):
                    module = name
                break  # only the innermost module called once can have this tensor as its output
            self._streams.setdefault(var, []).append(module)

    def _module_rule(self, node, gm, info, fresh, unify, fix, unknown, users_of) -> _Info | None:  # noqa: ANN001
        name = str(node.target)
        mod = gm.get_submodule(name)
        src = info.get(node.args[0]) if node.args and hasattr(node.args[0], "op") else None
        in_shape = _shape(node.args[0]) if node.args else None
        out_shape = _shape(node)
        if isinstance(mod, _NONZERO_MODULES) and src is not None and len(node.args) == 1:
            return _Info(list(src.segs), src.expand, nonzero=True)
        if isinstance(mod, _PASS_MODULES) or type(mod).__name__ in _PASS_MODULE_NAMES:
            return src if src is not None else fresh(node, fixed=True)
        if src is not None and src.last and not isinstance(mod, nn.Linear):
            if out_shape is None or len(out_shape) != 4 or out_shape != in_shape:
                return unknown(node)
            # LayerNorm over channels (ConvNeXt) mixes them: its channels are kept, but they stay channels-last
            fix(src)
            return _Info([(self._vars.new(out_shape[-1], fixed=True), out_shape[-1])], last=True)
        if src is not None and src.nonzero:  # a removed channel would be non-zero here: keep these channels
            fix(src)
            src.nonzero = False
        if isinstance(mod, nn.Conv2d):
            if src is None or src.expand != 1 or len(node.args) != 1:
                return unknown(node)
            self._spatial[name] = out_shape[-2] * out_shape[-1] if out_shape else 0
            if mod.groups == 1:
                self._record_in(name, src, unify)
                out = self._record_out(name, fresh(node, fixed=False), unify)
            elif mod.groups == mod.in_channels == mod.out_channels:  # depthwise: out channel c reads in channel c
                self._record_in(name, src, unify)
                out = self._record_out(name, _Info(list(src.segs)), unify)
            else:
                fix(src)
                out = fresh(node, fixed=True)
                self._record_in(name, src, unify)
                self._out.setdefault(name, out.segs)
            self._gate_nodes[name] = self._gate_after(node, gm, users_of)
            return out
        if isinstance(mod, nn.Linear):
            if src is None or in_shape is None or len(node.args) != 1 or out_shape is None:
                return unknown(node)
            if len(in_shape) != 2 and not (src.last and src.expand == 1):
                return unknown(node)
            self._spatial[name] = _prod(out_shape[1:-1])  # rows per sample (positions of a channels-last map)
            self._record_in(name, src, unify)
            self._gate_nodes[name] = self._gate_after(node, gm, users_of)
            n = out_shape[-1]
            return self._record_out(name, _Info([(self._vars.new(n), n)], last=len(out_shape) > 2), unify)
        if isinstance(mod, (nn.BatchNorm2d, nn.BatchNorm1d)):
            if src is None or src.expand != 1:
                return unknown(node)
            if name in self._bn:
                if not unify(_Info(self._bn[name]), src):
                    fix(src)
                    fix(_Info(self._bn[name]))
            else:
                self._bn[name] = list(src.segs)
            return src
        if isinstance(mod, nn.Flatten):
            return self._flatten(node, src, in_shape, out_shape, int(mod.start_dim), unknown)
        if isinstance(mod, _PASS_MODULES):
            return src if src is not None else fresh(node, fixed=True)
        return unknown(node)

    def _function_rule(self, node, info, unify, fix, unknown) -> _Info | None:  # noqa: ANN001
        target = node.target
        args = node.args
        first = info.get(args[0]) if args and hasattr(args[0], "op") else None
        if _shape(node) is None:  # sizes, shapes, python values: no channels flow
            return None
        if target in _PASS_FUNCTIONS or (node.op == "call_method" and target in _PASS_METHODS):
            return first if first is not None else unknown(node)
        if getattr(target, "__name__", "") == "stochastic_depth" and first is not None and not first.last:
            return first if first is not None else unknown(node)
        if target is torch.permute or (node.op == "call_method" and target == "permute"):
            dims = args[1] if len(args) == 2 and isinstance(args[1], (list, tuple)) else args[1:]
            dims = tuple(dims) or tuple(node.kwargs.get("dims", ()))
            if first is not None and first.expand == 1 and not first.nonzero:
                if dims == (0, 2, 3, 1) and not first.last:
                    return _Info(list(first.segs), last=True)
                if dims == (0, 3, 1, 2) and first.last:
                    return _Info(list(first.segs))
            return unknown(node)
        if target in _NONZERO_FUNCTIONS or (node.op == "call_method" and target in _NONZERO_METHODS):
            return _Info(list(first.segs), first.expand, nonzero=True) if first is not None else unknown(node)
        if target in _BINARY or (node.op == "call_method" and target in _BINARY_METHODS):
            ops = [o for o in (info.get(a) for a in args[:2] if hasattr(a, "op")) if o is not None]
            shapes = [_shape(a) for a in args[:2] if hasattr(a, "op")]
            is_mul = target in (operator.mul, operator.imul, torch.mul) or target in ("mul", "mul_")
            if any(o.nonzero for o in ops) and not (is_mul and len(ops) == 2 and not all(o.nonzero for o in ops)):
                for o in ops:  # a removed channel would not be zero after this: keep these channels
                    if o.nonzero:
                        fix(o)
                        o.nonzero = False
            if len(ops) == 1 and len(shapes) == 1:
                return ops[0]
            if len(ops) == 2 and all(s is not None and len(s) >= 2 for s in shapes):
                if shapes[0][1] == shapes[1][1] and unify(ops[0], ops[1]):
                    if is_mul:  # zero times a sigmoid is zero
                        return next(o for o in ops if not o.nonzero)
                    is_add = target in (operator.add, operator.iadd, torch.add) or target in ("add", "add_")
                    if is_add and len(ops[0].segs) == 1 and _shape(node) == shapes[0] == shapes[1]:
                        self._adds.append((node, ops[0].segs[0][0]))
                    return ops[0]
            return unknown(node)
        flat = [x for a in args for x in (a if isinstance(a, (list, tuple)) else [a]) if hasattr(x, "op")]
        if any(i is not None and i.last for i in (info.get(a) for a in flat)):
            return unknown(node)
        for i in (info.get(a) for a in flat):
            if i is not None and i.nonzero:  # a removed channel would be non-zero here: keep these channels
                fix(i)
                i.nonzero = False
        if target in (torch.flatten, "flatten"):
            start = args[1] if len(args) > 1 else node.kwargs.get("start_dim", 0 if target is torch.flatten else 0)
            return self._flatten(node, first, _shape(args[0]), _shape(node), int(start), unknown)
        if node.op == "call_method" and target in ("view", "reshape"):
            in_shape, out_shape = _shape(args[0]), _shape(node)
            if in_shape == out_shape:
                return first
            return self._flatten(node, first, in_shape, out_shape, 1, unknown)
        if target in (torch.cat, "cat"):
            tensors = args[0] if isinstance(args[0], (list, tuple)) else args
            dim = args[1] if len(args) > 1 else node.kwargs.get("dim", 0)
            parts = [info.get(t) for t in tensors]
            out_shape = _shape(node)
            if dim < 0:
                dim += len(out_shape)
            if dim != 1 or any(p is None or p.expand != 1 for p in parts):
                return unknown(node)
            return _Info([s for p in parts for s in p.segs])
        if node.op == "call_method" and target == "mean":
            dims = args[1] if len(args) > 1 else node.kwargs.get("dim")
            dims = (dims,) if isinstance(dims, int) else tuple(dims or ())
            in_shape = _shape(args[0])
            if first is not None and dims and all(d % len(in_shape) >= 2 for d in dims):
                return first
        return unknown(node)

    def _flatten(self, node, src, in_shape, out_shape, start, unknown) -> _Info | None:  # noqa: ANN001
        if src is None or in_shape is None or out_shape is None:
            return unknown(node)
        if start == 1 and len(out_shape) == 2 and len(in_shape) >= 2 and out_shape[1] == _prod(in_shape[1:]):
            return _Info(list(src.segs), src.expand * _prod(in_shape[2:]))
        return unknown(node)

    def _record_in(self, name: str, src: _Info, unify: Callable[[_Info, _Info], bool]) -> None:
        if name in self._in:
            prev_segs, prev_expand = self._in[name]
            if not unify(_Info(prev_segs, prev_expand), src):
                for v, _ in prev_segs + src.segs:
                    self._vars.fix(v)
        else:
            self._in[name] = (list(src.segs), src.expand)

    def _record_out(self, name: str, out: _Info, unify: Callable[[_Info, _Info], bool]) -> _Info:
        if name in self._out:  # a module called twice must keep one set of output channels
            prev = _Info(self._out[name])
            if not unify(prev, out):
                for v, _ in prev.segs + out.segs:
                    self._vars.fix(v)
            return prev
        self._out[name] = list(out.segs)
        return out

    @staticmethod
    def _gate_after(node, gm, users_of) -> str:  # noqa: ANN001
        """The paper's gate sits after the BN that directly follows a producer (paper Table 2), else after it."""
        users = users_of.get(node, [])
        if len(users) == 1 and users[0].op == "call_module":
            mod = gm.get_submodule(str(users[0].target))
            if isinstance(mod, (nn.BatchNorm2d, nn.BatchNorm1d)) and mod.affine:
                return str(users[0].target)
        return str(node.target)

    def _build_groups(self) -> None:
        V = self._vars
        by_root: dict[int, ChannelGroup] = {}

        def group_of(v: int) -> ChannelGroup | None:
            r = V.find(v)
            if V.fixed[r]:
                return None
            if r not in by_root:
                by_root[r] = ChannelGroup(name="", size=V.length[r], var=r)
            return by_root[r]

        for name, segs in self._out.items():
            offset = 0
            for v, n in segs:
                g = group_of(v)
                if g is not None:
                    g.producers.append((name, offset))
                    gate = self._gate_nodes.get(name, name)
                    g.gate_points.append(GatePoint(gate, offset, n, gate != name))
                    if not g.name:
                        g.name = name if len(segs) == 1 else f"{name}[{offset}:{offset + n}]"
                offset += n
        for name, segs in self._bn.items():
            offset = 0
            for v, n in segs:
                g = group_of(v)
                if g is not None:
                    g.bns.append((name, offset))
                offset += n
        for name, (segs, expand) in self._in.items():
            offset = 0
            for v, n in segs:
                g = group_of(v)
                if g is not None:
                    g.consumers.append((name, offset, expand))
                offset += n * expand
        streams: dict[int, list[str | None]] = {}
        for var, modules in self._streams.items():
            streams.setdefault(V.find(var), []).extend(modules)
        for root, modules in streams.items():
            g = by_root.get(root)
            if g is not None and all(m is not None for m in modules):
                g.stream_points = [GatePoint(m, 0, g.size, False) for m in dict.fromkeys(modules)]
        order = {name: i for i, name in enumerate(self._modules)}
        groups = [g for g in by_root.values() if g.producers]
        groups.sort(key=lambda g: order.get(g.producers[0][0], 0))
        self.groups: list[ChannelGroup] = groups

    # ------------------------------------------------------------------ keep masks
    @property
    def num_channels(self) -> int:
        """Total number of prunable channels (the paper's "neurons")."""
        return sum(g.size for g in self.groups)

    def keep_masks(self) -> list[torch.Tensor]:
        """Current keep masks, one boolean ``(size,)`` tensor per group (all ``True`` until :meth:`set_keep`)."""
        return [self._keep.get(g.var, torch.ones(g.size, dtype=torch.bool)).clone() for g in self.groups]

    def set_keep(self, keep: Sequence[torch.Tensor]) -> None:
        """Set which channels of every group are kept (``True``) or removed; at least one must stay per group."""
        if len(keep) != len(self.groups):
            raise ValueError(f"expected {len(self.groups)} keep masks, got {len(keep)}")
        for g, k in zip(self.groups, keep, strict=True):
            k = torch.as_tensor(k).detach().cpu().flatten().bool()
            if k.numel() != g.size:
                raise ValueError(f"group {g.name!r} has {g.size} channels, keep mask has {k.numel()}")
            if not bool(k.any()):
                raise ValueError(f"group {g.name!r}: cannot remove all {g.size} channels")
            self._keep[g.var] = k.clone()
        self._mask_cache = None

    def _module_keep(self, segs: list[Seg], expand: int = 1) -> torch.Tensor:
        parts = []
        for v, n in segs:
            r = self._vars.find(v)
            k = self._keep.get(r) if not self._vars.fixed[r] else None
            parts.append(torch.ones(n, dtype=torch.bool) if k is None else k)
        keep = torch.cat(parts) if parts else torch.ones(0, dtype=torch.bool)
        return keep.repeat_interleave(expand) if expand > 1 else keep

    def kept_indices(self) -> dict[str, dict[str, torch.Tensor]]:
        """Per module, the indices to keep along ``out`` (conv/linear/BN channels) and ``in`` (input features)."""
        result: dict[str, dict[str, torch.Tensor]] = {}
        for name, segs in self._out.items():
            result.setdefault(name, {})["out"] = self._module_keep(segs).nonzero().flatten()
        for name, segs in self._bn.items():
            result.setdefault(name, {})["out"] = self._module_keep(segs).nonzero().flatten()
        for name, (segs, expand) in self._in.items():
            result.setdefault(name, {})["in"] = self._module_keep(segs, expand).nonzero().flatten()
        return result

    def _output_masks(self) -> dict[str, torch.Tensor]:
        """Per producer/BN module, a float mask of its output channels (only modules with a removed channel)."""
        if self._mask_cache is None:
            masks = {}
            for name, segs in list(self._out.items()) + list(self._bn.items()):
                keep = self._module_keep(segs)
                if not bool(keep.all()):
                    masks[name] = keep.float()
            self._mask_cache = masks
        return self._mask_cache

    @contextmanager
    def masked(self, model: nn.Module | None = None) -> Iterator[nn.Module]:
        """Zero the removed channels everywhere they live (forward hooks on producers and BNs) inside the block.

        The masked network computes exactly what the physically pruned one does (zero channels contribute nothing
        to consumers), so it is the reference for :func:`~nvresearch.core.pruning.surgery.remove_channels`.
        ``model`` defaults to the traced model (a copy with the same module names works too).
        """
        handles = self.attach_masks(model)
        try:
            yield model if model is not None else self.model
        finally:
            for h in handles:
                h.remove()

    def attach_masks(self, model: nn.Module | None = None) -> list[torch.utils.hooks.RemovableHandle]:
        """Register the masking hooks permanently (they read the current keep masks); returns their handles."""
        modules = dict((model if model is not None else self.model).named_modules())
        handles = []
        for name in list(self._out) + list(self._bn):
            handles.append(register_pruning_hook(modules[name], self._mask_hook(name)))
        return handles

    def _mask_hook(self, name: str) -> Callable[..., torch.Tensor | None]:
        def hook(_m: nn.Module, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> torch.Tensor | None:
            mask = self._output_masks().get(name)
            if mask is None:
                return None
            shape = [1] * (out.dim() - 1) + [-1] if isinstance(_m, nn.Linear) else [1, -1] + [1] * (out.dim() - 2)
            return out * mask.to(device=out.device, dtype=out.dtype).view(shape)

        return hook

    # ------------------------------------------------------------------ counting
    def _plan(self) -> tuple[list[tuple], int]:
        """Static counting plan: per conv/linear/BN its constants and (root, length) segments; other params."""
        if getattr(self, "_plan_cache", None) is not None:
            return self._plan_cache
        if any(isinstance(m, (nn.Conv2d, nn.Linear)) and n not in self._spatial for n, m in self._modules.items()):
            raise RuntimeError("some Conv2d/Linear modules were not reached by the traced forward; cannot count MACs")

        def roots(segs: list[Seg] | None) -> list[tuple[int, int]] | None:
            if segs is None:
                return None
            return [(-1 if self._vars.fixed[self._vars.find(v)] else self._vars.find(v), n) for v, n in segs]

        plan: list[tuple] = []
        counted: set[str] = set()
        for name, mod in self._modules.items():
            ins = self._in.get(name)
            in_roots, expand = (roots(ins[0]), ins[1]) if ins is not None else (None, 1)
            if isinstance(mod, nn.Conv2d) and name in self._spatial:
                dw = mod.groups > 1 and mod.groups == mod.in_channels == mod.out_channels
                k = mod.kernel_size[0] * mod.kernel_size[1]
                plan.append(
                    (
                        "conv",
                        mod.out_channels,
                        mod.in_channels,
                        mod.groups,
                        dw,
                        k,
                        self._spatial[name],
                        mod.bias is not None,
                        roots(self._out.get(name)),
                        in_roots,
                        expand,
                    )
                )
                counted.add(name)
            elif isinstance(mod, nn.Linear) and name in self._spatial:
                plan.append(
                    (
                        "linear",
                        mod.out_features,
                        mod.in_features,
                        1,
                        False,
                        1,
                        self._spatial[name],
                        mod.bias is not None,
                        roots(self._out.get(name)),
                        in_roots,
                        expand,
                    )
                )
                counted.add(name)
            elif isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)) and name in self._bn and mod.affine:
                plan.append(("bn", mod.num_features, 0, 1, False, 0, 0, False, roots(self._bn[name]), None, 1))
                counted.add(name)
        counted_ids = {id(p) for n in counted for p in self._modules[n].parameters(recurse=False)}
        other = 0
        seen: set[int] = set()
        for p in self.model.parameters():
            if id(p) not in counted_ids and id(p) not in seen:
                other += p.numel()
            seen.add(id(p))
        self._plan_cache = (plan, other)
        return self._plan_cache

    def count(self, keep: Sequence[torch.Tensor] | None = None, bn_term: bool = True) -> tuple[int, int]:
        """MACs per sample and parameters of the network with only the kept channels (the reference's MAC convention).

        Equals :func:`~nvresearch.core.pruning.flops.count_macs_and_params` of the physically pruned network,
        without building it. ``keep`` defaults to the current keep masks.
        """
        if keep is not None:
            if len(keep) != len(self.groups):
                raise ValueError(f"expected {len(self.groups)} keep masks, got {len(keep)}")
            kept = {g.var: int(torch.as_tensor(k).sum()) for g, k in zip(self.groups, keep, strict=True)}
        else:
            kept = {v: int(k.sum()) for v, k in self._keep.items()}
        plan, params = self._plan()

        def n_kept(rts: list[tuple[int, int]] | None, full: int, expand: int = 1) -> int:
            if rts is None:
                return full
            return sum(kept.get(r, n) if r >= 0 else n for r, n in rts) * expand

        macs = 0
        for kind, n_out, n_in, groups, dw, k, hw, bias, out_rts, in_rts, expand in plan:
            out_c = n_kept(out_rts, n_out)
            if kind == "bn":
                params += 2 * out_c
                continue
            in_c = n_kept(in_rts, n_in, expand)
            if kind == "conv":
                g = out_c if dw else groups
                macs += out_c * (in_c // g) * k * hw + (3 * hw if bn_term else 0)
                params += out_c * (in_c // g) * k + (out_c if bias else 0)
            else:
                macs += out_c * in_c * hw
                params += out_c * in_c + (out_c if bias else 0)
        return macs, params

    def group_costs(self, bn_term: bool = True) -> torch.Tensor:
        """MACs saved by removing one channel of each group alone (from the full network). Shape: ``(G,)``."""
        full, _ = self.count([torch.ones(g.size, dtype=torch.bool) for g in self.groups], bn_term)
        costs = []
        for i, g in enumerate(self.groups):
            keep = [torch.ones(h.size, dtype=torch.bool) for h in self.groups]
            if g.size < 2:
                costs.append(0.0)
                continue
            keep[i][0] = False
            costs.append(float(full - self.count(keep, bn_term)[0]))
        return torch.tensor(costs)


def _prod(xs: Sequence[int]) -> int:
    out = 1
    for x in xs:
        out *= int(x)
    return out


def named_groups(groups: Sequence[ChannelGroup]) -> Mapping[str, ChannelGroup]:
    """``{group.name: group}``."""
    return {g.name: g for g in groups}
