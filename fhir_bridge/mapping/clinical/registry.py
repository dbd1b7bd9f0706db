"""Where mappings and input formats come from: the site's folder, plugins, and the shipped ``mappings/``.

A mapping is found by name (its file name without extension) in the site's folder
(``FHIR_BRIDGE_MAPPINGS_DIR``) first, then in the folders plugins ship, then among the shipped
defaults, so a site overrides a default by giving its own file the same name. A file is compiled
once and again only when it changes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path

from fhir_bridge.mapping.clinical.compiler import Mapping, compile_document
from fhir_bridge.mapping.clinical.document import MAPPING_SUFFIXES, MappingError, MappingProblem, read
from fhir_bridge.mapping.clinical.hl7v2 import Hl7v2Reader
from fhir_bridge.mapping.clinical.readers import ENTRY_POINT_GROUP, CsvReader, JsonReader, NdjsonReader, Reader

SHIPPED_MAPPINGS = Path(__file__).resolve().parents[3] / "mappings"
log = logging.getLogger("fhir_bridge.mapping")


class UnknownMapping(LookupError):
    """No mapping of that name in any folder."""


class MappingRegistry:
    """Mappings by name and readers by format, media type or file suffix."""

    def __init__(self, directories: Sequence[Path], readers: dict[str, Reader]) -> None:
        self.directories = [d for d in directories if d.is_dir()]
        self.readers = readers
        self._compiled: dict[Path, tuple[int, Mapping]] = {}
        self._lock = threading.Lock()

    @classmethod
    def for_site(cls, site_directory: Path | None = None) -> MappingRegistry:
        readers = {**plugin_readers(), **builtin_readers()}  # a plugin cannot replace a built-in format
        directories = [*([site_directory] if site_directory else []), *plugin_mapping_dirs(readers), SHIPPED_MAPPINGS]
        return cls(directories, readers)

    # mappings ------------------------------------------------------------------------------------
    def names(self) -> list[str]:
        found = {
            path.stem
            for directory in self.directories
            for path in directory.iterdir()
            if path.suffix in MAPPING_SUFFIXES and not path.name.endswith(".schema.json")
        }
        return sorted(found)

    def path(self, name: str) -> Path:
        for directory in self.directories:
            for suffix in MAPPING_SUFFIXES:
                candidate = directory / f"{name}{suffix}"
                if candidate.is_file():
                    return candidate
        raise UnknownMapping(f"no mapping named {name!r} (known: {', '.join(self.names()) or 'none'})")

    def load(self, name_or_path: str | Path) -> Mapping:
        """A mapping by name, or from a file path (a name has no slash and no suffix)."""
        text = str(name_or_path)
        is_path = isinstance(name_or_path, Path) or "/" in text or text.endswith(MAPPING_SUFFIXES)
        path = Path(text) if is_path else self.path(text)
        if not path.is_file():
            raise UnknownMapping(f"no mapping file {path}")
        stamp = path.stat().st_mtime_ns
        with self._lock:
            cached = self._compiled.get(path)
            if cached and cached[0] == stamp:
                return cached[1]
        mapping = self.compile(path)
        with self._lock:
            self._compiled[path] = (stamp, mapping)
        return mapping

    def compile(self, path: Path) -> Mapping:
        """Compile a file, checking also what only the registry knows (the input format)."""
        document = read(path)
        mapping = compile_document(document, expected_name=path.stem)
        if mapping.source_format is not None and mapping.source_format not in self.readers:
            known = ", ".join(sorted(self.readers))
            problem = document.problem(
                ["source", "format"], f"unknown input format {mapping.source_format!r} ({known})"
            )
            raise MappingError(str(path), [problem])
        return mapping

    def check(self, path: Path) -> list[MappingProblem]:
        """Every problem of a mapping file (empty when it is usable)."""
        try:
            self.compile(path)
        except MappingError as error:
            return error.problems
        return []

    # readers -------------------------------------------------------------------------------------
    def reader(self, name: str) -> Reader:
        try:
            return self.readers[name]
        except KeyError:
            raise UnknownMapping(f"no input format {name!r} (known: {', '.join(sorted(self.readers))})") from None

    def reader_for_media_type(self, media_type: str) -> Reader | None:
        return next((r for r in self.readers.values() if media_type in r.media_types), None)

    def reader_for_file(self, path: Path) -> Reader | None:
        suffix = path.suffix.lower()
        return next((r for r in self.readers.values() if suffix in r.suffixes), None)


# input formats -----------------------------------------------------------------------------------
def builtin_readers() -> dict[str, Reader]:
    readers: list[Reader] = [CsvReader(), NdjsonReader(), JsonReader(), Hl7v2Reader()]
    return {reader.name: reader for reader in readers}


def plugin_readers() -> dict[str, Reader]:
    """The readers that installed packages expose under ``fhir_bridge.mappers``; a broken one is logged and skipped."""
    found: dict[str, Reader] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = entry.load()
            reader = loaded() if isinstance(loaded, type) else loaded
        except Exception as error:  # a plugin's bug must not stop the service
            log.error("the mapper plugin %s (%s) cannot be loaded: %s", entry.name, entry.value, error)
            continue
        if not isinstance(reader, Reader):
            log.error(
                "the mapper plugin %s (%s) is not a Reader (name, media_types, suffixes, read)", entry.name, entry.value
            )
            continue
        if reader.name != entry.name:
            log.error("the mapper plugin %s names itself %r: the entry point name is used", entry.name, reader.name)
        found[entry.name] = reader
    return found


def plugin_mapping_dirs(readers: dict[str, Reader]) -> list[Path]:
    return [Path(directory) for reader in readers.values() if (directory := getattr(reader, "mappings_dir", None))]
