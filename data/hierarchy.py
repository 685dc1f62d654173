"""Class hierarchies of the three benchmark datasets.

Each dataset has one CSV in data/hierarchies/, one row per fine class:

    set,fine_id,fine_name,coarse_id,coarse_name,source

`set` is 1 or 2; `fine_id` is the set-local id of the official label files (ids 0..F_s-1 in
each set); `coarse_id` is shared by both sets; `source` is how the class is found in the
source dataset's own annotations (the Syn-TA video path stem, the Kinetics-400 label, the
SSv2 template without brackets).
"""
import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

HIERARCHY_DIR = Path(__file__).resolve().parent / "hierarchies"
DATASETS = ("synta", "k400ta", "ssv2ta")


@dataclass(frozen=True)
class FineClass:
    set: int
    fine_id: int
    name: str
    coarse_id: int
    coarse_name: str
    source: str


@dataclass(frozen=True)
class Hierarchy:
    dataset: str
    fine: tuple  # every FineClass, set 1 first, each set in fine-id order

    @property
    def coarse_names(self) -> list:
        names = {}
        for c in self.fine:
            names[c.coarse_id] = c.coarse_name
        return [names[i] for i in range(len(names))]

    @property
    def num_coarse(self) -> int:
        return len(self.coarse_names)

    def fine_classes(self, set_id: int) -> list:
        return [c for c in self.fine if c.set == set_id]

    def fine_names(self, set_id: int) -> list:
        return [c.name for c in self.fine_classes(set_id)]

    def class_names(self, task: str, set_id: int) -> list:
        """Label space of a task: the coarse classes, or the fine classes of one set."""
        return self.coarse_names if task == "coarse" else self.fine_names(set_id)

    def coarse_of(self, set_id: int) -> list:
        """coarse id of each fine id of a set."""
        return [c.coarse_id for c in self.fine_classes(set_id)]


def check_dataset(name: str) -> str:
    if name not in DATASETS:
        raise SystemExit(f"error: unknown dataset '{name}'; choose one of: {', '.join(DATASETS)}")
    return name


@lru_cache(maxsize=None)
def load_hierarchy(dataset: str) -> Hierarchy:
    check_dataset(dataset)
    path = HIERARCHY_DIR / f"{dataset}.csv"
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    fine = tuple(
        FineClass(int(r["set"]), int(r["fine_id"]), r["fine_name"], int(r["coarse_id"]), r["coarse_name"], r["source"])
        for r in rows
    )
    for s in (1, 2):
        ids = [c.fine_id for c in fine if c.set == s]
        if ids != list(range(len(ids))):
            raise ValueError(f"{path}: set {s} fine ids are not 0..{len(ids) - 1} in order")
    return Hierarchy(dataset, fine)
