"""Evaluation inputs read in batches, so verification of thousands of images runs in bounded memory.

An ``ImageSource`` has a length and yields float32 batches (B, 3, H, W), ImageNet-normalized:

- ``ArraySource``: an array already in memory (the zoo's evaluation images);
- ``NpySource``: a ``.npy`` file of float inputs (N, ...), read one batch at a time;
- ``FolderSource``: a folder of image files (.jpg, .jpeg, .png, .bmp, .tif, .tiff, sorted by
  name), each resized, center-cropped and normalized as the zoo's images are.

``image_source(spec, size)`` picks one from a path (a file ending in .npy or a folder).
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from hwsim.errors import WorkloadError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
_NPY_MAGIC = b"\x93NUMPY"


class ArraySource:
    """Inputs already in memory: float (N, ...)."""

    def __init__(self, array, name: str = "<array>") -> None:
        self.array, self.name = array, name

    def __len__(self) -> int:
        return int(self.array.shape[0])

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.array.shape[1:])

    def batches(self, batch_size: int, limit: int | None = None) -> Iterator[np.ndarray]:
        n = len(self) if limit is None else min(limit, len(self))
        for start in range(0, n, batch_size):
            yield np.array(self.array[start:min(start + batch_size, n)], dtype=np.float32)


class NpySource:
    """A .npy file of float inputs (N, ...), read one batch at a time (no memory map: mapped
    pages would stay resident and grow with the data)."""

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        self.path, self.name = path, str(path)
        try:
            with open(path, "rb") as f:
                if f.read(len(_NPY_MAGIC)) != _NPY_MAGIC:
                    raise WorkloadError(f"{path}: not a .npy file (no NumPy array header); save "
                                        "the inputs with numpy.save")
                f.seek(0)
                version = np.lib.format.read_magic(f)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, fortran, dtype = read_header(f)
                self.offset = f.tell()
        except FileNotFoundError:
            raise WorkloadError(f"{path}: no such file") from None
        except IsADirectoryError:
            raise WorkloadError(f"{path}: is a directory, not a .npy file") from None
        except (OSError, ValueError) as exc:
            raise WorkloadError(f"{path}: unreadable .npy array ({exc})") from None
        if dtype.kind != "f" or len(shape) < 2 or shape[0] < 1 or fortran or dtype.hasobject:
            raise WorkloadError(f"{path}: expected float inputs (N, ...) with N >= 1 in C order; "
                                f"got {dtype} of shape {shape}")
        self.shape, self.dtype = tuple(int(d) for d in shape), dtype
        row = int(np.prod(self.shape[1:])) * dtype.itemsize
        if path.stat().st_size < self.offset + row * self.shape[0]:
            raise WorkloadError(f"{path}: truncated: the header promises {self.shape[0]} inputs "
                                f"of shape {self.shape[1:]}")

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return self.shape[1:]

    def batches(self, batch_size: int, limit: int | None = None) -> Iterator[np.ndarray]:
        n = len(self) if limit is None else min(limit, len(self))
        per_row = int(np.prod(self.shape[1:]))
        with open(self.path, "rb") as f:
            for start in range(0, n, batch_size):
                count = min(batch_size, n - start)
                f.seek(self.offset + start * per_row * self.dtype.itemsize)
                rows = np.fromfile(f, dtype=self.dtype, count=count * per_row)
                yield rows.reshape(count, *self.shape[1:]).astype(np.float32, copy=False)


class FolderSource:
    """Image files of a folder, sorted by name, preprocessed like the zoo's evaluation images."""

    def __init__(self, path: str | Path, size: int = 224) -> None:
        self.path, self.size = Path(path), size
        self.files = sorted(p for p in self.path.iterdir()
                            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise WorkloadError(f"{self.path}: no image files ({', '.join(IMAGE_SUFFIXES)})")
        self.name = str(self.path)

    def __len__(self) -> int:
        return len(self.files)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return (3, self.size, self.size)

    def batches(self, batch_size: int, limit: int | None = None) -> Iterator[np.ndarray]:
        from hwsim.zoo.images import preprocess

        files = self.files if limit is None else self.files[:limit]
        for start in range(0, len(files), batch_size):
            yield np.stack([preprocess(self._read(p), self.size)
                            for p in files[start:start + batch_size]])

    @staticmethod
    def _read(path: Path) -> np.ndarray:
        import skimage.io

        try:
            img = np.asarray(skimage.io.imread(path))
        except Exception as exc:  # any decoder failure is a bad file, named
            raise WorkloadError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from None
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        if img.ndim != 3 or img.shape[2] < 3:
            raise WorkloadError(f"{path}: expected an RGB or grayscale image, got shape {img.shape}")
        return img[:, :, :3]


def image_source(path: str | Path, size: int = 224) -> ArraySource | FolderSource:
    """A .npy file of float inputs or a folder of images."""
    path = Path(path)
    if path.is_dir():
        return FolderSource(path, size)
    if path.suffix.lower() == ".npy" or not path.exists():
        return NpySource(path)
    raise WorkloadError(f"{path}: expected a .npy file of float inputs or a folder of images")
