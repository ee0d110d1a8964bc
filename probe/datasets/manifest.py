"""Read paired datasets from disk: a JSONL or CSV manifest, or a folder of images with a captions file.

Manifest fields: `id`, `image` (path relative to the manifest), `caption`; every other field is kept as a
label. A folder holds images and one of `manifest.jsonl`, `manifest.csv`, `captions.jsonl`, `captions.csv`
or `captions.tsv` (TSV: `<image file>\t<caption>` per line, id = file stem).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path, PurePath
from typing import Any, Iterable, Iterator, Optional

from probe.datasets.paired import PairedDataset, PairedRow
from probe.errors import InputError, write_atomic

MANIFEST_SUFFIXES = (".jsonl", ".csv", ".tsv")
# A dataset that probe builds into a folder (openmoji, rendered text): its parameters beside the manifest.
BUILT_MANIFEST = "manifest.jsonl"
BUILD_INFO_NAME = "build.json"
FOLDER_MANIFESTS = ("manifest.jsonl", "manifest.csv", "captions.jsonl", "captions.csv", "captions.tsv")
_CORE_FIELDS = ("id", "image", "caption")


def _text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of each line of a UTF-8 file, line endings kept; a leading BOM is dropped.

    InputError naming the file, line and column at the first byte that is not UTF-8 (e.g. a Latin-1 or
    UTF-16 export), instead of a UnicodeDecodeError traceback.
    """
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise InputError(f"{path}: cannot read the manifest ({exc.strerror or exc})") from None
    with fh:
        for lineno, raw in enumerate(fh, 1):
            if lineno == 1:
                if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
                    raise InputError(f"{path}, line 1: the file is UTF-16 text; save the manifest as UTF-8")
                raw = raw.removeprefix(b"\xef\xbb\xbf")
            try:
                yield lineno, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(
                    f"{path}, line {lineno}, column {exc.start + 1}: byte 0x{raw[exc.start]:02x} is not UTF-8 text; "
                    f"save the manifest as UTF-8"
                ) from None


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    records = []
    for lineno, line in _text_lines(path):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(
                f"{path}, line {lineno}: not valid JSON ({exc.msg}); a .jsonl manifest holds one JSON object "
                f"per line with fields id, image, caption"
            ) from None
        if not isinstance(obj, dict):
            raise InputError(f"{path}, line {lineno}: expected a JSON object with fields id, image, caption")
        records.append(obj)
    return records


def _read_csv(path: Path, *, delimiter: str) -> list[dict[str, Any]]:
    # csv reads the decoded lines (endings kept, as with newline=""), so quoted fields may span lines.
    reader = csv.DictReader((line for _, line in _text_lines(path)), delimiter=delimiter)
    try:
        if reader.fieldnames is None:
            return []
        missing = [f for f in ("id", "image") if f not in reader.fieldnames]
        if missing:
            raise InputError(
                f"{path}: the header has no {', '.join(missing)} column (found: {', '.join(reader.fieldnames)}); "
                f"a CSV manifest needs columns id, image, caption"
            )
        return [dict(row) for row in reader]
    except csv.Error as exc:
        raise InputError(f"{path}: not a readable CSV file ({exc})") from None


def _read_tsv_captions(path: Path) -> list[dict[str, Any]]:
    records = []
    for lineno, line in _text_lines(path):
        if not line.strip():
            continue
        name, sep, caption = line.rstrip("\r\n").partition("\t")
        if not sep:
            raise InputError(f"{path}, line {lineno}: expected '<image file><TAB><caption>'")
        records.append({"id": Path(name).stem, "image": name, "caption": caption})
    return records


def _as_text(value: Any) -> Optional[str]:
    if value is None:
        return None
    text = str(value)
    return text if text.strip() else None


def _check_inside(image_field: str, *, source: Path, row: int, rid: str) -> None:
    """InputError when a relative image path climbs out of the manifest's folder with `..`.

    Checked on the path as written (not through symlinks, which the dataset's owner placed on purpose), so a
    manifest cannot make probe read and hash files elsewhere; absolute paths are the user's explicit choice.
    """
    path = PurePath(image_field)
    if path.is_absolute():
        return
    if os.path.normpath(path).split(os.sep)[0] == os.pardir:
        raise InputError(
            f"{source}, row {row} (id {rid!r}): image path {image_field!r} leaves the manifest's folder; "
            f"relative image paths must stay inside it (move the image there or write an absolute path)"
        )


def rows_from_records(records: Iterable[dict[str, Any]], *, base: Path, source: Path) -> list[PairedRow]:
    """Turn manifest records into rows, resolving image paths against `base` and checking ids and files."""
    rows: list[PairedRow] = []
    seen: dict[str, int] = {}
    for i, rec in enumerate(records, 1):
        rid = _as_text(rec.get("id"))
        if rid is None:
            raise InputError(f"{source}, row {i}: no 'id'; every row needs a unique id")
        if rid in seen:
            raise InputError(f"{source}, row {i}: id {rid!r} repeats row {seen[rid]}; ids must be unique")
        seen[rid] = i
        image_field = _as_text(rec.get("image"))
        image = None
        if image_field is not None:
            _check_inside(image_field, source=source, row=i, rid=rid)
            image = (base / image_field).resolve()
            if not image.is_file():
                raise InputError(
                    f"{source}, row {i} (id {rid!r}): image file {image} does not exist; image paths are relative "
                    f"to the manifest's folder"
                )
        labels = {k: str(v) for k, v in rec.items() if k not in _CORE_FIELDS and v is not None and str(v) != ""}
        rows.append(PairedRow(id=rid, image=image, caption=_as_text(rec.get("caption")), labels=labels))
    return rows


def read_manifest_records(path: Path) -> list[dict[str, Any]]:
    """Parse a manifest file into raw records (dicts) by its suffix."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _read_jsonl(path)
    if suffix == ".csv":
        return _read_csv(path, delimiter=",")
    if suffix == ".tsv":
        return _read_tsv_captions(path)
    raise InputError(
        f"{path}: unsupported manifest type {suffix or '(no suffix)'!r}; use a .jsonl or .csv manifest with "
        f"fields id, image, caption (or a folder of images with captions.tsv)"
    )


def load_manifest(path: Path, *, name: Optional[str] = None) -> PairedDataset:
    """Read a manifest file or a dataset folder into a `PairedDataset`.

    `path` is a .jsonl/.csv/.tsv file or a folder holding one of FOLDER_MANIFESTS. The dataset name defaults
    to the manifest's folder name (file stem for a lone manifest). Raises InputError for a missing path, an
    unsupported or unreadable file, duplicate ids, missing images or no rows at all.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(
            f"dataset path {path} does not exist; pass a registered name (see 'probe datasets') "
            "or a manifest file/folder"
        )
    if path.is_dir():
        found = [path / f for f in FOLDER_MANIFESTS if (path / f).is_file()]
        if not found:
            raise InputError(
                f"folder {path} has none of {', '.join(FOLDER_MANIFESTS)}; add a manifest or a captions file"
            )
        manifest = found[0]
        default_name = path.name
    else:
        manifest = path
        default_name = path.parent.name if path.stem in ("manifest", "captions") else path.stem
    records = read_manifest_records(manifest)
    rows = rows_from_records(records, base=manifest.parent, source=manifest)
    if not rows:
        raise InputError(f"{manifest}: the dataset is empty; it needs at least one row")
    return PairedDataset(name=name or default_name, source=str(manifest.resolve()), rows=tuple(rows))


def write_manifest(path: Path, records: Iterable[dict[str, Any]]) -> Path:
    """Write records as JSONL atomically (temp file + rename), so a reader never sees half a manifest."""
    return write_atomic(Path(path), "".join(json.dumps(rec, ensure_ascii=False) + "\n" for rec in records))


def finished_build(root: Path, info: dict[str, Any]) -> Optional[Path]:
    """The manifest of a complete build in `root` made with exactly `info`, else None (nothing there, an
    interrupted build, or one with other parameters or versions: the caller rebuilds it).

    A builder writes `build.json` (its `info`) and then, last and atomically, `manifest.jsonl`, so both
    present and `build.json` equal to `info` mean the folder is finished and current."""
    manifest, info_path = Path(root) / BUILT_MANIFEST, Path(root) / BUILD_INFO_NAME
    if not (manifest.is_file() and info_path.is_file()):
        return None
    try:
        previous = json.loads(info_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return manifest if previous == info else None
