import csv

import pytest

from data.hierarchy import DATASETS, load_hierarchy

COUNTS = {"synta": (20, 53, 47), "k400ta": (41, 111, 94), "ssv2ta": (26, 81, 68)}
LABEL_FILES = {  # dataset -> (coarse, set 1 fine, set 2 fine) in ../shared/upstream/labels
    "synta": ("synthetic_motion_head_labels.csv", "synta_set1_labels.csv", "synta_set2_labels.csv"),
    "k400ta": ("k400_ta_coarse_labels.csv", "kinetics_400_205_set1_labels.csv", "k400_ta_set2_labels.csv"),
    "ssv2ta": ("ssv2_coarse_labels.csv", "ssv2_149_set1_labels_distribution3.csv", "ssv2_set2_labels.csv"),
}


def read_labels(path):
    with open(path, newline="", encoding="utf-8") as f:
        return [(int(r["id"]), r["name"]) for r in csv.DictReader(f) if r["id"]]


@pytest.mark.parametrize("dataset", DATASETS)
def test_counts_and_both_sets_per_coarse_class(dataset):
    h = load_hierarchy(dataset)
    n_coarse, n1, n2 = COUNTS[dataset]
    assert h.num_coarse == n_coarse
    assert len(h.fine_classes(1)) == n1 and len(h.fine_classes(2)) == n2
    for coarse_id in range(n_coarse):
        for s in (1, 2):
            assert coarse_id in h.coarse_of(s), f"coarse {coarse_id} has no fine class in set {s}"
    names = [c.name for c in h.fine]
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("dataset", DATASETS)
def test_names_and_ids_match_official_label_files(dataset, shared):
    h = load_hierarchy(dataset)
    coarse_file, set1_file, set2_file = (shared / "upstream" / "labels" / f for f in LABEL_FILES[dataset])
    # the K400-TA coarse file writes 'folding ' with a trailing space; names are compared stripped
    assert [(i, n.strip()) for i, n in read_labels(coarse_file)] == list(enumerate(h.coarse_names))
    for s, path in ((1, set1_file), (2, set2_file)):
        assert read_labels(path) == [(c.fine_id, c.name) for c in h.fine_classes(s)]


@pytest.mark.parametrize("dataset,derived", [("synta", "synta"), ("k400ta", "k400_ta"), ("ssv2ta", "ssv2_ta")])
def test_coarse_parents_match_official_map(dataset, derived, shared):
    with open(shared / "upstream" / "derived" / f"{derived}_coarse_to_fine.csv", newline="") as f:
        rows = {(int(r["set"]), int(r["fine_id_in_set"])): int(r["coarse_id"]) for r in csv.DictReader(f)}
    assert {(c.set, c.fine_id): c.coarse_id for c in load_hierarchy(dataset).fine} == rows


def test_synta_sources_are_the_official_video_stems(shared):
    with open(shared / "upstream" / "derived" / "synta_coarse_to_fine.csv", newline="") as f:
        stems = {(int(r["set"]), int(r["fine_id_in_set"])): r["video_prefix"] for r in csv.DictReader(f)}
    assert {(c.set, c.fine_id): c.source for c in load_hierarchy("synta").fine} == stems


def test_descriptions_in_the_project_format(tmp_path):
    from models.class_texts import describe, load_descriptions

    path = tmp_path / "d.csv"
    path.write_text('name,description\nappearing,"Objects\n  come into view."\nArriving,An object comes in.\n')
    d = load_descriptions(path)
    assert d == {"appearing": "Objects come into view.", "Arriving": "An object comes in."}
    assert describe(["appearing", "arriving"], d) == ["Objects come into view.", "An object comes in."]
    with pytest.raises(SystemExit, match=r"no description for 1 classes \(e.g. 'bouncing'\)"):
        describe(["appearing", "bouncing"], d)
    path.write_text("class,text\na,b\n")
    with pytest.raises(SystemExit, match=r"d.csv:1: expected the header"):
        load_descriptions(path)


@pytest.mark.parametrize("dataset,file,task", [
    ("synta", "GPT_description/synta_ta_gpt_class_description_head.csv", "coarse"),
    ("synta", "GPT_description/synta_ta_gpt_class_description_fine.csv", "fine"),
    ("k400ta", "GPT_discription/kinetics_ta_gpt_Class_description_head.csv", "coarse"),
    ("ssv2ta", "GPT_discription/ssv2_ta_gpt_class_description_head.csv", "coarse"),
])
def test_benchmark_ezclip_descriptions_cover_every_class(dataset, file, task, shared):
    from models.class_texts import describe, load_descriptions

    d = load_descriptions(shared / "upstream" / "configs" / "ezclip" / file)
    h = load_hierarchy(dataset)
    names = h.coarse_names if task == "coarse" else [c.name for c in h.fine]
    texts = describe(names, d)
    assert len(texts) == len(names) and all(len(t) > 40 and "\n" not in t for t in texts)
