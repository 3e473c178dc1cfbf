"""Moving checkpoints between the front-ends: :func:`from_linen` and :func:`to_linen`.

A twin's ``nnx.Param``s sit where the linen parameters sit (same names, same shapes), its
``nnx.BatchStat``s where linen's ``batch_stats`` sit, so a conversion is a copy of the values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
from flax import nnx

from recurrent_zoo.layers import Bidirectional as LinenBidirectional
from recurrent_zoo.layers.base import RecurrentLayer as LinenLayer
from recurrent_zoo.models import RecurrentBlock as LinenBlock
from recurrent_zoo.models import SequenceModel as LinenModel
from recurrent_zoo.nnx.layers import TWINS, Bidirectional, settings
from recurrent_zoo.nnx.models import RecurrentBlock, SequenceModel

#: The linen collections a twin holds, and the NNX variable type of each.
COLLECTIONS: dict[str, type[nnx.Variable]] = {"params": nnx.Param, "batch_stats": nnx.BatchStat}


def _in_features(module: nn.Module, params: Mapping[str, Any]) -> int | None:
    """The input feature size the linen ``module``'s parameters were created for."""
    if isinstance(module, LinenLayer):
        return int(params[module._input_param].shape[0])
    if isinstance(module, LinenBidirectional):
        return _in_features(module.forward, params["forward"])
    if isinstance(module, LinenBlock):
        return _in_features(module.layer, params["layer"])
    if isinstance(module, LinenModel):
        return None if module.vocab_size is not None else int(params["encoder"]["kernel"].shape[0])
    raise TypeError(f"no NNX twin for {type(module).__name__}")


def twin(module: nn.Module, in_features: int | None, rngs: nnx.Rngs) -> nnx.Module:
    """A freshly initialised NNX twin of the linen ``module`` (layer, Bidirectional,
    RecurrentBlock or SequenceModel) for inputs of ``in_features`` features."""
    if isinstance(module, LinenLayer):
        cls = TWINS.get(type(module))
        if cls is None:
            raise TypeError(
                f"no NNX twin for {type(module).__name__}: only the zoo's layers have one"
            )
        return cls(in_features, rngs=rngs, **settings(module))
    if isinstance(module, LinenBidirectional):
        fwd = twin(module.forward, in_features, rngs)
        return Bidirectional(fwd, twin(module.backward, in_features, rngs), module.merge)
    if isinstance(module, LinenBlock):
        kw = settings(module)
        return RecurrentBlock(twin(kw.pop("layer"), in_features, rngs), **kw, rngs=rngs)
    if isinstance(module, LinenModel):
        kw = settings(module)
        for name in ("layer", "hidden_size", "layer_kwargs"):
            kw.pop(name)
        # The linen model's own layer (by name, class or factory), twinned.
        new_layer = lambda d, rngs: twin(module._new_layer(), d, rngs)
        return SequenceModel(new_layer, **kw, in_features=in_features, rngs=rngs)
    raise TypeError(
        f"no NNX twin for {type(module).__name__}: from_linen takes a zoo layer, Bidirectional, "
        f"RecurrentBlock or SequenceModel"
    )


def _paths(tree: Any) -> dict[str, jax.ShapeDtypeStruct]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {
        jax.tree_util.keystr(p): jax.ShapeDtypeStruct(jax.numpy.shape(v), jax.numpy.result_type(v))
        for p, v in leaves
    }


def from_linen(
    module: nn.Module, variables: Mapping[str, Any], *, dropout_seed: int | jax.Array = 0
) -> nnx.Module:
    """The NNX twin of the linen ``module`` holding ``variables`` (as ``module.init`` gives
    them: "params", and "batch_stats" with batch norm): the same numbers as
    ``module.apply(variables, ...)``.

    Args:
      module: a zoo layer, ``Bidirectional``, ``RecurrentBlock`` or ``SequenceModel`` (unbound).
      variables: its linen variables.
      dropout_seed: seed (or key) of the twin's dropout RNG stream.

    Raises:
      ValueError: when ``variables`` lack a variable of the twin, have one it lacks, or one of
        another shape or dtype (naming them).
    """
    if "params" not in variables:
        raise ValueError(f"variables must hold 'params', got collections {sorted(variables)}")
    unknown = sorted(set(variables) - set(COLLECTIONS))
    if unknown:
        raise ValueError(f"no NNX twin holds the collections {unknown} (only {list(COLLECTIONS)})")
    d = _in_features(module, variables["params"])
    # Abstract construction: no parameter is drawn, they all come from `variables`.
    out = nnx.eval_shape(lambda: twin(module, d, nnx.Rngs(params=0, dropout=0)))
    for collection, kind in COLLECTIONS.items():
        state = nnx.state(out, kind)
        given = variables.get(collection, {})
        want, got = _paths(nnx.to_pure_dict(state)), _paths(given)
        if want != got:
            missing = sorted(set(want) - set(got))
            extra = sorted(set(got) - set(want))
            other = sorted(k for k in set(want) & set(got) if want[k] != got[k])
            raise ValueError(
                f"variables[{collection!r}] do not fit {type(module).__name__}'s twin: missing "
                f"{missing}, unexpected {extra}, other shape or dtype "
                f"{[(k, got[k], want[k]) for k in other]}"
            )
        if want:
            nnx.replace_by_pure_dict(state, jax.tree.map(jax.numpy.asarray, dict(given)))
            nnx.update(out, state)
    nnx.reseed(out, dropout=dropout_seed)
    return out


def to_linen(module: nnx.Module) -> dict[str, Any]:
    """The linen variables of an NNX twin: ``{"params": ...}`` (and ``"batch_stats"`` when it has
    batch norm), for its linen twin's ``apply``."""
    out = {}
    for collection, kind in COLLECTIONS.items():
        values = nnx.to_pure_dict(nnx.state(module, kind))
        if values or collection == "params":
            out[collection] = values
    return out
