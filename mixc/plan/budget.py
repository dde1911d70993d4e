"""Token-budget arithmetic over the IR: effective shares, the total budget, repeats needed."""

from __future__ import annotations

from mixc import ir


def leaf_shares(group: ir.MixGroup, scale: float = 1.0) -> dict[str, float]:
    """Each leaf's share of the whole budget: the product of the shares on its path."""
    out: dict[str, float] = {}
    for member in group.members:
        share = scale * member.share
        if isinstance(member, ir.MixLeaf):
            out[member.name] = out.get(member.name, 0.0) + share
        else:
            for name, s in leaf_shares(member, share).items():
                out[name] = out.get(name, 0.0) + s
    return out


def leaf_groups(group: ir.MixGroup, path: tuple[str, ...] = ()) -> dict[str, tuple[str, ...]]:
    """The group path of every leaf, e.g. {'web': ('speech',)}."""
    out: dict[str, tuple[str, ...]] = {}
    for member in group.members:
        if isinstance(member, ir.MixLeaf):
            out[member.name] = path
        else:
            out.update(leaf_groups(member, path + (member.name,)))
    return out


def total_tokens(spec: ir.Spec) -> int | None:
    """The budget in tokens: given directly, or steps x global batch x seq_len."""
    if spec.budget.tokens is not None:
        return spec.budget.tokens
    if spec.budget.steps is not None:
        return spec.budget.steps * spec.train.batch * spec.pack.seq_len
    return None


def total_steps(spec: ir.Spec) -> int | None:
    if spec.budget.steps is not None:
        return spec.budget.steps
    tokens = total_tokens(spec)
    if tokens is None:
        return None
    per_step = spec.train.batch * spec.pack.seq_len
    return -(-tokens // per_step)


def repeat_cap(spec: ir.Spec, name: str) -> float | None:
    item = spec.sources.get(name) or spec.generators.get(name)
    return getattr(item, "max_repeats", None)


def repeats_needed(spec: ir.Spec, available: dict[str, float]) -> dict[str, float | None]:
    """How many passes over each leaf the budget needs, given its available tokens."""
    total = total_tokens(spec)
    out: dict[str, float | None] = {}
    for name, share in leaf_shares(spec.mixture).items():
        have = available.get(name)
        out[name] = None if total is None or not have else share * total / have
    return out


def has_speech(spec: ir.Spec) -> bool:
    """Whether any mixture leaf is speech (web audio or a generator): then the vocabulary has audio."""
    leaves = leaf_shares(spec.mixture)
    return any(isinstance(spec.sources.get(n), ir.AudioSource) or n in spec.generators for n in leaves)
