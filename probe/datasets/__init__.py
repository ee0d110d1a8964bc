"""Paired image/caption datasets: registered names, manifests and folders, all as `PairedDataset`."""

from probe.datasets.catalog import DATASETS, DatasetSpec, list_datasets, load_dataset
from probe.datasets.manifest import load_manifest, write_manifest
from probe.datasets.paired import PairedDataset, PairedRow

__all__ = [
    "DATASETS",
    "DatasetSpec",
    "PairedDataset",
    "PairedRow",
    "list_datasets",
    "load_dataset",
    "load_manifest",
    "write_manifest",
]
