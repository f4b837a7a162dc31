"""Training data sources: the one parser of `data_source` strings, and their image files.

    builtin                    the colour photographs shipped inside scikit-image (no download)
    folder:PATH                the images below PATH (recursive, `images.IMAGE_EXTENSIONS`)
    paired:NOISY_DIR,CLEAN_DIR real noisy / clean pairs, matched by their path relative to
                               their folder without extension
    tfds:NAME                  the "train" split of a TFDS dataset with an "image" feature

Config validation and the tf.data pipeline (`input_pipeline`) both read sources through this
module, so they accept and refuse the same strings and see the same files. It imports no
TensorFlow.
"""

from __future__ import annotations

import dataclasses
import os

import skimage.data

from jdc_jax import images

SOURCE_KINDS = ("builtin", "folder", "paired", "tfds")
# The scene photographs in skimage.data's own folder; its greyscale, synthetic, medical,
# microscopy and astronomy images are left out.
BUILTIN_IMAGES = ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png",
                  "motorcycle_right.png", "rocket.jpg")


class SourceUnavailable(ValueError):
    """A data source that names something real but cannot be read on this machine (a TFDS
    dataset that is neither prepared in the data directory nor downloadable from here)."""


@dataclasses.dataclass(frozen=True)
class DataSource:
    """A parsed `data_source`: its kind and, per kind, the folder(s) or the TFDS name."""

    kind: str
    folders: tuple[str, ...] = ()  # folder: (PATH,); paired: (NOISY_DIR, CLEAN_DIR)
    tfds_name: str = ""

    @property
    def text(self) -> str:
        argument = self.tfds_name or ",".join(self.folders)
        return f"{self.kind}:{argument}" if argument else self.kind


def parse_data_source(source: str) -> DataSource:
    """The `DataSource` of a string; ValueError naming the problem. Folders are not read."""
    kind, _, argument = source.partition(":")
    if kind not in SOURCE_KINDS:
        raise ValueError(f"unknown data source {source!r}; expected builtin, folder:PATH, "
                         "paired:NOISY_DIR,CLEAN_DIR or tfds:NAME")
    if kind == "builtin":
        if argument:
            raise ValueError(f"{source!r}: builtin takes no argument")
        return DataSource("builtin")
    if kind == "tfds":
        if not argument:
            raise ValueError("tfds: needs a dataset name, e.g. tfds:clic")
        return DataSource("tfds", tfds_name=argument)
    if kind == "folder":
        if not argument:
            raise ValueError("folder: needs a path, e.g. folder:/data/clic")
        return DataSource("folder", (argument,))
    folders = tuple(argument.split(","))
    if len(folders) != 2 or not all(folders):
        raise ValueError(f"paired:{argument}: expected paired:NOISY_DIR,CLEAN_DIR")
    return DataSource("paired", folders)


def source_files(source: DataSource) -> dict[str, list[str]]:
    """{"clean": paths[, "noisy": paths]} of a file source (builtin, folder, paired), pairs in
    the same order; ValueError for a missing or empty folder or unmatched pairs."""
    if source.kind == "builtin":
        paths = [os.path.join(skimage.data.data_dir, name) for name in BUILTIN_IMAGES]
        missing = [path for path in paths if not os.path.isfile(path)]
        if missing:
            raise ValueError(f"builtin: scikit-image does not ship {', '.join(missing)}")
        return {"clean": paths}
    if source.kind == "folder":
        return {"clean": images.list_images(source.folders[0])}
    if source.kind == "paired":
        noisy, clean = _paired_paths(source)
        return {"noisy": noisy, "clean": clean}
    raise ValueError(f"{source.text} is not a file source")


def _paired_paths(source: DataSource) -> tuple[list[str], list[str]]:
    """(noisy, clean) paths matched by their relative path without extension."""
    by_name = []
    for folder in source.folders:
        named = {}
        for path in images.list_images(folder):
            name = os.path.splitext(os.path.relpath(path, folder))[0]
            if name in named:
                raise ValueError(f"{source.text}: {named[name]} and {path} share the name "
                                 f"{name!r}")
            named[name] = path
        by_name.append(named)
    noisy, clean = by_name
    noisy_only, clean_only = sorted(noisy.keys() - clean.keys()), sorted(clean.keys() - noisy.keys())
    if noisy_only or clean_only:
        matched = len(noisy.keys() & clean.keys())
        raise ValueError(
            f"{source.text}: {matched} names match; unmatched noisy: {noisy_only[:20]}, "
            f"unmatched clean: {clean_only[:20]}"
            + (" (more not shown)" if max(len(noisy_only), len(clean_only)) > 20 else ""))
    names = sorted(noisy)
    return [noisy[n] for n in names], [clean[n] for n in names]
