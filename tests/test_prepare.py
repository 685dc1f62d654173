import csv
import json

import pytest

from data.hierarchy import load_hierarchy
from data.prepare import main as prepare_main
from data.prepare import prepare
from data.splits import read_split, write_split, Video

SPLIT_FILES = {f"{split}_set{s}": (f"{split}_set{s}_coarse.txt", f"{split}_set{s}_fine.txt") for s in (1, 2) for split in ("train", "val")}


def official_rows(shared, name):
    lists = shared / "upstream" / "dataset_splits" / "synta"
    coarse_name, fine_name = SPLIT_FILES[name]
    coarse = [line.rsplit(" ", 1) for line in (lists / "coarse_classes" / coarse_name).read_text().split("\n") if line]
    fine = [line.rsplit(" ", 1) for line in (lists / "fine_classes" / fine_name).read_text().split("\n") if line]
    assert [p for p, _ in coarse] == [p for p, _ in fine]
    return [(p, int(c), int(f)) for (p, c), (_, f) in zip(coarse, fine)]


def test_synta_folder_layout_reproduces_official_lists_row_for_row(shared, tmp_path):
    root = tmp_path / "synta"
    expected = {name: official_rows(shared, name) for name in SPLIT_FILES}
    for rows in expected.values():
        for path, _, _ in rows:
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).touch()  # empty files: the layout is all the preparer needs
    prepare("synta", root, tmp_path / "splits")
    for name, rows in expected.items():
        ours = read_split(tmp_path / "splits" / f"{name}.csv", "synta")
        assert [(v.path, v.coarse_id, v.fine_id) for v in ours] == rows, name
        assert {v.set for v in ours} == {int(name[-1])}


def test_official_lists_route_and_missing_videos_are_reported(shared, tmp_path, capsys):
    root = tmp_path / "synta"
    rows = official_rows(shared, "val_set2")
    present = rows[:-5] + [official_rows(shared, name)[0] for name in ("train_set1", "val_set1", "train_set2")]
    for path, _, _ in present:  # the last five videos of val_set2 and all but one of each other split are not on disk
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).touch()
    info = prepare("synta", root, tmp_path / "splits", lists_dir=shared / "upstream" / "dataset_splits" / "synta")
    assert info["missing"]["val_set2"] == 5
    assert info["missing"]["train_set1"] == 3180 - 1
    assert len(read_split(tmp_path / "splits" / "val_set2.csv", "synta")) == len(rows) - 5
    missing = (tmp_path / "splits" / "missing.txt").read_text().splitlines()
    assert f"val_set2 {rows[-1][0]}" in missing
    assert "missing under" in capsys.readouterr().out


def test_unknown_synta_class_names_the_file(tmp_path):
    (tmp_path / "bouncing").mkdir()
    (tmp_path / "bouncing" / "bouncing9_id_1.mp4").touch()
    with pytest.raises(SystemExit, match=r"bouncing/bouncing9_id_1.mp4: unknown Syn-TA class"):
        prepare("synta", tmp_path, tmp_path / "out")


def test_official_list_with_bad_label_names_the_row(tmp_path):
    for kind in ("coarse", "fine"):
        (tmp_path / "lists" / f"{kind}_classes").mkdir(parents=True, exist_ok=True)
        for split in ("train", "val"):
            for s in (1, 2):
                (tmp_path / "lists" / f"{kind}_classes" / f"{split}_set{s}_{kind}.txt").write_text("a.mp4 0\nb.mp4 0")
    (tmp_path / "lists" / "fine_classes" / "val_set2_fine.txt").write_text("a.mp4 0\nb.mp4 99")
    with pytest.raises(SystemExit, match=r"val_set2_fine.txt:2: fine label 99 outside"):
        prepare("synta", tmp_path, tmp_path / "out", lists_dir=tmp_path / "lists")


def test_kinetics_annotation_route(tmp_path):
    h = load_hierarchy("k400ta")
    ann = tmp_path / "ann"
    ann.mkdir()
    rows = [("abseiling", "x0", 1, 11, "train")]  # a Kinetics-400 class outside K400-TA: skipped
    for i, c in enumerate(h.fine):
        rows += [(c.source, f"t{i}", 5, 15, "train"), (c.source, f"v{i}", 0, 10, "val")]
    for name, split in (("train.csv", "train"), ("validate.csv", "val")):
        with open(ann / name, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["label", "youtube_id", "time_start", "time_end", "split"])
            w.writerows(r for r in rows if r[4] == split)
    videos = tmp_path / "k400"
    for i in (0, 1, 2, 111):  # three set-1 classes and the first set-2 class are on disk
        for p in (f"train/t{i}_000005_000015.mp4", f"val/v{i}_000000_000010.mp4"):
            (videos / p).parent.mkdir(parents=True, exist_ok=True)
            (videos / p).touch()
    info = prepare("k400ta", videos, tmp_path / "out", annotations=ann)
    assert info["source_classes_not_in_benchmark"] == 1
    assert info["missing"]["train_set1"] == 111 - 3 and info["missing"]["train_set2"] == 94 - 1
    train = read_split(tmp_path / "out" / "train_set1.csv", "k400ta")
    assert [v.path for v in train] == [f"train/t{i}_000005_000015.mp4" for i in range(3)]
    assert [(v.coarse_id, v.fine_id) for v in train] == [(c.coarse_id, c.fine_id) for c in h.fine[:3]]


def test_ssv2_annotation_route_and_unknown_template(tmp_path):
    h = load_hierarchy("ssv2ta")
    ann, videos = tmp_path / "ann", tmp_path / "videos"
    ann.mkdir()
    videos.mkdir()
    labels = {c.source: str(i) for i, c in enumerate(h.fine)} | {"Approaching something with your camera": "999"}
    (ann / "labels.json").write_text(json.dumps(labels))
    bracket = lambda name: name.replace("something", "[something]").replace("Something", "[Something]")
    train = [{"id": str(100 + i), "template": bracket(c.source)} for i, c in enumerate(h.fine)]
    train.append({"id": "7", "template": "Approaching [something] with your camera"})
    val = [{"id": str(900 + i), "template": bracket(c.source)} for i, c in enumerate(h.fine)]
    (ann / "train.json").write_text(json.dumps(train))
    (ann / "validation.json").write_text(json.dumps(val))
    for entry in train + val:
        (videos / f"{entry['id']}.webm").touch()
    info = prepare("ssv2ta", videos, tmp_path / "out", annotations=ann)
    assert info["source_classes_not_in_benchmark"] == 1
    val2 = read_split(tmp_path / "out" / "val_set2.csv", "ssv2ta")
    assert len(val2) == 68 and val2[0].path == f"{900 + 81}.webm" and val2[0].fine_id == 0
    val.append({"id": "5", "template": "Juggling [something]"})
    (ann / "validation.json").write_text(json.dumps(val))
    with pytest.raises(SystemExit, match=r"entry 149 \(id 5\): template 'Juggling \[something\]' is not a class"):
        prepare("ssv2ta", videos, tmp_path / "out", annotations=ann)


def test_malformed_split_rows_give_their_line_number(tmp_path):
    path = tmp_path / "train_set1.csv"
    write_split(path, [Video("a.mp4", 0, 0, 1), Video("b.mp4", 1, 2, 1)])
    assert [v.path for v in read_split(path, "synta")] == ["a.mp4", "b.mp4"]
    path.write_text(path.read_text() + "c.mp4,zero,0,1\n")
    with pytest.raises(SystemExit, match=r"train_set1.csv:4: malformed row"):
        read_split(path, "synta")
    path.write_text("path,coarse_id,fine_id,set\na.mp4,5,0,1\n")  # fine class 0 is a child of coarse 0
    with pytest.raises(SystemExit, match=r":2: .*not the parent"):
        read_split(path, "synta")


def test_cli_errors_are_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit, match="is not a folder"):
        prepare_main(["synta", "--videos", str(tmp_path / "nowhere")])
    with pytest.raises(SystemExit, match="needs --lists"):
        prepare_main(["k400ta", "--videos", str(tmp_path)])


def test_a_bad_split_file_stops_train_before_training(tmp_path):
    """train.py reads the prepared folder through read_dataset_info, which checks all four files."""
    import train
    from conftest import train_args

    root = tmp_path / "synta"
    for rel in ("appearing/appearing1_id_1.mp4", "appearing/appearing1_id_31.mp4", "appearing/appearing3_id_1.mp4",
                "appearing/appearing3_id_31.mp4"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).touch()
    prepare("synta", root, tmp_path / "splits")
    (tmp_path / "splits" / "val_set2.csv").write_text("path,coarse_id,fine_id,set\n")
    with pytest.raises(SystemExit, match=r"val_set2.csv lists no videos"):
        train.main(train_args(tmp_path / "splits", tmp_path / "run", "vit", "--batch-size", "1"))
    assert not (tmp_path / "run").exists()
