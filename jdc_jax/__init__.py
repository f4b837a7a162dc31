"""jdc_jax: learned image compression with joint denoising (JICD, Testolina et al., JDC) in JAX/Flax."""

__version__ = "0.1.0"
