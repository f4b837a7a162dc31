"""Synthetic camera noise for clean 8-bit RGB images (numpy reference implementation).

Every model draws its parameters per image, adds noise, then does what a camera does when it
stores an image: clip to the valid range and round to 8-bit integers.

AWGN (JICD, Ranjbar Alvar et al. 2022, sec. 5.1), in 8-bit units::

    z = x + sigma * N(0, 1),        x in [0, 255], sigma in 8-bit units

Poisson-Gaussian (Foi et al. 2008, the noise of Testolina et al. 2021), on y = x / 255 in
[0, 1], with ``a`` the Poisson scale and ``b`` a variance::

    z = a * Poisson(y / a) + N(0, b),        E[z] = y,  Var[z] = a * y + b

Practical (Ranjbar Alvar & Bajic 2022, "Practical noise simulation for RGB images",
arXiv 2201.12773): the Poisson-Gaussian model with parameters fitted on SIDD. Per image and per
channel c: draw ``a``, ``slope``, ``intercept`` independently by inverse-CDF sampling,
``b = slope * a + intercept``, redraw all three while ``b <= 0``, then::

    z = a * Poisson(max(y, 0) / a) + sqrt(b) * N(0, 1)

The quantile tables below give the SIDD distributions (piecewise-linear inverse CDF between
quantiles, ``a`` interpolated in log space). At mid grey they give a median noise std of about
14.0 (R), 9.6 (G) and 13.4 (B) in 8-bit units. The simulator's own MATLAB parameter files can be
used instead (`PracticalNoiseParameters.from_mat_dir`).

Noise spec strings (`parse_noise_spec`), shared by configs, the input pipeline and evaluation:

    none                                      no noise
    awgn:25                                   sigma 25 (8-bit units)
    awgn:15,25,50                             sigma uniform over the set, per image
    awgn:5-50                                 sigma uniform on [5, 50], per image
    poisson_gaussian:0.04,0.0016              a, b on [0, 1] images (b is a variance)
    poisson_gaussian:0.01-0.04,0.0004-0.0016  a and b each uniform on a range, per image
    practical                                 SIDD quantile tables
    practical:DIR                             the simulator's .mat parameter files in DIR

`add_noise` maps a uint8 (H, W, 3) image to a uint8 (H, W, 3) noisy image; `synthesize_unclipped`
is the same before clipping and rounding (float64, 8-bit units). The tf.data pipeline implements
the same models with TF ops (`tf_noise`).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import re

import numpy as np
import scipy.io

NOISE_KINDS = ("none", "awgn", "poisson_gaussian", "practical")
CHANNELS = ("R", "G", "B")

# Ranjbar Alvar & Bajic 2022 (arXiv 2201.12773): quantiles of the Poisson-Gaussian parameters
# estimated on SIDD, per colour channel, for images in [0, 1]. "a" keeps the positive estimates only.
SIDD_QUANTILE_LEVELS = tuple(
    p / 100 for p in (0, 1, 2.5, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 97.5, 99, 100))
SIDD_QUANTILES = {
    "R": {
        "a": (8.407e-13, 6.191e-07, 1.777e-06, 4.958e-06, 1.242e-05, 7.125e-05, 0.0002218,
              0.0005489, 0.00125, 0.002413, 0.003961, 0.006195, 0.01022, 0.01355, 0.019,
              0.03845, 0.07405),
        "slope": (-0.9175, -0.8513, -0.6928, -0.6536, -0.5466, -0.5005, -0.4206, -0.3416,
                  -0.2827, -0.2527, -0.2097, -0.1666, -0.09945, -0.07299, -0.05602, -0.05105,
                  -0.04634),
        "intercept": (0, 0, 0, 0.0001713, 0.0003071, 0.0006408, 0.0008405, 0.001362, 0.002039,
                      0.002501, 0.00326, 0.004586, 0.01456, 0.02094, 0.0252, 0.0285, 0.03754),
    },
    "G": {
        "a": (2.697e-11, 5.039e-07, 1.928e-06, 1.149e-05, 2.846e-05, 0.0001022, 0.0002571,
              0.0005544, 0.001021, 0.001739, 0.00272, 0.004008, 0.006207, 0.008663, 0.01312,
              0.01751, 0.02226),
        "slope": (-0.7835, -0.6609, -0.6212, -0.5645, -0.5046, -0.4254, -0.3737, -0.322,
                  -0.2486, -0.2093, -0.1613, -0.1211, -0.08452, -0.06033, -0.05129, -0.03641,
                  -0.02514),
        "intercept": (0, 0, 0, 9.148e-05, 0.0001532, 0.0002627, 0.0003891, 0.0005871,
                      0.0008438, 0.0009563, 0.001328, 0.002464, 0.007509, 0.01066, 0.01353,
                      0.01467, 0.01714),
    },
    "B": {
        "a": (1.006e-10, 3.207e-06, 1.752e-05, 3.667e-05, 0.0001084, 0.0003191, 0.0006459,
              0.001111, 0.00171, 0.00242, 0.003226, 0.004378, 0.007296, 0.0107, 0.01349,
              0.01731, 0.0672),
        "slope": (-0.6445, -0.5568, -0.5391, -0.5099, -0.4561, -0.3932, -0.3219, -0.242,
                  -0.2091, -0.172, -0.1176, -0.08268, -0.06734, -0.05405, -0.04948, -0.03908,
                  -0.03153),
        "intercept": (0, 0, 0, 0.0002075, 0.0004203, 0.0007468, 0.0009494, 0.001491, 0.0018,
                      0.002154, 0.002768, 0.006097, 0.01571, 0.02143, 0.02597, 0.02757,
                      0.02991),
    },
}


# ----------------------------------------------------------------------------- parameters

@dataclasses.dataclass(frozen=True)
class Choice:
    """A per-image parameter drawn uniformly from a finite set (one value: a constant)."""

    values: tuple[float, ...]

    def sample(self, rng: np.random.Generator) -> float:
        return float(self.values[rng.integers(len(self.values))])


@dataclasses.dataclass(frozen=True)
class Interval:
    """A per-image parameter drawn uniformly from [low, high]."""

    low: float
    high: float

    def sample(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(self.low, self.high))


Parameter = Choice | Interval


@dataclasses.dataclass(frozen=True, eq=False)
class InverseCDF:
    """A piecewise-linear inverse CDF: value(u) = interp(u, levels, values), u ~ U[0, 1).

    `levels` increase strictly from 0 to 1; `values` do not decrease. With `log_space` the
    interpolation runs on log(values) (all values positive)."""

    levels: np.ndarray
    values: np.ndarray
    log_space: bool = False

    def __post_init__(self):
        levels = np.asarray(self.levels, np.float64)
        values = np.asarray(self.values, np.float64)
        if levels.ndim != 1 or levels.shape != values.shape or levels.size < 2:
            raise ValueError("an inverse CDF needs matching 1-D levels and values, at least 2")
        if levels[0] != 0.0 or levels[-1] != 1.0 or np.any(np.diff(levels) <= 0):
            raise ValueError("inverse-CDF levels must increase strictly from 0 to 1")
        if not np.all(np.isfinite(values)) or np.any(np.diff(values) < 0):
            raise ValueError("inverse-CDF values must be finite and non-decreasing")
        if self.log_space and values[0] <= 0:
            raise ValueError("log-space inverse-CDF values must be positive")
        object.__setattr__(self, "levels", levels)
        object.__setattr__(self, "values", values)

    @classmethod
    def from_samples(cls, samples, log_space: bool = False) -> InverseCDF:
        """The empirical inverse CDF: sorted samples at levels 0, 1/(n-1), ..., 1."""
        values = np.sort(np.asarray(samples, np.float64).ravel())
        return cls(np.linspace(0.0, 1.0, values.size), values, log_space)

    @property
    def interpolated_values(self) -> np.ndarray:
        """The values in the space interpolation runs in (log for `log_space`)."""
        return np.log(self.values) if self.log_space else self.values

    def sample(self, uniform: np.ndarray | float) -> np.ndarray:
        """Maps uniform draws in [0, 1) to the distribution."""
        value = np.interp(uniform, self.levels, self.interpolated_values)
        return np.exp(value) if self.log_space else value


@dataclasses.dataclass(frozen=True, eq=False)
class ChannelParameterDistributions:
    """The three independently drawn practical-noise parameters of one colour channel."""

    a: InverseCDF
    slope: InverseCDF
    intercept: InverseCDF

    def sample(self, rng: np.random.Generator) -> tuple[float, float]:
        """(a, b) with b = slope * a + intercept > 0, redrawing all three while b <= 0."""
        while True:
            u_a, u_slope, u_intercept = rng.random(3)
            a = float(self.a.sample(u_a))
            b = float(self.slope.sample(u_slope)) * a + float(self.intercept.sample(u_intercept))
            if b > 0:
                return a, b


@dataclasses.dataclass(frozen=True, eq=False)
class PracticalNoiseParameters:
    """Parameter distributions of the practical noise simulator, for channels R, G, B."""

    channels: tuple[ChannelParameterDistributions, ...]

    def __post_init__(self):
        if len(self.channels) != len(CHANNELS):
            raise ValueError(f"practical noise needs {len(CHANNELS)} channels, got "
                             f"{len(self.channels)}")

    @classmethod
    def from_quantile_tables(cls) -> PracticalNoiseParameters:
        """The SIDD quantile tables (`SIDD_QUANTILES`)."""
        return cls(tuple(
            ChannelParameterDistributions(
                a=InverseCDF(SIDD_QUANTILE_LEVELS, SIDD_QUANTILES[c]["a"], log_space=True),
                slope=InverseCDF(SIDD_QUANTILE_LEVELS, SIDD_QUANTILES[c]["slope"]),
                intercept=InverseCDF(SIDD_QUANTILE_LEVELS, SIDD_QUANTILES[c]["intercept"]))
            for c in CHANNELS))

    @classmethod
    def from_mat_dir(cls, path: str | os.PathLike) -> PracticalNoiseParameters:
        """The simulator's MATLAB parameter files in directory `path`.

        full_dataset_parameter_{R,G,B}.mat hold the samples a_array_X_d (only the positive ones
        are used) and slope_array_X; dataset_var_samples_q.mat holds b_array_X_d, the intercept
        samples. Each becomes an empirical inverse CDF (`InverseCDF.from_samples`, a in log
        space)."""
        path = os.fspath(path)
        intercepts = _load_mat(os.path.join(path, "dataset_var_samples_q.mat"))
        channels = []
        for c in CHANNELS:
            file_name = os.path.join(path, f"full_dataset_parameter_{c}.mat")
            a_and_slope = _load_mat(file_name)
            a = _mat_samples(a_and_slope, f"a_array_{c}_d", file_name)
            a = a[a > 0]
            if a.size < 2:
                raise ValueError(f"{file_name}: a_array_{c}_d needs at least 2 positive samples")
            channels.append(ChannelParameterDistributions(
                a=InverseCDF.from_samples(a, log_space=True),
                slope=InverseCDF.from_samples(
                    _mat_samples(a_and_slope, f"slope_array_{c}", file_name)),
                intercept=InverseCDF.from_samples(_mat_samples(
                    intercepts, f"b_array_{c}_d",
                    os.path.join(path, "dataset_var_samples_q.mat")))))
        return cls(tuple(channels))

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel (a, b), each of shape (3,), for images in [0, 1]."""
        a, b = zip(*(channel.sample(rng) for channel in self.channels))
        return np.array(a), np.array(b)


def _load_mat(file_name: str) -> dict:
    if not os.path.isfile(file_name):
        raise ValueError(f"practical noise parameter file not found: {file_name}")
    try:
        return scipy.io.loadmat(file_name)
    except (ValueError, TypeError, OSError) as error:
        raise ValueError(f"not a MATLAB .mat file: {file_name}: {error}") from error


def _mat_samples(contents: dict, key: str, file_name: str) -> np.ndarray:
    if key not in contents:
        raise ValueError(f"{file_name} has no array {key!r}")
    samples = np.asarray(contents[key], np.float64).ravel()
    if samples.size < 2 or not np.all(np.isfinite(samples)):
        raise ValueError(f"{file_name}: {key} needs at least 2 finite samples")
    return samples


@functools.lru_cache(maxsize=8)
def load_practical_parameters(parameter_dir: str | None = None) -> PracticalNoiseParameters:
    """The SIDD quantile tables, or the .mat files of `parameter_dir` (cached)."""
    if parameter_dir is None:
        return PracticalNoiseParameters.from_quantile_tables()
    return PracticalNoiseParameters.from_mat_dir(parameter_dir)


# ----------------------------------------------------------------------------- spec strings

@dataclasses.dataclass(frozen=True)
class NoiseSpec:
    """A parsed noise spec string (see the module docstring).

    kind: one of NOISE_KINDS.
    sigma: AWGN standard deviation in 8-bit units (awgn).
    poisson_scale: a, for images in [0, 1] (poisson_gaussian).
    gaussian_variance: b, for images in [0, 1] (poisson_gaussian).
    practical_parameter_dir: the .mat directory, None for the SIDD quantile tables (practical).
    """

    text: str
    kind: str
    sigma: Parameter | None = None
    poisson_scale: Parameter | None = None
    gaussian_variance: Parameter | None = None
    practical_parameter_dir: str | None = None

    def practical_parameters(self) -> PracticalNoiseParameters:
        if self.kind != "practical":
            raise ValueError(f"noise {self.text!r} is not practical noise")
        return load_practical_parameters(self.practical_parameter_dir)


_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_INTERVAL = re.compile(rf"({_NUMBER})-({_NUMBER})")


def _parse_number(text: str, spec: str) -> float:
    if not re.fullmatch(_NUMBER, text):
        raise ValueError(f"noise spec {spec!r}: {text!r} is not a non-negative number")
    return float(text)


def _parse_parameter(text: str, spec: str, allow_set: bool) -> Parameter:
    """'25' (constant), '15,25,50' (uniform over the set, if allowed) or '5-50' (range)."""
    text = text.strip()
    interval = _INTERVAL.fullmatch(text)
    if interval:
        low, high = float(interval.group(1)), float(interval.group(2))
        if low > high:
            raise ValueError(f"noise spec {spec!r}: range {text!r} has low > high")
        return Interval(low, high)
    parts = text.split(",")
    if len(parts) > 1 and not allow_set:
        raise ValueError(f"noise spec {spec!r}: {text!r} must be a number or a range LOW-HIGH")
    return Choice(tuple(_parse_number(p.strip(), spec) for p in parts))


def _lowest(parameter: Parameter) -> float:
    return parameter.low if isinstance(parameter, Interval) else min(parameter.values)


def parse_noise_spec(spec: str) -> NoiseSpec:
    """Parses a noise spec string (grammar in the module docstring); ValueError if malformed."""
    if not isinstance(spec, str):
        raise ValueError(f"a noise spec must be a string, got {type(spec).__name__}")
    text = spec.strip()
    kind, has_argument, argument = text.partition(":")
    if kind not in NOISE_KINDS:
        raise ValueError(f"unknown noise kind {kind!r} in {spec!r}; expected one of "
                         f"{', '.join(NOISE_KINDS)}")
    if kind == "none":
        if has_argument:
            raise ValueError(f"noise spec {spec!r}: 'none' takes no argument")
        return NoiseSpec(text, kind)
    if kind == "practical":
        if not has_argument:
            return NoiseSpec(text, kind)
        if not argument:
            raise ValueError(f"noise spec {spec!r}: practical:DIR needs a directory")
        load_practical_parameters(argument)  # reject bad parameter files now, not mid-run
        return NoiseSpec(text, kind, practical_parameter_dir=argument)
    if not argument.strip():
        raise ValueError(f"noise spec {spec!r}: {kind} needs parameters, e.g. "
                         f"{'awgn:25' if kind == 'awgn' else 'poisson_gaussian:0.04,0.0016'}")
    if kind == "awgn":
        return NoiseSpec(text, kind, sigma=_parse_parameter(argument, spec, allow_set=True))
    parts = argument.split(",")
    if len(parts) != 2:
        raise ValueError(f"noise spec {spec!r}: poisson_gaussian needs exactly two parameters "
                         "A,B (each a number or a range LOW-HIGH)")
    poisson_scale = _parse_parameter(parts[0], spec, allow_set=False)
    if _lowest(poisson_scale) <= 0:
        raise ValueError(f"noise spec {spec!r}: the Poisson scale a must be positive")
    return NoiseSpec(text, kind, poisson_scale=poisson_scale,
                     gaussian_variance=_parse_parameter(parts[1], spec, allow_set=False))


# ----------------------------------------------------------------------------- synthesis

def _check_clean_image(clean: np.ndarray) -> np.ndarray:
    clean = np.asarray(clean)
    if clean.dtype != np.uint8 or clean.ndim != 3 or clean.shape[-1] != 3:
        raise ValueError(f"expected a uint8 (H, W, 3) image, got {clean.dtype} {clean.shape}")
    return clean


def synthesize_unclipped(clean: np.ndarray, spec: NoiseSpec,
                         rng: np.random.Generator) -> np.ndarray:
    """The noisy image before clipping and rounding: float64 (H, W, 3) in 8-bit units.

    clean: uint8 (H, W, 3) in [0, 255]. Parameters are drawn from `rng` once per image (and
    per channel for practical noise)."""
    clean = _check_clean_image(clean)
    x = clean.astype(np.float64)
    if spec.kind == "none":
        return x
    if spec.kind == "awgn":
        sigma = spec.sigma.sample(rng)
        return x + sigma * rng.standard_normal(x.shape)
    if spec.kind == "poisson_gaussian":
        a = np.full(3, spec.poisson_scale.sample(rng))
        b = np.full(3, spec.gaussian_variance.sample(rng))
    elif spec.kind == "practical":
        a, b = spec.practical_parameters().sample(rng)
    else:
        raise ValueError(f"unknown noise kind {spec.kind!r}")
    y = x / 255.0
    z = a * rng.poisson(np.maximum(y, 0.0) / a) + np.sqrt(b) * rng.standard_normal(y.shape)
    return 255.0 * z


def quantize_8bit(noisy: np.ndarray) -> np.ndarray:
    """Clips to [0, 255] and rounds to the nearest integer (half to even): uint8."""
    return np.round(np.clip(noisy, 0.0, 255.0)).astype(np.uint8)


def add_noise(clean: np.ndarray, spec: NoiseSpec, rng: np.random.Generator) -> np.ndarray:
    """A noisy uint8 (H, W, 3) image from a clean uint8 (H, W, 3) one: synthesize, clip, round."""
    return quantize_8bit(synthesize_unclipped(clean, spec, rng))


def seed_for_name(name: str, seed: int) -> int:
    """A 63-bit seed from (name, seed), identical across runs, processes and machines."""
    digest = hashlib.sha256(f"{int(seed)}:{name}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def noisy_for_file(clean: np.ndarray, file_name: str, spec: NoiseSpec, seed: int) -> np.ndarray:
    """The noisy version of an evaluation image: the same for every method and every run.

    The noise is seeded by `seed_for_name(file_name, seed)`; pass the same `file_name` (e.g. the
    path relative to the data set folder) wherever the image is evaluated."""
    return add_noise(clean, spec, np.random.default_rng(seed_for_name(file_name, seed)))
