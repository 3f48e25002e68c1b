"""Views inside a trace: in-place changes through a view reach the tensor it views.

# NOTE: [Views while tracing]
Eagerly, a view (``x[1:3]``, ``x.t()``, ``x.reshape(...)``, ``x.detach()``, ``x.data``)
shares its tensor's memory: an in-place change through either is seen by both. A graph
has values, not memory, so the tracer keeps for each traced view its root (the real or
traced tensor whose memory it shares; never a view itself), the view ops from the root to
it, and an "index shadow": the same ops applied to an int8 array of the root's shape. The
shadow answers what memory answers eagerly: whether NumPy returned a view at all (a
reshape of a transposed layout copies, and then there is nothing to track), which
elements of the root the view covers, and whether it is writeable (broadcasts are not).
An in-place op on a view writes its result back into the root (``_write_through``); a
view read after its root changed is rebuilt from the root's current value
(``_refresh``; for a traced root at once, ``root_changed``: the root may be a
temporary that is gone before the view is read). So ``x[1:3].add_(1)``, ``p.data.mul_(0.9)``, ``x.detach().zero_()`` and
``x[0] = v`` inside a compiled function change ``x`` as they do eagerly.

The state these methods use (``_shadows``) is set up in ``Tracer.__init__`` (trace.py).
"""
from __future__ import annotations

import weakref

import numpy as np

from ..autograd_tape import _camel, is_grad_enabled
from ..errors import ShapeError
from ..ops import registry
from .tracer_tensor import TracerTensor


class _View:
    """What the tracer knows of a traced view ([Views while tracing]). A traced root is held
    weakly: once it is gone (a temporary a composite reshaped, as the 1-D matmul's product)
    no other tensor shares the memory, and the view is a tensor of its own, as eagerly
    ([Views of dead tensors] in autograd_tape.py)."""
    __slots__ = ("_root", "chain", "shadow", "root_shadow", "source", "untracked")

    def __init__(self, root, chain, shadow, root_shadow, source, untracked=False):
        self._root = weakref.ref(root) if isinstance(root, TracerTensor) else root
        self.chain = chain      # ((op, attrs), ...) from the root's value to the view's
        self.shadow = shadow    # the chain applied to the root's int8 shadow
        self.root_shadow = root_shadow
        self.source = source    # the root's value the view's value was computed from
        # Made through ``.data``: its in-place changes are hidden from autograd's version
        # counter, as eagerly ([Changes through .data] in trace.py).
        self.untracked = untracked

    @property
    def root(self):
        """The tensor whose memory the view shares, or None when it no longer exists."""
        root = self._root
        return root() if isinstance(root, weakref.ref) else root


class TracerViews:
    """The methods of ``Tracer`` that track views ([Views while tracing])."""

    def alias(self, t) -> "TracerTensor":
        """``t.data``: the same memory, outside autograd."""
        out = self.wrap(self.value_of(t), False)
        self._note_view(t, out, registry.get("detach"), {})
        if out._view is not None:
            out._view.untracked = True
        return out

    def live_view(self, t):
        """``t``'s view record, or None when it is no view (any more)."""
        view = t._view
        if view is not None and view.root is None:
            t._view = view = None
        return view

    def _shadow(self, root):
        if isinstance(root, TracerTensor):  # kept on the root itself: no reference from here
            shadow = root.__dict__.get("_shadow")
            if shadow is None:
                shadow = root._shadow = np.zeros(tuple(root.shape), np.int8)
            return shadow
        entry = self._shadows.get(id(root))
        if entry is None:
            entry = self._shadows[id(root)] = (root, np.zeros(tuple(root.shape), np.int8))
            self._keep.append(root)
        return entry[1]

    def _root_value(self, root):
        return root._value if isinstance(root, TracerTensor) else self.value_of(root)

    def _note_view(self, parent, out, op, attrs) -> None:
        """``out = op(parent)`` for a view op: record it as a view when eager mode's NumPy
        result would share the parent's memory."""
        view = self.live_view(parent) if isinstance(parent, TracerTensor) else None
        if view is not None:
            root, chain, parent_shadow = view.root, view.chain, view.shadow
            root_shadow, untracked = view.root_shadow, view.untracked
        else:
            root, chain, untracked = parent, (), False
            parent_shadow = root_shadow = self._shadow(parent)
        shadow = np.asarray(op.impl(parent_shadow, **attrs))
        if shadow.size == 0 or not np.may_share_memory(shadow, root_shadow):
            return  # NumPy copied (a reshape of a transposed layout): not a view
        out._view = _View(root, chain + ((op, attrs),), shadow, root_shadow,
                          self._root_value(root), untracked)
        if isinstance(root, TracerTensor):
            root.__dict__.setdefault("_views", []).append(weakref.ref(out))
            # One version counter, as eagerly: the view's changes count on the root's and
            # back, also once the root is gone (a temporary whose view is saved by an op).
            out._version = root._version
            self._note_view_value(out)

    def root_changed(self, root, recorded: bool = False) -> None:
        """A traced root got a new value: its views take it now, not when next read, since
        the root may be gone by then (a temporary inside the function) while a view of it
        is returned (see [Views while tracing]). ``recorded``: autograd recorded the change
        (a new grad_fn for the root), after which a backward through a view taken before
        it is eager mode's error ([In-place through views] in autograd_tape.py): every value a
        view of the root had that carries a gradient (``_view_values``: eagerly the view's
        node stays in the graph even when the view tensor is gone) is marked so, and
        ``backward`` raises if a wanted gradient passes one."""
        for ref in root.__dict__.get("_views", ()):
            t = ref()
            if t is not None and t._view is not None and t._view.root is root:
                self._refresh(t)  # (the view tensor keeps its node: its new value is marked too)
        if recorded:
            for value, op_name, shape in root.__dict__.get("_view_values", ()):
                self._stale_views[value] = (
                    f"{_camel(op_name)}Backward0: the view it made (shape {shape}) or the "
                    "tensor it views was modified by an in-place operation after the view was "
                    "taken; autograd cannot follow in-place changes through views. Use "
                    "out-of-place ops, or .clone() the view before modifying it")

    def _note_view_value(self, t) -> None:
        """Remember a traced root's view value that carries a gradient (``root_changed``)."""
        view = t._view
        root = view.root if view is not None else None
        if isinstance(root, TracerTensor) and t._requires_grad:
            root.__dict__.setdefault("_view_values", []).append(
                (t._value, view.chain[-1][0].name, tuple(t.shape)))

    def _refresh(self, t) -> None:
        """Rebuild a view's value from its root's current one, if the root changed since."""
        view = self.live_view(t)
        if view is None:
            return
        now = self._root_value(view.root)
        if now is view.source:
            return
        v, carries = now, now in self._grad_values
        for op, attrs in view.chain:
            v = self.builder.apply(op, [v], attrs)
            carries = carries and op.vjp is not None
        if t._requires_grad:
            self._grad_values.add(v)
        elif carries:
            v = self.builder.apply(registry.get("detach"), [v], {})
        t._value, view.source = v, now
        self._note_view_value(t)

    def _write_through(self, target, new_value, op_name) -> None:
        """In-place op ``op_name`` on the view ``target``: its root gets the new elements."""
        view = target._view
        if not view.shadow.flags.writeable:
            raise ShapeError(f"the tensor of shape {tuple(target.shape)} is a read-only broadcast "
                             "view; clone() it before modifying it in place", op=op_name)
        root = view.root
        base = self._root_value(root)
        if all(op.name == "detach" for op, _ in view.chain):
            new_root = new_value
        else:
            new_root = self._scatter_into(base, view.shadow, view.root_shadow, new_value)
        if isinstance(root, TracerTensor):
            if root._requires_grad and not (is_grad_enabled() and target._requires_grad):
                # A change autograd does not record (under no_grad, or through a detached
                # view: ``y.detach().add_(1)``, ``y.data.mul_(2)``): y's grad_fn stays, so a
                # backward through y still reaches what y was computed from, as eagerly
                # ([In-place changes under no_grad] in ops/custom.py).
                new_root = self.builder.apply(registry.get("reattach"), [new_root, base], {})
                self._grad_values.add(new_root)
            root._value = new_root
            self.root_changed(root)
        else:
            self.set_current(root, new_root)
        if target._requires_grad and not is_grad_enabled():
            new_value = self.builder.apply(registry.get("reattach"), [new_value, target._value], {})
            self._grad_values.add(new_value)
        target._value, view.source = new_value, new_root

    def _scatter_into(self, base, shadow, root_shadow, new_value):
        """``base`` with the elements that ``shadow`` (a view of ``root_shadow``) covers
        replaced by ``new_value``: a reshape when the view is the whole root in order, else
        a gather from the view's elements and a where over the covered ones."""
        apply = self.builder.apply
        n, m = root_shadow.size, shadow.size
        offset = shadow.__array_interface__["data"][0] - root_shadow.__array_interface__["data"][0]
        # Element k of the view is element positions[k] of the root (int8: strides in elements).
        positions = np.lib.stride_tricks.as_strided(
            np.arange(n, dtype=np.int64)[offset:], shadow.shape,
            [st * 8 for st in shadow.strides], writeable=False)
        flat_pos = positions.reshape(-1)
        if m == n and np.array_equal(flat_pos, np.arange(n)):
            return apply(registry.get("reshape"), [new_value], {"shape": tuple(base.shape)})
        source = np.zeros(n, np.int64)
        source[flat_pos] = np.arange(m)
        flat_new = apply(registry.get("reshape"), [new_value], {"shape": (m,)})
        gathered = apply(registry.get("index"), [flat_new, self.builder.constant(source)],
                         {"key": (("t", 0),)})
        covered = np.zeros(n, np.bool_)
        covered[flat_pos] = True
        if not covered.all():
            flat_base = apply(registry.get("reshape"), [base], {"shape": (n,)})
            gathered = apply(registry.get("where"), [self.builder.constant(covered), gathered,
                                                     flat_base], {})
        return apply(registry.get("reshape"), [gathered], {"shape": tuple(base.shape)})
