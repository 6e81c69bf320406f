"""Precomputed region features (bottom-up attention style) read by image id.

Two layouts are accepted:

* a directory of ``.npy`` files, one per image, named ``<image_id>.npy`` or with the COCO
  stem ``COCO_<split>2014_<image_id:012d>.npy``; an array ``[K, D]``, or a ``.npz`` with
  ``features`` ``[K, D]`` and optionally ``boxes`` ``[K, 4]`` (x1, y1, x2, y2 in pixels);
* one HDF5 file with datasets ``ids`` ``[N]``, ``features`` ``[N, K, D]`` and optionally
  ``boxes`` ``[N, K, 4]`` and ``num_boxes`` ``[N]``; or one dataset per image named by its id.
"""

from __future__ import annotations

import glob
import os
import re

import numpy as np

__all__ = ["RegionFeatureReader"]

_COCO_RE = re.compile(r"^COCO_[a-z]+\d*_0*(\d+)$")


class RegionFeatureReader:
    """``reader[image_id] -> {"features": [K, D] float32, "boxes": [K, 4] or None}``."""

    def __init__(self, path: str):
        if not os.path.exists(path):
            raise FileNotFoundError(f"region features not found: {path}")
        self.path = path
        self._h5 = None
        self._index: dict[int, int | str] = {}
        if os.path.isdir(path):
            self.kind = "npy"
            for f in glob.glob(os.path.join(path, "*.np[yz]")):
                stem = os.path.splitext(os.path.basename(f))[0]
                m = _COCO_RE.match(stem)
                if stem.isdigit():
                    self._index[int(stem)] = f
                elif m:
                    self._index[int(m.group(1))] = f
        elif path.lower().endswith((".h5", ".hdf5")):
            self.kind = "h5"
            try:
                h5 = self._open()
            except OSError as e:  # h5py's message names neither the file nor what was expected
                raise ValueError(f"{path}: not a readable HDF5 region feature file ({e})") from None
            with h5:
                if "ids" in h5:
                    if "features" not in h5:
                        raise ValueError(f"{path}: has 'ids' but no 'features' dataset")
                    ids = h5["ids"][()]
                    self._index = {int(i.decode() if isinstance(i, bytes) else i): row for row, i in enumerate(ids)}
                else:
                    for name in h5.keys():
                        m = _COCO_RE.match(name)
                        if name.isdigit() or m:
                            self._index[int(name if name.isdigit() else m.group(1))] = name
        else:
            raise ValueError(f"{path}: region features must be a directory of .npy/.npz files or an .h5 file")

    def _open(self):
        import h5py

        return h5py.File(self.path, "r")

    def __contains__(self, image_id) -> bool:
        return int(image_id) in self._index

    def __len__(self) -> int:
        return len(self._index)

    def image_ids(self) -> list[int]:
        return sorted(self._index)

    def __getitem__(self, image_id) -> dict:
        image_id = int(image_id)
        if image_id not in self._index:
            raise KeyError(f"{self.path}: no region features for image {image_id}")
        key = self._index[image_id]
        boxes = None
        if self.kind == "npy":
            try:
                arr = np.load(key, allow_pickle=False)
            except Exception as e:  # noqa: BLE001
                raise ValueError(f"{key}: cannot read region features ({e})") from e
            if isinstance(arr, np.lib.npyio.NpzFile):
                if "features" not in arr:
                    raise ValueError(f"{key}: a .npz must hold a 'features' array")
                feats = arr["features"]
                boxes = arr["boxes"] if "boxes" in arr else None
            else:
                feats = arr
        else:
            if self._h5 is None:  # opened lazily, once per process / dataloader worker
                self._h5 = self._open()
            if isinstance(key, int):
                feats = self._h5["features"][key]
                boxes = self._h5["boxes"][key] if "boxes" in self._h5 else None
                if "num_boxes" in self._h5:
                    n = int(self._h5["num_boxes"][key])
                    feats = feats[:n]
                    boxes = boxes[:n] if boxes is not None else None
            else:
                feats = self._h5[key][()]
        feats = np.asarray(feats, dtype=np.float32)
        if feats.ndim != 2:
            raise ValueError(f"{self.path}: features of image {image_id} must be [K, D], got shape {feats.shape}")
        if not np.isfinite(feats).all():
            raise ValueError(f"{self.path}: features of image {image_id} hold NaN or inf")
        if boxes is not None:
            boxes = np.asarray(boxes, dtype=np.float32)
            if boxes.shape != (feats.shape[0], 4):
                raise ValueError(f"{self.path}: boxes of image {image_id} must be [K, 4], got {boxes.shape}")
            if not np.isfinite(boxes).all():
                raise ValueError(f"{self.path}: boxes of image {image_id} hold NaN or inf")
        return {"features": feats, "boxes": boxes}

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_h5"] = None
        return state
