"""The ``.jdc`` codec: a scalable file holding a denoised base layer and a noise enhancement layer.

`file_format` is the container: header, side, base and enhancement chunks, with the guarantee
that side + base bytes alone decode the denoised image and that the enhancement chunk can be cut
off to leave a valid base-only file.
"""
