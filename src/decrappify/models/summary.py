"""What ``decrappify info`` prints: a short summary of a model's metadata."""

from __future__ import annotations

from typing import Any

from decrappify.config.crappify import CrappifyConfig
from decrappify.config.model import Arch, GeneratorConfig, ModelInfo
from decrappify.durations import format_duration
from decrappify.errors import InputError
from decrappify.metrics.selfcheck import self_check_lines


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_fmt(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


def _describe_network(g: GeneratorConfig, attention: str) -> str:
    """Describe the network in one line: its family and the settings that matter for it."""
    if g.arch == Arch.NAF:
        return f"{g.describe()}, no BatchNorm, blur {'on' if g.blur else 'off'}"
    return (
        f"{g.encoder.value} U-Net, {g.preset.value} decoder (nf_factor "
        f"{g.resolved_nf_factor:g}, {g.resolved_blocks_per_stage} conv/block), "
        f"{g.norm_type.value} norm, blur {'on' if g.blur else 'off'}, attention: {attention}"
    )


def _describe_crappify(cfg: dict[str, Any]) -> str:
    """``name, xscale: kind -> kind`` from a crappifier config dict (any part may be absent)."""
    steps = cfg.get("steps")
    kinds = ""
    if isinstance(steps, list):
        kinds = " -> ".join(str(s.get("kind", "?")) for s in steps if isinstance(s, dict))
    name = cfg.get("name") or cfg.get("preset")
    scale = cfg.get("scale")
    head = ", ".join(x for x in (str(name) if name else "", f"x{scale}" if scale else "") if x)
    summary = ": ".join(x for x in (head, kinds) if x) or _fmt(cfg)
    try:
        CrappifyConfig.validate_dict(cfg, source=None)
    except InputError as err:
        summary += f" (this version cannot use it: {err}; consistency maps and export need it)"
    return summary


def describe_model(info: ModelInfo) -> str:
    """Short human-readable summary of a model's metadata (what ``decrappify info`` prints).

    The full record is ``info.model_dump_json()`` (``decrappify info --json``).

    Parameters
    ----------
    info : ModelInfo
        The metadata.

    Returns
    -------
    str
        About ten lines.
    """
    g = info.generator
    attention = f"self-attention in block {g.attention_block}" if g.self_attention else "none"
    out_range = "linear" if g.y_range is None else f"sigmoid to [{g.y_range[0]}, {g.y_range[1]}]"
    if g.residual:
        clamp = "" if g.y_range is None else f", clamped to [{g.y_range[0]}, {g.y_range[1]}]"
        source = "input" if g.scale == 1 else "bilinear input"
        out_range = f"{source} + learned correction{clamp}"
    norm = info.normalization
    lines = [
        f"decrappify model (format {info.format_version}, written by decrappify "
        f"{info.decrappify_version} on {info.created.isoformat()})",
    ]
    if info.description:
        lines.append(f"  description:   {info.description}")
    lines += [
        f"  network:       {_describe_network(g, attention)}",
        f"  input/output:  {g.n_frames} frame(s) in, "
        + ("same grid (x1, no upsampling)" if g.scale == 1 else f"x{g.scale} upsampling")
        + f", output {out_range}",
        f"  normalisation: {norm.method} {norm.low:g}-{norm.high:g}",
    ]
    if info.crappify is None:
        lines.append("  crappifier:    none recorded (trained on real pairs or unknown)")
    else:
        lines.append(f"  crappifier:    {_describe_crappify(info.crappify)}")
    lines += [f"  {key + ':':<14} {text}" for key, text in _describe_training(info.training)]
    if info.metrics:
        lines.append(f"  validation:    {_describe_metrics(info.metrics, g.scale)}")
    lines += [f"  {key + ':':<14} {text}" for key, text in _describe_origin(info.training)]
    if info.history:
        lines.append(f"  history:       {len(info.history)} entries (the full record: --json)")
    if info.weights_sha256:
        lines.append(f"  weights:       sha256 {info.weights_sha256[:16]}, checked when read")
    else:
        lines.append("  weights:       no digest recorded (saved before format 3), not checked")
    return "\n".join(lines)


def _describe_training(training: dict[str, Any]) -> list[tuple[str, str]]:
    """``training``, ``steps`` and ``data`` lines from a (free-form) training summary."""
    out = []
    head = [str(training["recipe"])] if training.get("recipe") else []
    if "finished" in training:
        head.append("finished" if training["finished"] else "not finished")
    seconds, device = training.get("seconds"), training.get("device")
    if isinstance(seconds, int | float):
        took = format_duration(seconds) + (f" on {device}" if device else "")
        budget = training.get("time_budget")
        if isinstance(budget, int | float):
            took += f" (budget {format_duration(budget)})"
        head.append(took)
    if head:
        out.append(("training", ", ".join(head)))
    steps, best = training.get("steps"), training.get("best")
    if isinstance(steps, dict) and steps:
        text = ", ".join(f"{k} {v}" for k, v in steps.items())
        if isinstance(best, dict) and best.get("phase"):
            cycle = best.get("cycle")
            where = f", cycle {cycle + 1}" if isinstance(cycle, int) else ""
            text += f"; best generator: {best['phase']}{where}, step {best.get('step')}"
        out.append(("steps", text))
    data = training.get("data")
    if isinstance(data, dict):
        parts = []
        if isinstance(data.get("images"), list):
            n_train, n_val = data.get("n_train_images"), data.get("n_validation_images")
            split = f" ({n_train} training, {n_val} validation)" if n_train is not None else ""
            parts.append(f"{len(data['images'])} images{split}")
        modes = {"crappify": "LR crappified on the fly", "paired": "real LR/HR pairs"}
        if data.get("mode") is not None:
            parts.append(modes.get(str(data["mode"]), str(data["mode"])))
        if data.get("patch_size") is not None:
            parts.append(f"{data['patch_size']} px patches")
        if data.get("batch_size") is not None:
            parts.append(f"batch {data['batch_size']}")
        if parts:
            out.append(("data", ", ".join(parts)))
    return out


def _describe_metrics(metrics: dict[str, float], scale: int) -> str:
    """``PSNR 22.00 dB, SSIM 0.6265 (bicubic 21.29 dB, 0.6074)`` from validation metrics.

    At scale 1 the baseline (stored under the same keys) is the input itself.
    """
    model = [f"PSNR {metrics['psnr']:.2f} dB" if "psnr" in metrics else ""]
    model.append(f"SSIM {metrics['ssim']:.4f}" if "ssim" in metrics else "")
    text = ", ".join(m for m in model if m)
    base = [f"{metrics['bicubic_psnr']:.2f} dB" if "bicubic_psnr" in metrics else ""]
    base.append(f"{metrics['bicubic_ssim']:.4f}" if "bicubic_ssim" in metrics else "")
    if any(base):
        plain = "input" if scale == 1 else "bicubic"
        text += f" ({plain} {', '.join(b for b in base if b)})"
    return text or _fmt(metrics)


def _describe_origin(training: dict[str, Any]) -> list[tuple[str, str]]:
    """``self-check``, ``started from``, ``data`` / ``licence`` (starting points) lines."""
    out = [("self-check", line) for line in self_check_lines(training.get("self_check"))]
    start = training.get("start")
    if isinstance(start, dict):
        origin = start.get("from") or "random weights"
        licence = (start.get("provenance") or {}).get("weights_licence")
        out.append(("started from", str(origin) + (f" ({licence})" if licence else "")))
    provenance = training.get("provenance")
    if isinstance(provenance, dict):
        for group in provenance.get("data") or []:
            if isinstance(group, dict):
                out.append(("trained on", f"{group.get('what')}: {group.get('licence')}"))
        if provenance.get("not_used"):
            out.append(("not used", str(provenance["not_used"])))
        out.append(("licence", f"weights {provenance.get('weights_licence')}"))
    return out
