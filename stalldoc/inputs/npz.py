"""Reading .npz/.npy files without loading them whole, and without ever unpickling.

NumPy only. An array in an archive is opened according to how it is stored:

* ``np.savez`` stores members uncompressed: the member's bytes are a plain ``.npy`` file
  inside the zip, so the array is a :class:`MappedArray` reading rows at the member's data
  offset with positioned reads (column-major arrays: ``np.memmap``, read-only).
* ``np.savez_compressed`` deflates members: they cannot be mapped, so they become a
  :class:`StreamedArray`, which decompresses in chunks on demand. Statistics are computed
  in one streaming pass, and the rows the probe will sample are gathered during that same
  pass (see :meth:`StreamedArray.want`), so memory stays O(sample + chunk).

Both kinds support what the rest of stalldoc uses: ``.shape``, ``.dtype``, ``.ndim``,
``arr[a:b]`` and fancy indexing ``arr[idx]``. Every failure to read becomes an
:class:`InputError` naming the file and the problem.
"""

from __future__ import annotations

import math
import mmap
import os
import struct
import zipfile
import zlib
from collections.abc import Iterator

import numpy as np
from numpy.lib import format as npy_format

from stalldoc.errors import InputError

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a member first, or an empty archive
_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")  # zip local file header, 30 bytes
_READ_ERRORS = (OSError, EOFError, ValueError, zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error,
                NotImplementedError, RuntimeError, struct.error, KeyError, TypeError, OverflowError)


def sniff(path: str) -> str:
    """``"npy"``, ``"npz"``, or an InputError saying what the file is not."""
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a directory, expected a .npz file")
    if not os.path.isfile(path):
        raise InputError(f"{path}: not a regular file (a device or a pipe), expected a .npz file")
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if not head:
        raise InputError(f"{path}: the file is empty")
    if head.startswith(NPY_MAGIC):
        return "npy"
    if head.startswith(ZIP_MAGICS):
        return "npz"
    raise InputError(f"{path}: not NumPy data (expected a .npz archive written by np.savez)")


def _read_header(fh, where: str) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """Parse a .npy header from ``fh``; returns (shape, fortran_order, dtype, header bytes)."""
    start = fh.tell()
    try:
        version = npy_format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = npy_format.read_array_header_1_0(fh)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = npy_format.read_array_header_2_0(fh)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - NumPy parses the header with ast/tokenize: any error is corruption
        raise InputError(f"{where}: not a valid .npy array ({_short(exc)})") from exc
    if dtype.hasobject:
        raise InputError(f"{where}: holds a pickled object array, which stalldoc refuses to load")
    return tuple(int(s) for s in shape), bool(fortran), dtype, fh.tell() - start


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def open_npy(path: str) -> np.ndarray | LazyArray:
    """A .npy file, memory-mapped read-only."""
    with open(path, "rb") as fh:
        shape, fortran, dtype, header = _read_header(fh, path)
    return _map(path, path, header, shape, fortran, dtype, os.path.getsize(path) - header)


def _map(path: str, where: str, offset: int, shape, fortran: bool, dtype: np.dtype,
         available: int) -> np.ndarray | LazyArray:
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes != available:
        raise InputError(f"{where}: truncated or corrupt: its header declares shape {shape} "
                         f"{dtype} ({nbytes} bytes) but it holds {available} bytes")
    if nbytes == 0:
        return np.empty(shape, dtype=dtype, order="F" if fortran else "C")
    if not fortran or len(shape) < 2:
        return MappedArray(path, where, offset, shape, dtype)
    try:  # column-major: rows are not contiguous, so map it (pages released after each block)
        return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape,
                         order="F" if fortran else "C")
    except _READ_ERRORS as exc:
        raise InputError(f"{where}: cannot map the array ({_short(exc)})") from exc


def open_npz(path: str) -> dict[str, np.ndarray | LazyArray]:
    """Every ``.npy`` member of the archive, opened lazily, by key (the name without .npy)."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            arrays: dict[str, np.ndarray | LazyArray] = {}
            for info in infos:
                if not info.filename.endswith(".npy") or info.is_dir():
                    continue
                key = info.filename[:-4]
                where = f"{path}: member {info.filename}"
                if key in arrays:
                    raise InputError(f"{where} appears twice in the archive")
                if info.flag_bits & 0x1:
                    raise InputError(f"{where} is encrypted")
                if info.compress_type == zipfile.ZIP_STORED:
                    arrays[key] = _open_stored(path, where, info)
                else:
                    with zf.open(info) as fh:
                        shape, fortran, dtype, header = _read_header(fh, where)
                    arrays[key] = StreamedArray(path, info.filename, shape, dtype, fortran, header,
                                                info.file_size)
            return arrays
    except InputError:
        raise
    except _READ_ERRORS as exc:
        raise InputError(f"{path}: not a readable .npz archive ({_short(exc)})") from exc


def _open_stored(path: str, where: str, info: zipfile.ZipInfo) -> np.ndarray | LazyArray:
    """An uncompressed member: its .npy data is mapped where it lies in the zip file."""
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        raw = fh.read(_LOCAL_HEADER.size)
        if len(raw) < _LOCAL_HEADER.size:
            raise InputError(f"{where}: truncated archive")
        fields = _LOCAL_HEADER.unpack(raw)
        if fields[0] != b"PK\x03\x04":
            raise InputError(f"{where}: corrupt archive (bad local header)")
        data_start = info.header_offset + _LOCAL_HEADER.size + fields[9] + fields[10]
        fh.seek(data_start)
        shape, fortran, dtype, header = _read_header(fh, where)
    file_size = os.path.getsize(path)
    available = min(info.file_size, file_size - data_start) - header
    return _map(path, where, data_start + header, shape, fortran, dtype, available)


class LazyArray:
    """An array on disk that reads only what is indexed: rows first, like an ndarray.

    Subclasses provide :meth:`_rows` (rows at sorted-or-not indices), :meth:`blocks`
    (the whole array in order, a block at a time) and :meth:`_materialize`.
    """

    def __init__(self, path: str, where: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.path, self.where = path, where
        self.shape, self.dtype = shape, dtype
        self.ndim = len(shape)
        self.size = math.prod(shape)
        self.nbytes = self.size * dtype.itemsize
        self._row_shape = shape[1:]
        self._row_bytes = math.prod(self._row_shape) * dtype.itemsize
        self._full: np.ndarray | None = None

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of unsized object")
        return self.shape[0]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.where}, shape={self.shape}, dtype={self.dtype})"

    def _empty_rows(self) -> np.ndarray:
        return np.zeros((0, *self._row_shape), dtype=self.dtype)

    def _normalize(self, index) -> np.ndarray:
        n = self.shape[0]
        index = np.asarray(index, dtype=np.int64)
        if index.size and (index.min() < -n or index.max() >= n):
            raise IndexError(f"index out of bounds for axis 0 with size {n}")
        return np.where(index < 0, index + n, index)

    def __getitem__(self, key):
        if not self.shape:
            return self._materialize()[key]
        if isinstance(key, tuple):
            if not key:
                return self[slice(None)]
            first, rest = key[0], key[1:]
            if first is Ellipsis or first is None:
                return np.asarray(self)[key]
            head = self[first]
            return head[rest] if isinstance(first, (int, np.integer)) else head[(slice(None), *rest)]
        if isinstance(key, (int, np.integer)):
            return self._rows(np.array([int(key)]))[0]
        if isinstance(key, slice):
            start, stop, step = key.indices(self.shape[0])
            if step == 1:
                if stop <= start:
                    return self._empty_rows()
                return self._range(start, stop)
            return self._rows(np.arange(start, stop, step))
        index = np.asarray(key)
        if index.dtype == bool:
            if index.shape != self.shape[:1]:
                raise IndexError("boolean index does not match the first axis")
            index = np.flatnonzero(index)
        if index.dtype.kind not in "iu":
            raise IndexError(f"unsupported index of dtype {index.dtype}")
        return self._rows(index.reshape(-1)).reshape((*index.shape, *self._row_shape))

    def _range(self, start: int, stop: int) -> np.ndarray:
        return self._full[start:stop] if self._full is not None else self._rows(np.arange(start, stop))

    def __array__(self, dtype=None, copy=None):
        full = self._materialize()
        return full if dtype is None else full.astype(dtype)


class MappedArray(LazyArray):
    """An uncompressed array (a .npy file, or an np.savez member) read with positioned reads.

    Nothing is memory-mapped: random rows are read with ``pread`` so the probe's scattered
    reads do not pull the file's pages (and the kernel's read-ahead) into this process.
    """

    def __init__(self, path: str, where: str, offset: int, shape: tuple[int, ...], dtype: np.dtype) -> None:
        super().__init__(path, where, shape, dtype)
        self.offset = offset

    def _read(self, fh, out: np.ndarray, start_row: int) -> None:
        fh.seek(self.offset + start_row * self._row_bytes)
        view = memoryview(out.reshape(-1).view(np.uint8))
        got = fh.readinto(view) if view.nbytes else 0
        if got != view.nbytes:
            raise InputError(f"{self.where}: truncated (the file changed or ends early)")

    def _open(self):
        try:
            return open(self.path, "rb")
        except OSError as exc:
            raise InputError(f"{self.where}: cannot read ({exc.strerror or exc})") from exc

    def _range(self, start: int, stop: int) -> np.ndarray:
        out = np.empty((max(0, stop - start), *self._row_shape), dtype=self.dtype)
        with self._open() as fh:
            self._read(fh, out, start)
        return out

    def _rows(self, index) -> np.ndarray:
        index = self._normalize(index)
        unique = np.unique(index)
        got = np.empty((unique.size, *self._row_shape), dtype=self.dtype)
        if unique.size:
            # Consecutive rows are read together, one read per run.
            breaks = np.flatnonzero(np.diff(unique) != 1) + 1
            with self._open() as fh:
                for lo, hi in zip(np.r_[0, breaks], np.r_[breaks, unique.size]):
                    self._read(fh, got[lo:hi], int(unique[lo]))
        return got[np.searchsorted(unique, index)]

    def blocks(self, rows: int) -> Iterator[np.ndarray]:
        n = self.shape[0] if self.shape else 1
        for start in range(0, n, max(1, rows)):
            yield self._range(start, min(n, start + rows)) if self.shape else self._materialize().reshape(1)

    def _materialize(self) -> np.ndarray:
        if self._full is None:
            out = np.empty(self.shape, dtype=self.dtype)
            with self._open() as fh:
                self._read(fh, out, 0)
            self._full = out
        return self._full


class StreamedArray(LazyArray):
    """A compressed archive member, read by decompressing in chunks; never held whole.

    Indexing works like an ndarray's (rows first), each read being a pass over the
    compressed stream. To make the probe cheap, :meth:`want` names the rows it will
    sample; the next full pass (the statistics) keeps them, and later reads of those
    rows are served from memory.
    """

    def __init__(self, path: str, member: str, shape: tuple[int, ...], dtype: np.dtype, fortran: bool,
                 header: int, member_size: int) -> None:
        super().__init__(path, f"{path}: member {member}", shape, dtype)
        self.member = member
        self._fortran = fortran and self.ndim > 1
        self._header = header
        self._wanted: np.ndarray | None = None
        self._kept_index = np.zeros(0, dtype=np.int64)
        self._kept_rows: np.ndarray | None = None
        self.passes = 0  # decompression passes so far (tests watch this)
        if header + self.nbytes != member_size:
            raise InputError(f"{self.where}: truncated or corrupt: its header declares shape {shape} {dtype} "
                             f"({self.nbytes} bytes) but it holds {member_size - header} bytes")

    def want(self, indices: np.ndarray) -> None:
        """Keep these rows during the next full pass, to serve later reads from memory."""
        self._wanted = np.unique(np.asarray(indices, dtype=np.int64))

    # -- reading ---------------------------------------------------------------------------

    def blocks(self, rows: int) -> Iterator[np.ndarray]:
        """The array ``rows`` rows at a time, in order, decompressed as it goes."""
        yield from self._blocks(max(1, rows), self.shape[0] if self.shape else 1)

    def _blocks(self, rows: int, stop: int) -> Iterator[np.ndarray]:
        if self._full is not None or self._fortran or not self.shape:
            full = self._materialize()
            for start in range(0, stop, rows):
                yield full[start:min(start + rows, stop)]
            return
        where = self.where
        wanted = self._wanted
        kept: list[np.ndarray] = []
        self.passes += 1
        total = self.shape[0]
        try:
            with zipfile.ZipFile(self.path) as zf, zf.open(self.member) as fh:
                fh.read(self._header)
                for start in range(0, stop, rows):
                    count = min(rows, stop - start)
                    buf = fh.read(count * self._row_bytes)
                    if len(buf) != count * self._row_bytes:
                        ended = start + len(buf) // max(1, self._row_bytes)
                        raise InputError(f"{where}: truncated (the data ends at row {ended} of {total})")
                    block = np.frombuffer(buf, dtype=self.dtype).reshape((count, *self._row_shape))
                    if wanted is not None and wanted.size:
                        lo, hi = np.searchsorted(wanted, [start, start + count])
                        if hi > lo:
                            kept.append(block[wanted[lo:hi] - start].copy())
                    yield block
                if stop == total:
                    fh.read()  # reach the end of the member: zipfile checks its CRC there
        except InputError:
            raise
        except _READ_ERRORS as exc:
            raise InputError(f"{where}: corrupt compressed data ({_short(exc)})") from exc
        if wanted is not None and stop == total:
            self._kept_index = wanted
            self._kept_rows = (np.concatenate(kept) if kept
                               else self._empty_rows())
            self._wanted = None

    def _materialize(self) -> np.ndarray:
        """The whole array in memory: only for reads nothing cheaper can serve."""
        if self._full is None:
            where = self.where
            self.passes += 1
            try:
                with zipfile.ZipFile(self.path) as zf, zf.open(self.member) as fh:
                    fh.read(self._header)
                    buf = fh.read()
            except _READ_ERRORS as exc:
                raise InputError(f"{where}: corrupt compressed data ({_short(exc)})") from exc
            if len(buf) != self.nbytes:
                raise InputError(f"{where}: truncated ({len(buf)} of {self.nbytes} bytes)")
            self._full = np.frombuffer(buf, dtype=self.dtype).reshape(
                self.shape, order="F" if self._fortran else "C")
        return self._full

    def _rows(self, index: np.ndarray) -> np.ndarray:
        """Rows at ``index`` (any order, repeats allowed), from memory when kept."""
        n = self.shape[0]
        index = self._normalize(index)
        if self._full is not None:
            return self._full[index]
        if self._kept_rows is not None and index.size:
            pos = np.searchsorted(self._kept_index, index)
            pos = np.minimum(pos, max(0, self._kept_index.size - 1))
            if self._kept_index.size and np.array_equal(self._kept_index[pos], index):
                return self._kept_rows[pos]
        unique = np.unique(index)
        found: list[np.ndarray] = []
        if unique.size:
            rows = max(1, (16 * 2**20) // max(1, self._row_bytes))
            for start, block in zip(range(0, n, rows), self._blocks(rows, int(unique[-1]) + 1)):
                lo, hi = np.searchsorted(unique, [start, start + len(block)])
                if hi > lo:
                    found.append(block[unique[lo:hi] - start])
        got = np.concatenate(found) if found else self._empty_rows()
        return got[np.searchsorted(unique, index)]


def iter_blocks(arr, rows: int) -> Iterator[np.ndarray]:
    """``arr`` in blocks of ``rows`` rows, never holding more than one block.

    A memory-mapped array's pages are released after each block (they stay in the OS
    page cache), so scanning a mapped file does not grow the process's resident memory.
    """
    rows = max(1, rows)
    if isinstance(arr, LazyArray):
        yield from arr.blocks(rows)
        return
    n = int(arr.shape[0]) if arr.ndim else 1
    if not arr.ndim:
        yield np.asarray(arr).reshape(1)
        return
    mapping = getattr(arr, "_mmap", None)
    for start in range(0, n, rows):
        yield arr[start:start + rows]
        if mapping is not None:
            _release(mapping)


def _release(mapping) -> None:
    advice = getattr(mmap, "MADV_DONTNEED", None)
    if advice is None or not hasattr(mapping, "madvise"):
        return
    try:
        mapping.madvise(advice)
    except (OSError, ValueError):
        pass
