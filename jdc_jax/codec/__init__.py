"""The ``.jdc`` codec: a scalable file holding a denoised base layer and a noise enhancement layer.

`file_format` is the container: header, side, base and enhancement chunks, with the guarantee
that side + base bytes alone decode the denoised image and that the enhancement chunk can be cut
off to leave a valid base-only file. `api.Codec` (also `jdc_jax.codec.Codec`) compresses images
to such files and decodes them with a trained model; `python -m jdc_jax` is its command line.
"""


def __getattr__(name):
    # `Codec` imports JAX; the container (`file_format`) must stay importable without it.
    if name == "Codec":
        from jdc_jax.codec.api import Codec
        return Codec
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
