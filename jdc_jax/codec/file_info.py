"""What a ``.jdc`` file holds, as a JSON-serializable dict, from its bytes alone.

Pure Python on top of `file_format` (no numerical library), so `python -m jdc_jax info` answers
without loading a model.
"""

from __future__ import annotations

from jdc_jax.codec import file_format


def file_info(data: bytes) -> dict:
    """Header fields and the size of each stream of a ``.jdc`` file.

    Returns a dict with "format_version", the header fields ("model_kind", "model_id" as hex,
    "context_model", "scan_order", "entropy_path", "padding_mode", "height", "width", "padded_height",
    "padded_width", "latents" as {name: [height, width, channels]}, "layers_written"),
    "enhancement_layer" (present /
    truncated off / not written) and, from `file_format.describe`, "num_pixels", "bytes" and
    "bits_per_pixel" per part (header, side, base, enhancement, base_only, total; bits per real,
    unpadded pixel). Raises a `file_format.JdcFormatError` for a damaged or foreign file.
    """
    parsed = file_format.parse_file(data)
    header = parsed.header
    return {
        "format_version": parsed.format_version,
        "model_kind": header.model_kind,
        "model_id": header.model_id.hex(),
        "context_model": header.context_model,
        "scan_order": header.scan_order,
        "entropy_path": header.entropy_path,
        "padding_mode": header.padding_mode,
        "height": header.height,
        "width": header.width,
        "padded_height": header.padded_height,
        "padded_width": header.padded_width,
        "latents": {name: list(shape) for name, shape in header.latent_shapes},
        "layers_written": list(header.layers_written),
        **file_format.describe(parsed),
    }
