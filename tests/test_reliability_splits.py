"""Hostile inputs to the split files and to data.prepare: each gives a one-line error that says what to
do, or the correct result; never a traceback, never a silently wrong list. One case per input; the
case id starts with its kind."""
import csv
import io
import json
import os

import pytest

from conftest import one_line_error
from data.hierarchy import load_hierarchy
from data.prepare import main as prepare_main
from data.prepare import prepare
from data.splits import SPLITS, Video, read_dataset, read_dataset_info, read_split, write_dataset, write_split

CASES = []


def case(kind):
    def register(f):
        CASES.append(pytest.param(f, id=f"{kind}-{f.__name__}"))
        return f

    return register


@pytest.mark.parametrize("run", CASES)
def test_hostile_input(run, tmp_path, capsys):
    run(tmp_path, capsys)


def refused(action, *words) -> str:
    with pytest.raises(SystemExit) as excinfo:
        action()
    return one_line_error(excinfo, *words)


# ---------------------------------------------------------------------------------------------
# a prepared Syn-TA folder: dataset.yaml + four split CSVs (set 2's fine class 0 is appearing3, coarse 0)

ROWS = {
    "train_set1": ["appearing/appearing1_id_1.mp4,0,0,1", "appearing/appearing2_id_1.mp4,0,1,1"],
    "val_set1": ["appearing/appearing1_id_31.mp4,0,0,1"],
    "train_set2": ["appearing/appearing3_id_1.mp4,0,0,2"],
    "val_set2": ["appearing/appearing3_id_31.mp4,0,0,2"],
}
HEADER = "path,coarse_id,fine_id,set"


def prepared(tmp_path, split=None, text=None, yaml_text=None):
    """The folder, with one split file's text (or bytes) replaced."""
    folder = tmp_path / "splits"
    folder.mkdir()
    for name, rows in ROWS.items():
        (folder / f"{name}.csv").write_text("\n".join([HEADER, *rows]) + "\n")
    (folder / "dataset.yaml").write_text(yaml_text if yaml_text is not None else f"dataset: synta\nvideo_root: {tmp_path}\n")
    if split:
        write = (folder / f"{split}.csv").write_bytes if isinstance(text, bytes) else (folder / f"{split}.csv").write_text
        write(text)
    return folder


def paths(videos):
    return [v.path for v in videos]


@case("csv-format")
def bom_before_the_header(tmp_path, capsys):
    folder = prepared(tmp_path, "val_set1", "\ufeff" + HEADER + "\n" + ROWS["val_set1"][0] + "\n")
    assert read_dataset(folder)[1]["val_set1"] == [Video("appearing/appearing1_id_31.mp4", 0, 0, 1)]


@case("csv-format")
def header_and_cells_with_spaces(tmp_path, capsys):
    folder = prepared(tmp_path, "train_set1", "path, coarse_id , fine_id, set\nappearing/appearing2_id_1.mp4, 0, 1, 1\n")
    assert read_dataset(folder)[1]["train_set1"] == [Video("appearing/appearing2_id_1.mp4", 0, 1, 1)]


@case("csv-format")
def columns_in_another_order(tmp_path, capsys):
    folder = prepared(tmp_path, "train_set2", "set,fine_id,coarse_id,path\n2,1,0,appearing/appearing4_id_2.mp4\n")
    assert read_dataset(folder)[1]["train_set2"] == [Video("appearing/appearing4_id_2.mp4", 0, 1, 2)]


@case("csv-format")
def crlf_line_endings(tmp_path, capsys):
    folder = prepared(tmp_path, "train_set1", "\r\n".join([HEADER, *ROWS["train_set1"]]) + "\r\n")
    assert paths(read_dataset(folder)[1]["train_set1"]) == ["appearing/appearing1_id_1.mp4", "appearing/appearing2_id_1.mp4"]


@case("csv-format")
def trailing_blank_lines(tmp_path, capsys):
    folder = prepared(tmp_path, "val_set2", HEADER + "\n" + ROWS["val_set2"][0] + "\n\n\n  \n")
    assert len(read_dataset(folder)[1]["val_set2"]) == 1


@case("csv-format")
def quoted_path_with_a_comma(tmp_path, capsys):
    path = tmp_path / "val_set1.csv"
    write_split(path, [Video("odd, name/appearing1_id_31.mp4", 0, 0, 1)])
    assert '"odd, name/appearing1_id_31.mp4"' in path.read_text()
    assert paths(read_split(path, "synta")) == ["odd, name/appearing1_id_31.mp4"]


@case("csv-format")
def invisible_character_in_the_header_is_shown(tmp_path, capsys):
    folder = prepared(tmp_path, "val_set1", "path\u200b,coarse_id,fine_id,set\n" + ROWS["val_set1"][0] + "\n")
    refused(lambda: read_dataset(folder), "val_set1.csv:1: header", "\\u200b")


@case("csv-format")
def empty_file(tmp_path, capsys):
    folder = prepared(tmp_path, "val_set2", "")
    refused(lambda: read_dataset(folder), "val_set2.csv is empty")


@case("csv-format")
def header_only(tmp_path, capsys):
    folder = prepared(tmp_path, "val_set1", HEADER + "\n")
    refused(lambda: read_dataset(folder), "val_set1.csv lists no videos")


@case("csv-format")
def non_utf8_bytes(tmp_path, capsys):
    folder = prepared(tmp_path, "train_set1", (HEADER + "\nappearing/caf\xe9.mp4,0,0,1\n").encode("latin-1"))
    refused(lambda: read_dataset(folder), "train_set1.csv:2: not UTF-8", "0xe9")


@case("csv-format")
def nul_byte(tmp_path, capsys):
    folder = prepared(tmp_path, "train_set1", HEADER + "\nappearing/a\0.mp4,0,0,1\n")
    refused(lambda: read_dataset(folder), "train_set1.csv:2:", "contains a control character")


@case("paths")
def absolute_path(tmp_path, capsys):
    folder = prepared(tmp_path, "val_set1", HEADER + "\n/data/synta/appearing/appearing1_id_31.mp4,0,0,1\n")
    refused(lambda: read_dataset(folder), "val_set1.csv:2:", "is absolute")


@case("paths")
def dotdot_path(tmp_path, capsys):
    folder = prepared(tmp_path, "val_set1", HEADER + "\n../other/appearing1_id_31.mp4,0,0,1\n")
    refused(lambda: read_dataset(folder), "val_set1.csv:2:", "leaves the video root")


@case("paths")
def backslash_path(tmp_path, capsys):
    folder = prepared(tmp_path, "val_set1", HEADER + "\nappearing\\appearing1_id_31.mp4,0,0,1\n")
    refused(lambda: read_dataset(folder), "val_set1.csv:2:", "separate folders with '/'")


@case("paths")
def same_video_with_and_without_dot_slash(tmp_path, capsys):
    rows = [HEADER, "appearing/appearing1_id_31.mp4,0,0,1", "./appearing/appearing1_id_31.mp4,0,0,1"]
    folder = prepared(tmp_path, "val_set1", "\n".join(rows) + "\n")
    refused(lambda: read_dataset(folder), "val_set1.csv:3:", "listed again (first at line 2)")


@case("labels")
def non_integer_id(tmp_path, capsys):
    folder = prepared(tmp_path, "val_set1", HEADER + "\nappearing/appearing1_id_31.mp4,zero,0,1\n")
    refused(lambda: read_dataset(folder), "val_set1.csv:2:", "coarse_id 'zero' is not an integer")


@case("labels")
def fine_id_out_of_range(tmp_path, capsys):
    folder = prepared(tmp_path, "val_set2", HEADER + "\nappearing/appearing3_id_31.mp4,0,47,2\n")
    refused(lambda: read_dataset(folder), "val_set2.csv:2:", "fine_id 47 outside 0..46 of set 2")


@case("labels")
def coarse_parent_disagrees(tmp_path, capsys):
    folder = prepared(tmp_path, "val_set1", HEADER + "\nappearing/appearing1_id_31.mp4,3,0,1\n")
    refused(lambda: read_dataset(folder), "val_set1.csv:2:", "coarse_id 3 is not the parent of fine class 0")


@case("labels")
def set_column_disagrees_with_the_file(tmp_path, capsys):
    folder = prepared(tmp_path, "train_set1", HEADER + "\nappearing/appearing3_id_1.mp4,0,0,2\n")
    refused(lambda: read_dataset(folder), "train_set1.csv:2:", "a set-2 video in train_set1.csv")


@case("duplicates")
def duplicate_row(tmp_path, capsys):
    folder = prepared(tmp_path, "val_set2", "\n".join([HEADER, ROWS["val_set2"][0], ROWS["val_set2"][0]]) + "\n")
    refused(lambda: read_dataset(folder), "val_set2.csv:3:", "listed again")


@case("duplicates")
def same_video_in_train_and_val(tmp_path, capsys):
    folder = prepared(tmp_path, "val_set1", "\n".join([HEADER, ROWS["val_set1"][0], ROWS["train_set1"][0]]) + "\n")
    refused(lambda: read_dataset(folder), "'appearing/appearing1_id_1.mp4' is in both train_set1.csv and val_set1.csv", "leak")


@case("duplicates")
def same_video_in_both_sets(tmp_path, capsys):
    folder = prepared(tmp_path, "train_set2", HEADER + "\nappearing/appearing1_id_1.mp4,0,0,2\n")
    refused(lambda: read_dataset(folder), "in both train_set1.csv and train_set2.csv")


@case("dataset-yaml")
def yaml_missing(tmp_path, capsys):
    folder = prepared(tmp_path)
    (folder / "dataset.yaml").unlink()
    refused(lambda: read_dataset_info(folder), "holds no prepared dataset (no dataset.yaml)")


@case("dataset-yaml")
def yaml_malformed(tmp_path, capsys):
    folder = prepared(tmp_path, yaml_text="dataset: synta\nvideo_root: [unclosed\n")
    refused(lambda: read_dataset_info(folder), "dataset.yaml:", "not valid YAML")


@case("dataset-yaml")
def yaml_not_a_mapping(tmp_path, capsys):
    folder = prepared(tmp_path, yaml_text="- synta\n")
    refused(lambda: read_dataset_info(folder), "must be a mapping with the keys dataset and video_root")


@case("dataset-yaml")
def yaml_without_video_root(tmp_path, capsys):
    folder = prepared(tmp_path, yaml_text="dataset: synta\n")
    refused(lambda: read_dataset_info(folder), "the keys dataset and video_root")


@case("dataset-yaml")
def yaml_of_another_dataset(tmp_path, capsys):
    folder = prepared(tmp_path, yaml_text=f"dataset: kinetics400\nvideo_root: {tmp_path}\n")
    refused(lambda: read_dataset_info(folder), "names the dataset 'kinetics400', not one of synta, k400ta, ssv2ta")


@case("dataset-yaml")
def video_root_reached_through_a_link_survives_a_move(tmp_path, capsys):
    (tmp_path / "disk1").mkdir()
    (tmp_path / "videos").symlink_to(tmp_path / "disk1")
    lists = {name: [Video(row.split(",")[0], *map(int, row.split(",")[1:])) for row in rows] for name, rows in ROWS.items()}
    write_dataset(tmp_path / "splits", "synta", tmp_path / "videos", lists, {})
    (tmp_path / "disk1").rename(tmp_path / "disk2")  # the videos move; the link follows them
    (tmp_path / "videos").unlink()
    (tmp_path / "videos").symlink_to(tmp_path / "disk2")
    assert read_dataset_info(tmp_path / "splits")["video_root"] == str(tmp_path / "videos")


# ---------------------------------------------------------------------------------------------
# Kinetics-400 annotations: every K400-TA class once in train.csv and once in validate.csv; the clips of
# set 1's and set 2's first classes are on disk


def kinetics(tmp_path, edit=None, raw=None):
    """-> (video root, annotation folder). edit(files) changes {file name: [rows]}; raw(name, bytes) the bytes."""
    h = load_hierarchy("k400ta")
    header = ["label", "youtube_id", "time_start", "time_end", "split"]
    files = {
        "train.csv": [header] + [[c.source, f"t{i:03d}", "5", "15", "train"] for i, c in enumerate(h.fine)],
        "validate.csv": [header] + [[c.source, f"v{i:03d}", "0", "10", "val"] for i, c in enumerate(h.fine)],
    }
    if edit:
        edit(files)
    ann, videos = tmp_path / "ann", tmp_path / "k400"
    ann.mkdir()
    for name, rows in files.items():
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(rows)
        data = out.getvalue().encode()
        (ann / name).write_bytes(raw(name, data) if raw else data)
    for i in (0, 111):
        for p in (f"train/t{i:03d}_000005_000015.mp4", f"val/v{i:03d}_000000_000010.mp4"):
            (videos / p).parent.mkdir(parents=True, exist_ok=True)
            (videos / p).touch()
    return videos, ann


def prepare_k400(tmp_path, **kw):
    videos, ann = kinetics(tmp_path, **kw)
    return prepare("k400ta", videos, tmp_path / "out", annotations=ann)


@case("k400")
def validate_csv_and_val_csv_both_present(tmp_path, capsys):
    def edit(files):
        files["val.csv"] = list(files["validate.csv"])

    refused(lambda: prepare_k400(tmp_path, edit=edit), "holds both validate.csv and val.csv")


@case("k400")
def label_close_to_a_class_is_named(tmp_path, capsys):
    def edit(files):
        files["train.csv"].append(["punching bagg", "x001", "0", "10", "train"])

    info = prepare_k400(tmp_path, edit=edit)
    out = capsys.readouterr().out
    assert f"{tmp_path / 'ann' / 'train.csv'}:207: label 'punching bagg' is not a K400-TA class but is close to 'punching bag'" in out
    assert info["source_classes_not_in_benchmark"] == 1 and info["source_rows_not_in_benchmark"] == 1


@case("k400")
def kinetics_label_near_a_class_is_not_called_a_typo(tmp_path, capsys):
    def edit(files):
        files["train.csv"] += [["shaking head", "x001", "0", "10", "train"], ["abseiling", "x002", "0", "10", "train"]]

    info = prepare_k400(tmp_path, edit=edit)
    out = capsys.readouterr().out
    assert "warning" not in out and "left out 2 rows of 2 classes that are not in K400-TA" in out
    assert info["source_rows_not_in_benchmark"] == 2


@case("k400")
def label_with_other_case_and_underscores(tmp_path, capsys):
    def edit(files):
        files["train.csv"][1][0] = "Balloon_Blowing"  # fine class 0 of set 1

    info = prepare_k400(tmp_path, edit=edit)
    assert "(the first: " in capsys.readouterr().out and info["rows_matched_ignoring_case_and_spacing"] == 1
    assert paths(read_split(tmp_path / "out" / "train_set1.csv", "k400ta")) == ["train/t000_000005_000015.mp4"]


@case("k400")
def kinetics_names_smoking_and_drinking(tmp_path, capsys):
    def edit(files):
        for rows in files.values():
            assert sum(row[0] in ("smoking", "drinking") for row in rows) == 2  # K400's own labels, as the source CSVs have them

    videos, ann = kinetics(tmp_path, edit=edit)
    h = load_hierarchy("k400ta")
    i = next(i for i, c in enumerate(h.fine) if c.name == "drinking water or soft drinks")
    (videos / f"val/v{i:03d}_000000_000010.mp4").touch()
    prepare("k400ta", videos, tmp_path / "out", annotations=ann)
    val2 = read_split(tmp_path / "out" / "val_set2.csv", "k400ta")
    assert [(v.path, h.fine_names(2)[v.fine_id]) for v in val2][-1] == (f"val/v{i:03d}_000000_000010.mp4", "drinking water or soft drinks")


@case("k400")
def bom_in_the_csv(tmp_path, capsys):
    info = prepare_k400(tmp_path, raw=lambda name, data: b"\xef\xbb\xbf" + data)
    assert info["missing"]["train_set1"] == 110 and info["missing"]["val_set2"] == 93


@case("k400")
def header_with_spaces(tmp_path, capsys):
    def edit(files):
        files["train.csv"][0] = ["label", " youtube_id", " time_start", " time_end", " split"]

    assert prepare_k400(tmp_path, edit=edit)["missing"]["train_set1"] == 110


@case("k400")
def split_column_disagrees_with_the_file(tmp_path, capsys):
    def edit(files):
        files["train.csv"][3][4] = "val"

    refused(lambda: prepare_k400(tmp_path, edit=edit), "train.csv:4: a 'val' row in train.csv")


@case("k400")
def repeated_row(tmp_path, capsys):
    def edit(files):
        files["validate.csv"].append(files["validate.csv"][1])

    info = prepare_k400(tmp_path, edit=edit)
    assert info["repeated_rows"] == 1
    assert paths(read_split(tmp_path / "out" / "val_set1.csv", "k400ta")) == ["val/v000_000000_000010.mp4"]
    assert "val_set1 val/v000_000000_000010.mp4" in (tmp_path / "out" / "repeated.txt").read_text()


@case("k400")
def clip_in_train_and_validate(tmp_path, capsys):
    def edit(files):
        files["validate.csv"].append([files["train.csv"][1][0], "t000", "5", "15", "val"])

    refused(lambda: prepare_k400(tmp_path, edit=edit), "validate.csv:207: clip t000_000005_000015 is also in the train split", "leak")


@case("k400")
def non_utf8_bytes(tmp_path, capsys):
    refused(lambda: prepare_k400(tmp_path, raw=lambda name, data: data.replace(b"abel", b"ab\xe9l", 1)), "train.csv:1: not UTF-8")


@case("k400")
def infinite_time(tmp_path, capsys):
    def edit(files):
        files["train.csv"][2][3] = "inf"

    refused(lambda: prepare_k400(tmp_path, edit=edit), "train.csv:3: time_start/time_end must be numbers")


@case("k400")
def short_row(tmp_path, capsys):
    def edit(files):
        files["train.csv"][2] = files["train.csv"][2][:3]

    refused(lambda: prepare_k400(tmp_path, edit=edit), "train.csv:3: expected 5 fields")


# ---------------------------------------------------------------------------------------------
# SSv2 annotations: every SSv2-TA class once in train.json and validation.json, one non-benchmark class


def bracket(name):
    return name.replace("something", "[something]").replace("Something", "[Something]")


def ssv2(tmp_path, edit=None):
    h = load_hierarchy("ssv2ta")
    files = {
        "labels.json": {c.source: str(i) for i, c in enumerate(h.fine)} | {"Approaching something with your camera": "149"},
        "train.json": [{"id": str(1000 + i), "template": bracket(c.source)} for i, c in enumerate(h.fine)],
        "validation.json": [{"id": str(5000 + i), "template": bracket(c.source)} for i, c in enumerate(h.fine)],
    }
    if edit:
        edit(files)
    ann, videos = tmp_path / "ann", tmp_path / "videos"
    ann.mkdir()
    videos.mkdir()
    for name, content in files.items():
        (ann / name).write_text(content if isinstance(content, str) else json.dumps(content))
    for i in (0, 81):
        (videos / f"{1000 + i}.webm").touch()
        (videos / f"{5000 + i}.webm").touch()
    return lambda: prepare("ssv2ta", videos, tmp_path / "out", annotations=ann)


@case("ssv2")
def labels_json_with_brackets(tmp_path, capsys):
    def edit(files):
        files["labels.json"] = {bracket(k): v for k, v in files["labels.json"].items()}

    assert ssv2(tmp_path, edit)()["missing"]["train_set1"] == 80


@case("ssv2")
def templates_without_brackets(tmp_path, capsys):
    def edit(files):
        for entry in files["train.json"]:
            entry["template"] = entry["template"].replace("[", "").replace("]", "")

    assert ssv2(tmp_path, edit)()["missing"]["train_set2"] == 67


@case("ssv2")
def malformed_json(tmp_path, capsys):
    def edit(files):
        files["validation.json"] = '[{"id": "1", "template": "Holding [something]"},\n'

    refused(ssv2(tmp_path, edit), "validation.json:2: not valid JSON")


@case("ssv2")
def entry_without_id(tmp_path, capsys):
    def edit(files):
        del files["train.json"][5]["id"]

    refused(ssv2(tmp_path, edit), "train.json: entry 5: expected an object with 'id' and 'template'")


@case("ssv2")
def id_in_train_and_validation(tmp_path, capsys):
    def edit(files):
        files["validation.json"].append(dict(files["train.json"][0]))

    refused(ssv2(tmp_path, edit), "validation.json: entry 149 (id 1000): video '1000.webm' is also in train_set1", "leak")


@case("ssv2")
def repeated_id(tmp_path, capsys):
    def edit(files):
        files["train.json"].append(dict(files["train.json"][81]))

    assert ssv2(tmp_path, edit)()["repeated_rows"] == 1
    assert paths(read_split(tmp_path / "out" / "train_set2.csv", "ssv2ta")) == ["1081.webm"]


@case("ssv2")
def missing_labels_json(tmp_path, capsys):
    run = ssv2(tmp_path)
    (tmp_path / "ann" / "labels.json").unlink()
    refused(run, "labels.json not found; --annotations must hold")


# ---------------------------------------------------------------------------------------------
# the benchmark's split lists (Syn-TA layout) and a Syn-TA folder

SYNTA_FILES = {  # split -> (video, coarse id, fine id): one video per split
    "train_set1": ("appearing/appearing1_id_1.mp4", 0, 0),
    "val_set1": ("appearing/appearing1_id_31.mp4", 0, 0),
    "train_set2": ("appearing/appearing3_id_1.mp4", 0, 0),
    "val_set2": ("appearing/appearing3_id_31.mp4", 0, 0),
}


def synta_folder(tmp_path, extra=()):
    root = tmp_path / "synta"
    for rel in [v for v, _, _ in SYNTA_FILES.values()] + list(extra):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).touch()
    return root


def official_lists(tmp_path, edit=None):
    """Motion-Transfer's layout: {coarse,fine}_classes/{split}_{kind}.txt, '<path> <label>' rows."""
    lines = {(kind, name): [f"{v} {c if kind == 'coarse' else f}"] for name, (v, c, f) in SYNTA_FILES.items() for kind in ("coarse", "fine")}
    if edit:
        edit(lines)
    lists = tmp_path / "lists"
    for (kind, name), rows in lines.items():
        (lists / f"{kind}_classes").mkdir(parents=True, exist_ok=True)
        (lists / f"{kind}_classes" / f"{name}_{kind}.txt").write_text("\n".join(rows))
    return lambda: prepare("synta", synta_folder(tmp_path), tmp_path / "out", lists_dir=lists)


@case("lists")
def bom_in_a_list(tmp_path, capsys):
    def edit(lines):
        for kind in ("coarse", "fine"):
            lines[(kind, "val_set1")][0] = "\ufeff" + lines[(kind, "val_set1")][0]

    assert sum(official_lists(tmp_path, edit)()["missing"].values()) == 0


@case("lists")
def tab_separated(tmp_path, capsys):
    def edit(lines):
        for key in lines:
            lines[key] = [row.replace(" ", "\t") for row in lines[key]]

    assert sum(official_lists(tmp_path, edit)()["missing"].values()) == 0


@case("lists")
def absolute_paths_of_the_old_ezclip_lists(tmp_path, capsys):
    def edit(lines):
        lines[("coarse", "train_set1")] = ["/data/synthetic_motion/appearing/appearing1_id_1.mp4 0"]
        lines[("fine", "train_set1")] = ["/data/synthetic_motion/appearing/appearing1_id_1.mp4 0"]

    refused(official_lists(tmp_path, edit), "train_set1_coarse.txt:1: path", "is absolute")


@case("lists")
def repeated_row(tmp_path, capsys):
    def edit(lines):
        for kind in ("coarse", "fine"):
            lines[(kind, "val_set2")] *= 2

    assert official_lists(tmp_path, edit)()["repeated_rows"] == 1
    assert len(read_split(tmp_path / "out" / "val_set2.csv", "synta")) == 1


@case("lists")
def same_video_in_train_and_val(tmp_path, capsys):
    def edit(lines):
        for kind in ("coarse", "fine"):
            lines[(kind, "train_set1")].append(lines[(kind, "val_set1")][0])

    refused(official_lists(tmp_path, edit), "val_set1_fine.txt:1: video 'appearing/appearing1_id_31.mp4' is also in train_set1", "leak")


@case("synta")
def symlinked_class_folder(tmp_path, capsys):
    other = tmp_path / "disk2" / "bouncing"
    other.mkdir(parents=True)
    (other / "bouncing1_id_2.mp4").touch()
    root = synta_folder(tmp_path)
    (root / "bouncing").symlink_to(other)
    prepare("synta", root, tmp_path / "out")
    assert "bouncing/bouncing1_id_2.mp4" in paths(read_split(tmp_path / "out" / "train_set1.csv", "synta"))


@case("synta")
def symlink_loop(tmp_path, capsys):
    root = synta_folder(tmp_path)
    (root / "appearing" / "loop").symlink_to(root)  # each real folder is read once
    prepare("synta", root, tmp_path / "out")
    assert paths(read_split(tmp_path / "out" / "train_set1.csv", "synta")) == ["appearing/appearing1_id_1.mp4"]


@case("synta")
def val_video_linked_as_a_train_video(tmp_path, capsys):
    root = synta_folder(tmp_path)
    (root / "appearing" / "appearing1_id_2.mp4").symlink_to(root / "appearing" / "appearing1_id_31.mp4")
    refused(lambda: prepare("synta", root, tmp_path / "out"), "the same file as 'appearing/appearing1_id_2.mp4'", "leak")


@case("synta")
def uppercase_extension(tmp_path, capsys):
    root = synta_folder(tmp_path, ["appearing/appearing1_id_2.MP4"])
    refused(lambda: prepare("synta", root, tmp_path / "out"), "1 .mp4 files", "'appearing/appearing1_id_2.MP4'")


@case("synta")
def stray_copies(tmp_path, capsys):
    root = synta_folder(tmp_path, ["appearing/appearing1_id_2 (1).mp4", "appearing/appearing1_id_3 copy.mp4"])
    refused(lambda: prepare("synta", root, tmp_path / "out"), "2 .mp4 files", "rename them or move them out")


@case("synta")
def hidden_macos_files(tmp_path, capsys):
    root = synta_folder(tmp_path, ["appearing/._appearing1_id_1.mp4", ".Trashes/appearing1_id_5.mp4"])
    prepare("synta", root, tmp_path / "out")
    assert paths(read_split(tmp_path / "out" / "train_set1.csv", "synta")) == ["appearing/appearing1_id_1.mp4"]


@case("synta")
def non_utf8_file_name(tmp_path, capsys):
    root = synta_folder(tmp_path)
    (root / "appearing").joinpath(os.fsdecode(b"appearing1_id_\xff.mp4")).touch()
    refused(lambda: prepare("synta", root, tmp_path / "out"), "1 .mp4 files", "\\udcff")


@case("synta")
def broken_link_is_counted_missing(tmp_path, capsys):
    root = synta_folder(tmp_path)
    (root / "appearing" / "appearing1_id_2.mp4").symlink_to(tmp_path / "nowhere.mp4")
    info = prepare("synta", root, tmp_path / "out")
    assert info["missing"]["train_set1"] == 1
    assert (tmp_path / "out" / "missing.txt").read_text() == "train_set1 appearing/appearing1_id_2.mp4\n"


@case("synta")
def a_set_without_videos(tmp_path, capsys):
    root = synta_folder(tmp_path)
    for name in ("appearing3_id_1.mp4", "appearing3_id_31.mp4"):
        (root / "appearing" / name).unlink()
    refused(lambda: prepare("synta", root, tmp_path / "out"), "train_set2 would be empty")


@case("out")
def videos_elsewhere(tmp_path, capsys):
    official_lists(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    refused(lambda: prepare("synta", tmp_path / "elsewhere", tmp_path / "out", lists_dir=tmp_path / "lists"),
            "train_set1 would be empty: none of its 1 listed videos", "is --videos the folder")


@case("out")
def out_holds_files_of_the_user(tmp_path, capsys):
    root = synta_folder(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    prepare("synta", root, tmp_path / "out")
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"
    prepare("synta", root, tmp_path / "out")  # the same preparation again changes nothing: no --overwrite needed


@case("out")
def out_holds_other_split_files(tmp_path, capsys):
    root = synta_folder(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "train_set1.csv").write_text("path,coarse_id,fine_id,set\nmine.mp4,0,0,1\n")
    refused(lambda: prepare("synta", root, tmp_path / "out"), "already holds train_set1.csv with other content", "--overwrite")
    assert "mine.mp4" in (tmp_path / "out" / "train_set1.csv").read_text()


@case("out")
def overwrite_replaces_and_says_so(tmp_path, capsys):
    root = synta_folder(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "missing.txt").write_text("old\n")
    prepare_main(["synta", "--videos", str(root), "--out", str(tmp_path / "out"), "--overwrite"])
    assert "replaced missing.txt" in capsys.readouterr().out
    assert read_dataset(tmp_path / "out")[1]["val_set2"] == [Video("appearing/appearing3_id_31.mp4", 0, 0, 2)]


@case("out")
def out_is_a_file(tmp_path, capsys):
    root = synta_folder(tmp_path)
    (tmp_path / "out").write_text("mine")
    refused(lambda: prepare("synta", root, tmp_path / "out"), "is a file; give a folder")
    assert (tmp_path / "out").read_text() == "mine"


def test_every_split_name_is_covered():
    assert set(ROWS) == set(SYNTA_FILES) == set(SPLITS)
